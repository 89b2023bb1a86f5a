"""Health: how much the controller is doing per shift, why proposals were refused, and whether
the twin is drifting away from what the plant does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import streamlit as st

from app import ui
from app.logic import health

p = ui.page()
st.title(f"Health: {p.spec.name}")
days = st.number_input("Days shown", min_value=1, max_value=90, value=7, key="health-days")
by = st.radio("Per", ["shift", "day"], horizontal=True, key="health-by")
until = datetime.now(UTC)
since = until - timedelta(days=int(days))
rep = health.health(p.store, p.home, p.spec, since, until, str(by))
total = rep["total"]

cols = st.columns(5)
cols[0].metric("Service factor", health.percent(total["service_factor"]))
cols[1].metric("MV utilisation", health.percent(total["mv_utilisation"]))
cols[2].metric("Interventions", sum(total["interventions"].values()))
cols[3].metric("Moves decided", total["moves_decided"])
cols[4].metric("Twin proposals", total["twin_proposals"])

frame = health.trends(rep)
st.subheader(f"Per {by}")
left, mid, right = st.columns(3)
left.plotly_chart(health.trend_figure(frame, "service_factor", "Service factor"), key="h-sf")
mid.plotly_chart(
    health.trend_figure(frame, "interventions_per_h", "Interventions per hour"), key="h-int"
)
right.plotly_chart(health.trend_figure(frame, "time_at_limits", "Time at limits"), key="h-lim")

st.subheader("Refusals and interventions")
table = health.refusals(rep)
if table.empty:
    st.caption("No proposal was refused and no operator intervened in this window.")
else:
    st.table(table)

st.subheader("Drift evidence and model maintenance")
drift = health.drift_evidence(p.store, p.plant, since)
if drift.empty:
    st.caption("No model_drift alarm and no retrain recommendation in this window.")
else:
    st.table(drift)
