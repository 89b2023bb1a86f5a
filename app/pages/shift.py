"""Shift handover: the outgoing operator writes the log, the incoming one acknowledges it."""

from __future__ import annotations

import streamlit as st

from app import ui
from app.logic import shift
from twin import alarms_api
from twin.auth import Role
from twin.errors import TwinError

p = ui.page()
st.title(f"Shift log: {p.spec.name}")
st.caption(
    "Decisions since the last handover, what is pending and the standing alarms are "
    "filled in from the state store when the entry is written."
)
latest = alarms_api.latest_handover(p.store, p.plant)
may = ui.allowed(Role.OPERATOR)
if latest is not None and latest.acked_by is None:
    st.warning(f"Waiting to be taken over: {shift.entry_title(latest)}")
    if may and latest.author != p.user.name:
        note = st.text_input("Note on taking over", key="shift-ack-note")
        if st.button("Acknowledge handover", key="shift-ack"):
            try:
                alarms_api.take_over(p.store, p.user, latest.id, note)
            except TwinError as exc:
                st.error(str(exc))
            else:
                st.success(f"Shift log {latest.id} acknowledged by {p.user.name}.")
                st.rerun()

if may:
    with st.form("shift-write", clear_on_submit=True):
        notes = st.text_area("Handover notes", key="shift-notes")
        if st.form_submit_button("Write handover"):
            try:
                sid = alarms_api.handover(p.store, p.user, p.plant, notes)
            except TwinError as exc:
                st.error(str(exc))
            else:
                st.success(f"Shift log {sid} written; the next operator acknowledges it.")
else:
    st.info(f"Your role ({p.user.role}) may read the shift log; operators write it.")

entries = p.store.shift_log(p.plant, limit=20)
st.download_button(
    "Export shift log (HTML)",
    shift.shift_document(entries, p.plant),
    file_name=f"{p.plant}-shift-log.html",
    mime="text/html",
    key="shift-export",
)
for e in entries:
    with st.expander(shift.entry_title(e), expanded=e is entries[0]):
        st.markdown(e.notes)
        if e.acked_by:
            st.caption(f"Acknowledged by {e.acked_by}: {e.ack_note or '(no note)'}")
        for title, frame in shift.section_frames(e).items():
            st.markdown(f"**{title}**")
            if frame.empty:
                st.caption("none")
            else:
                st.dataframe(frame, hide_index=True)
