"""The control room: `twin app` runs this with Streamlit (TWIN_HOME selects the twin home)."""

from __future__ import annotations

import streamlit as st

from app import ui

st.set_page_config(page_title="Twin control room", layout="wide")

if ui.user() is None:
    nav = st.navigation([st.Page(ui.login_page, title="Log in", url_path="login")])
else:
    nav = st.navigation(
        [
            st.Page("pages/overview.py", title="Overview", default=True),
            st.Page("pages/proposals.py", title="Proposals", url_path="proposals"),
            st.Page("pages/twin.py", title="Twin", url_path="twin"),
            st.Page("pages/replay.py", title="Replay", url_path="replay"),
            st.Page("pages/audit.py", title="Audit", url_path="audit"),
            st.Page("pages/limits.py", title="Limits", url_path="limits"),
            st.Page("pages/alarms.py", title="Alarms", url_path="alarms"),
            st.Page("pages/shift.py", title="Shift log", url_path="shift"),
        ]
    )
    ui.sidebar()
nav.run()
