"""Replay: a past window, actual beside what the twin predicted then, markers, what-if, export."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import streamlit as st

from app import charts, ui
from app.logic import context, replay, report, shift, trends, whatif
from twin import api, registry
from twin.errors import TwinError

p = ui.page()
st.title(f"Replay: {p.spec.name}")

with context.historian(p.home, p.plant) as h:
    default = replay.default_window(h, 60.0)
if default is None:
    st.info("No data stored for this plant yet.")
    st.stop()

incidents = p.store.list_incidents(p.plant)
choice = st.selectbox(
    "Window",
    ["Choose a time window", *[f"incident {i.id}: {i.title}" for i in incidents]],
    key="replay-choice",
)
if choice.startswith("incident"):
    inc = next(i for i in incidents if choice.startswith(f"incident {i.id}:"))
    start, end = inc.start, inc.end
    st.caption(f"Incident by {inc.user}: {inc.notes}")
else:
    c = st.columns(2)
    start_text = c[0].text_input(
        "From (UTC, ISO 8601)", default[0].isoformat(timespec="seconds"), key="replay-from"
    )
    end_text = c[1].text_input(
        "To (UTC, ISO 8601)", default[1].isoformat(timespec="seconds"), key="replay-to"
    )
    try:
        start = (
            datetime.fromisoformat(start_text).replace(tzinfo=UTC)
            if "+" not in start_text
            else datetime.fromisoformat(start_text)
        )
        end = (
            datetime.fromisoformat(end_text).replace(tzinfo=UTC)
            if "+" not in end_text
            else datetime.fromisoformat(end_text)
        )
    except ValueError as exc:
        st.error(f"window: {exc}")
        st.stop()
if end <= start:
    st.error("window: 'To' must be after 'From'")
    st.stop()

with context.historian(p.home, p.plant) as h:
    win = replay.assemble(p.store, h, p.spec, start, end)
step = min(timedelta(seconds=p.spec.plant.control_interval_s), end - start)
at = st.slider(
    "Scrub",
    min_value=start,
    max_value=end,
    value=end - (end - start) / 2,
    step=step,
    format="YYYY-MM-DD HH:mm:ss",
    key="replay-at",
)
st.caption(
    f"{len(win.actual)} samples, {len(win.predictions)} proposals with predictions, "
    f"{len(win.markers)} events in the window"
)

bands = trends.limit_bands(p.spec, api.operator_limits(p.store, p.spec))
groups = trends.tag_groups(p.spec)
cvs_and_mvs = "CVs and MVs"
unit = cvs_and_mvs
if len(groups) > 1:
    unit = st.selectbox("Unit", [cvs_and_mvs, *groups], key="replay-unit")
chosen = [t.name for t in p.spec.cvs + p.spec.mvs] if unit == cvs_and_mvs else groups[unit]
tags = st.multiselect("Tags", p.spec.tag_names, default=chosen, key=f"replay-tags-{unit}")

# The twin's view from the scrub moment: with the moves really made, and with edited moves.
version = registry.active_version(p.home, p.plant)
from_here = what = None
if version is not None:
    model = ui.model(str(p.home.root), context.spec_ref(p.store, p.plant), version)
    horizon = whatif.DEFAULT_HORIZON
    window: np.ndarray | None
    try:
        with context.historian(p.home, p.plant) as h:
            window = whatif.window_at(h, p.spec, list(model.tag_names), int(model.window), at)
            actual_moves = whatif.actual_mv_plan(h, p.spec, at, horizon)
        from_here = whatif.rollout(model, p.spec, window, at, actual_moves)
    except TwinError as exc:
        st.warning(f"twin from this moment: {exc}")
        window = None
    with st.expander("What if: edit the MV moves from this moment"):
        st.caption(
            "Values per control interval, comma-separated (default: what the plant really did)."
        )
        raw = {}
        for t in p.spec.mvs:
            default_plan = ", ".join(
                f"{v:.4g}" for v in (from_here.mv_plan[t.name] if from_here else [])
            )
            raw[t.name] = st.text_input(t.name, default_plan, key=f"whatif-{t.name}")
        if st.button("Run what-if", key="whatif-run") and window is not None:
            try:
                plan = {k: [float(x) for x in v.split(",") if x.strip()] for k, v in raw.items()}
                st.session_state["whatif"] = whatif.rollout(model, p.spec, window, at, plan)
            except (TwinError, ValueError) as exc:
                st.error(f"what-if: {exc}")
    what = st.session_state.get("whatif")
    if what is not None and what.at != at:
        what = None
else:
    st.caption("No active twin: predictions from the scrub moment are not available.")

figures = []
for tag in tags:
    fig = charts.replay_figure(win, tag, bands[tag], at, what, from_here)
    figures.append(fig)
    st.plotly_chart(fig, key=f"replay-{tag}")

then = win.prediction_at(at)
if then is not None:
    st.caption(
        f"Newest proposal before the scrub moment: #{then.proposal_id} at "
        f"{then.data_ts.isoformat(timespec='seconds')} ({then.status})"
    )
st.subheader("Events")
st.dataframe(win.markers_frame(), hide_index=True)

st.subheader("Mark an incident")
with st.form("incident"):
    title = st.text_input("Title", key="incident-title")
    notes = st.text_area("Notes", key="incident-notes")
    if st.form_submit_button("Mark this window as an incident"):
        try:
            iid = api.mark_incident(p.store, p.user, p.plant, start, end, title, notes)
        except TwinError as exc:
            st.error(str(exc))
        else:
            st.success(f"Incident {iid} marked.")

st.subheader("Export")
c = st.columns(2)
stamp = start.strftime("%Y%m%dT%H%M%S")
c[0].download_button(
    "Export CSV",
    lambda: replay.window_csv(win),
    file_name=f"{p.plant}-{stamp}.csv",
    mime="text/csv",
    key="export-csv",
)


def html_report() -> bytes:
    # Built only when the button is pressed: plotly.js is inlined, which is a few MB.
    now = dataclasses.replace(win, incidents=replay.incidents_in(p.store, p.plant, start, end))
    doc = report.incident_report(
        now,
        figures,
        title=f"{p.plant} replay {stamp}",
        author=p.user.name,
        made_at=datetime.now(UTC),
    )
    return shift.with_shift_log(doc, p.store.shift_log(p.plant)).encode("utf-8")


c[1].download_button(
    "Export HTML report",
    html_report,
    file_name=f"{p.plant}-{stamp}.html",
    mime="text/html",
    key="export-html",
)
