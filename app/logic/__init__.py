"""Tested logic behind the control-room pages: no Streamlit imports here."""
