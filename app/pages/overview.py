"""Overview: live trends of every tag with its limit bands, and the runtime's state."""

from __future__ import annotations

import streamlit as st

from app import charts, ui
from app.logic import context, trends
from twin import api

p = ui.page()
st.title(f"Overview: {p.spec.name}")
minutes = st.select_slider("Trend window (minutes of plant time)", [5, 15, 30, 60, 240], value=15)


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
    tiles = trends.live_tiles(frame, bands)
    cols = st.columns(len(tiles))
    for col, t in zip(cols, tiles, strict=True):
        value = "-" if t.value is None else f"{t.value:.4g}"
        col.metric(f"{t.tag} [{t.unit}] ({t.role})", value)
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
