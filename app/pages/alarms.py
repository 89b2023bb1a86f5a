"""Alarms: the standing list and history, acknowledge and shelve, the ISA-18.2 metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import streamlit as st

from app import ui
from app.logic import alarms
from twin import alarms_api
from twin.auth import Role
from twin.errors import TwinError
from twin.serve.alarms import ALARM_CATALOGUE

p = ui.page()
st.title(f"Alarms: {p.spec.name}")
m = alarms.metrics(p.store, p.plant, hours=24)
c = st.columns(5)
c[0].metric("Standing alarms", m.standing)
c[1].metric("Alarms per 10 min (24 h avg)", f"{m.per_10min_avg:.2f}")
c[2].metric("Peak per 10 min", m.per_10min_peak)
c[3].metric("Flood windows (>10 / 10 min)", m.flood_windows)
c[4].metric("Chattering", len(m.chattering))
st.caption(
    "One operator position per plant. ISA-18.2 targets: about 1 alarm per 10 minutes, "
    "2 at most; more than 10 is a flood. Chattering: 3 or more in a minute. "
    f"Shelved {m.shelved}, out of service {m.out_of_service}. "
    + (f"Chattering now: {', '.join(m.chattering)}." if m.chattering else "")
)


@st.fragment(run_every=ui.room_config().refresh_s)
def standing() -> None:
    st.subheader("Standing alarms")
    frame = alarms.alarm_frame(p.store.standing_alarms(p.plant))
    if frame.empty:
        st.success("No standing alarms.")
    else:
        st.dataframe(frame, hide_index=True, key="alarms-standing")


standing()
open_ids = [a.id for a in p.store.standing_alarms(p.plant) if not a.suppressed]
if not ui.allowed(Role.OPERATOR):
    st.info(f"Your role ({p.user.role}) may view alarms; operators acknowledge and shelve them.")
elif open_ids:
    st.subheader("Act on an alarm")
    aid = st.selectbox(
        "Alarm",
        open_ids,
        key="alarm-pick",
        format_func=lambda i: alarms.label(p.store.get_alarm(i)),
    )
    note = st.text_input("Note or reason (goes to the audit log)", key="alarm-note")
    minutes = st.number_input("Shelve for (minutes)", 1, 720, 60, key="alarm-minutes")
    b = st.columns(3)
    try:
        if b[0].button("Acknowledge", key="alarm-ack"):
            alarms_api.acknowledge(p.store, p.user, aid, note)
            st.success(f"Alarm {aid} acknowledged.")
        if b[1].button("Shelve", key="alarm-shelve"):
            until = alarms_api.shelve(p.store, p.user, aid, minutes, note)
            st.success(f"Alarm {aid} shelved until {until:%H:%M} UTC.")
        if b[2].button("Unshelve", key="alarm-unshelve"):
            alarms_api.unshelve(p.store, p.user, aid, note)
            st.success(f"Alarm {aid} back on the banner.")
    except TwinError as exc:
        st.error(str(exc))

st.subheader("History (24 h)")
since = datetime.now(UTC) - timedelta(hours=24)
st.dataframe(
    alarms.history_frame(p.store.alarm_history(p.plant, since, limit=500)), hide_index=True
)
with st.expander("What each alarm means (the alarm catalogue)"):
    st.table(
        {
            k: {"priority": v.priority, "operator action": v.response}
            for k, v in ALARM_CATALOGUE.items()
        }
    )
