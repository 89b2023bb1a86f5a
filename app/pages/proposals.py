"""Proposals: the pending proposal with what the twin predicts under it and under hold;
approve, modify (re-evaluated by the twin) or reject; and what became of past proposals."""

from __future__ import annotations

import streamlit as st

from app import charts, ui
from app.logic import context, decide, trends
from app.logic import proposals as pv
from app.logic.whatif import Evaluation
from twin import api
from twin.auth import Role
from twin.errors import TwinError

p = ui.page()
st.title(f"Proposals: {p.spec.name}")
can_decide = ui.allowed(Role.OPERATOR)


def approve_controls(prop, view: pv.ProposalView) -> None:
    pid = prop.id
    if not can_decide:
        st.info(f"Your role ({p.user.role}) may view proposals; operators and engineers decide.")
        return
    a, m, r = st.tabs(["Approve", "Modify", "Reject"])
    with a:
        note = st.text_input("Note (optional)", key=f"approve-note-{pid}")
        if st.button("Approve", type="primary", key=f"approve-{pid}"):
            try:
                api.approve(p.store, pid, p.user, note)
            except TwinError as exc:
                say("error", str(exc))
            else:
                say(
                    "success",
                    f"Proposal {pid} approved; the runtime writes it after its guard check.",
                )
    with m:
        cols = st.columns(len(p.spec.mvs))
        raw = {}
        for col, t in zip(cols, p.spec.mvs, strict=True):
            raw[t.name] = col.text_input(
                f"{t.name} [{t.unit}]",
                value=f"{prop.mv_values[t.name]:.6g}",
                key=f"mod-{pid}-{t.name}",
            )
        note = st.text_input("Why modify (goes to the audit log)", key=f"mod-note-{pid}")
        ev_key = f"mod-eval-{pid}"
        if st.button("Evaluate with the twin", key=f"mod-eval-btn-{pid}"):
            st.session_state.pop(ev_key, None)
            st.session_state.pop("proposal-msg", None)
            try:
                values = decide.parse_values(raw, p.spec)
                problems = decide.limit_problems(p.store, p.spec, prop, values)
                if problems:
                    raise api.ModificationRefused("refused: " + "; ".join(problems))
                model = ui.model(
                    str(p.home.root), context.spec_ref(p.store, p.plant), prop.model_version
                )
                with context.historian(p.home, p.plant) as h:
                    evaluation = decide.evaluate(model, h, p.spec, p.store, prop, values)
            except TwinError as exc:
                say("error", str(exc))
            else:
                st.session_state[ev_key] = evaluation
        ev: Evaluation | None = st.session_state.get(ev_key)
        if ev is not None:
            if ev.ok:
                st.success(f"The twin accepts {ev.values}.")
            else:
                st.error("The twin refuses the modified plan: " + "; ".join(ev.reasons))
            bands = trends.limit_bands(p.spec, api.operator_limits(p.store, p.spec))
            rollout = ev.rollout
            if rollout is not None:
                for cv in rollout.cv:
                    st.plotly_chart(
                        charts.rollout_figure(rollout, cv, bands[cv]), key=f"mod-fig-{pid}-{cv}"
                    )
            same = raw == {k: f"{v:.6g}" for k, v in ev.values.items()} or all(
                _same(raw[k], v) for k, v in ev.values.items()
            )
            if st.button(
                "Approve modified values",
                type="primary",
                key=f"mod-approve-{pid}",
                disabled=not (ev.ok and same),
            ):
                try:
                    model = ui.model(
                        str(p.home.root), context.spec_ref(p.store, p.plant), prop.model_version
                    )
                    with context.historian(p.home, p.plant) as h:
                        decide.modify(p.store, p.user, prop, p.spec, ev.values, note, model, h)
                except TwinError as exc:
                    say("error", str(exc))
                else:
                    say("success", f"Proposal {pid} approved with modified values {ev.values}.")
    with r:
        reason = st.text_input("Reason (required)", key=f"reject-reason-{pid}")
        if st.button("Reject", key=f"reject-{pid}"):
            try:
                api.reject(p.store, pid, p.user, reason)
            except TwinError as exc:
                say("error", str(exc))
            else:
                say("success", f"Proposal {pid} rejected.")


def say(kind: str, msg: str) -> None:
    """A message that survives the fragment's periodic reruns until the next action."""
    st.session_state["proposal-msg"] = (kind, msg)


def show_message() -> None:
    kind, msg = st.session_state.get("proposal-msg", (None, None))
    if msg:
        {"error": st.error, "success": st.success, "info": st.info}[kind](msg)


def _same(text: str, value: float) -> bool:
    try:
        return abs(float(text) - value) <= 1e-9 * max(1.0, abs(value))
    except ValueError:
        return False


@st.fragment(run_every=ui.room_config().refresh_s)
def pending() -> None:
    prop = p.store.pending_proposal(p.plant)
    status = p.store.get_status(p.plant)
    if prop is None:
        sv = trends.status_view(status, p.spec)
        st.info(f"No proposal is pending. Runtime: {sv.last_reason or sv.mode}")
        show_message()
        return
    view = pv.proposal_view(prop, p.spec, api.operator_limits(p.store, p.spec))
    left = pv.seconds_to_expiry(prop, status)
    c = st.columns(4)
    c[0].metric("Proposal", f"#{view.id}")
    c[1].metric("Model", view.model_version)
    if view.controller != "twin":
        st.warning(f"Made by {view.controller}: the twin abstained, the spec's fallback acts.")
    imp = view.improvement
    c[2].metric(
        "Expected improvement",
        "-" if imp is None else f"{imp:.4g}",
        None if view.improvement_pct is None else f"{view.improvement_pct:.1f} % vs hold",
        delta_color="off",
    )
    c[3].metric("Expires in", "-" if left is None else f"{max(0.0, left):.0f} s (plant)")
    st.dataframe(view.mv_table, hide_index=True)
    for note in view.notes:
        st.warning(note)
    bands = trends.limit_bands(p.spec, api.operator_limits(p.store, p.spec))
    with context.historian(p.home, p.plant) as h:
        recent = trends.trend_frame(h, p.spec, 10, end=view.data_ts)
    grid = st.columns(max(1, len(view.predicted)))
    for col, cv in zip(grid, view.predicted, strict=False):
        col.plotly_chart(
            charts.proposal_figure(view, cv, bands[cv], recent.get(cv)), key=f"prop-{view.id}-{cv}"
        )
    if len(view.margins):
        with st.expander("Constraint margins (smallest predicted distance to each limit)"):
            st.dataframe(view.margins, hide_index=True)
    approve_controls(prop, view)
    show_message()  # below the controls, and kept through the periodic reruns


pending()
st.subheader("History")
st.dataframe(pv.history_table(p.store, p.plant), hide_index=True)
