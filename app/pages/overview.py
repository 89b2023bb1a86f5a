"""Overview: live trends of every tag with its limit bands, and the runtime's state."""

from __future__ import annotations

import streamlit as st

from app import charts, ui
from app.logic import context, trends
from twin import api

p = ui.page()
st.title(f"Overview: {p.spec.name}")
minutes = st.select_slider("Trend window (minutes of plant time)", [5, 15, 30, 60, 240], value=15)
TILES_PER_ROW = 4
groups = trends.tag_groups(p.spec)
# A plant-wide plant (tep: 51 tags) one unit at a time; abnormal tags elsewhere stay listed.
unit = st.selectbox("Unit", list(groups), key="overview-unit") if len(groups) > 1 else ""
shown = groups[unit] if unit else list(p.spec.tag_names)


@st.fragment(run_every=ui.room_config().refresh_s)
def live() -> None:
    sv = trends.status_view(p.store.get_status(p.plant), p.spec)
    c = st.columns(5)
    c[0].metric("Runtime", sv.mode if sv.running else "not running")
    c[1].metric("Connection", "connected" if sv.connected else "DISCONNECTED")
    c[2].metric("Data age", "-" if sv.data_age_s is None else f"{sv.data_age_s:.0f} s")
    c[3].metric("Model", sv.model_version)
    c[4].metric("OOD score", "-" if sv.ood_score is None else f"{sv.ood_score:.2f}")
    if not sv.connected or sv.stale:
        st.error(f"Data not live: {sv.last_reason}")
    elif sv.ood_alarm:
        st.warning("The plant is where the twin has not seen data: no proposals are made.")
    else:
        st.caption(sv.last_reason)
    for a in sv.alarms[-5:]:
        st.error(f"ALARM {a.get('kind', '')} {a.get('tag') or ''}: {a.get('message', '')}")

    bands = trends.limit_bands(p.spec, api.operator_limits(p.store, p.spec))
    with context.historian(p.home, p.plant) as h:
        frame = trends.trend_frame(h, p.spec, minutes)
    every = trends.live_tiles(frame, bands)
    if unit:
        for group, bad in trends.abnormal_elsewhere(every, groups, unit).items():
            names = ", ".join(f"{t.tag} ({t.state})" for t in bad)
            st.warning(f"Unit {group}: {names}")
    tiles = [t for t in every if t.tag in shown]
    width = min(len(tiles), TILES_PER_ROW)
    for row in range(0, len(tiles), TILES_PER_ROW):
        cols = st.columns(width)
        for col, t in zip(cols, tiles[row : row + TILES_PER_ROW], strict=False):
            value = "-" if t.value is None else f"{t.value:.4g}"
            col.metric(f"{t.tag} [{t.unit}] ({t.role})", value, help=t.description or None)
            if t.state != trends.TagState.NORMAL:
                colour = "red" if t.state == trends.TagState.LIMIT else "orange"
                col.markdown(f":{colour}[**{t.state}**]")
    if frame.empty:
        st.info("No data stored for this plant yet.")
        return
    grid = st.columns(2)
    for i, t in enumerate(tiles):
        fig = charts.trend_figure(frame[t.tag], bands[t.tag], t.state)
        grid[i % 2].plotly_chart(fig, key=f"trend-{t.tag}")


live()
