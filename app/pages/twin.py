"""Twin: model versions and their metrics, comparison, promotion, retraining, step tests."""

from __future__ import annotations

import streamlit as st

from app import charts, ui
from app.logic import training
from twin import api, steptest
from twin.auth import Role
from twin.errors import TwinError

p = ui.page()
st.title(f"Twin: {p.spec.name}")
versions = training.versions_frame(p.home, p.plant)
if versions.empty:
    st.info(f"No trained twin for {p.plant} yet. Start a training run below.")
else:
    st.subheader("Versions")
    st.dataframe(versions, hide_index=True)
    names = list(versions["version"])
    active = [v for v, a in zip(versions["version"], versions["active"], strict=True) if a]
    chosen = st.selectbox(
        "Version", names, index=names.index(active[0]) if active else len(names) - 1
    )
    card = training.card(p.home, p.plant, chosen)
    ev = training.evaluation_table(card)
    left, right = st.columns(2)
    left.markdown("**Evaluation (NRMSE on the held-out block)**")
    left.dataframe(ev, hide_index=True)
    per_model = {
        row["model"]: {k[1:]: row[k] for k in ev.columns if k.startswith("h")}
        for _, row in ev.iterrows()
    }
    if per_model:
        right.plotly_chart(charts.nrmse_figure(per_model, "NRMSE by horizon"), key="nrmse")
    with st.expander("Monitors"):
        st.dataframe(training.monitors_frame(card), hide_index=True)
    history = (card.get("training") or {}).get("history")
    if history:
        keys = [k for k in history[0] if k not in ("epoch", "seconds")][:3]
        st.plotly_chart(charts.curve_figure(history, keys), key="curves")
    else:
        st.caption("This version's model card holds no per-epoch training history.")

    if len(names) >= 2:
        st.subheader("Compare two versions")
        col_a, col_b = st.columns(2)
        a = col_a.selectbox("A", names, index=len(names) - 2, key="cmp-a")
        b = col_b.selectbox("B", names, index=len(names) - 1, key="cmp-b")
        cmp = training.compare(p.home, p.plant, a, b)
        st.dataframe(cmp, hide_index=True)
        if not cmp.empty and a != b:
            st.plotly_chart(
                charts.nrmse_figure(
                    {
                        a: dict(zip(cmp["horizon"].astype(str), cmp[a], strict=True)),
                        b: dict(zip(cmp["horizon"].astype(str), cmp[b], strict=True)),
                    },
                    f"{a} vs {b}",
                ),
                key="cmp-fig",
            )

    if ui.allowed(Role.ENGINEER):
        st.subheader("Promote or roll back")
        target = st.selectbox("Make active", names, key="promote-version")
        why = st.text_input("Why (audited)", key="promote-why")
        if st.button("Promote", key="promote"):
            try:
                api.promote_model(p.store, p.user, p.home, p.plant, target, why)
            except TwinError as exc:
                st.error(str(exc))
            else:
                st.success(f"{target} is now the active twin of {p.plant}.")

st.subheader("Retrain")
runs = training.list_runs(p.home, p.plant)
if ui.allowed(Role.ENGINEER):
    col_epochs, col_seed, col_start = st.columns(3)
    epochs = col_epochs.number_input("Max epochs", 1, 500, 40, key="train-epochs")
    seed = col_seed.number_input("Seed", 0, 10_000, 0, key="train-seed")
    quick = st.checkbox("Quick (tiny model, seconds: a smoke test)", key="train-quick")
    busy = any(training.progress(r).running for r in runs)
    if col_start.button("Start training in the background", key="train-start", disabled=busy):
        run = training.start_training(
            p.home, p.plant, p.user.name, None if quick else int(epochs), int(seed), quick
        )
        p.store.log_event(
            user=p.user.name,
            kind="train_start",
            plant=p.plant,
            subject=f"run:{run.id}",
            what={"epochs": int(epochs), "seed": int(seed), "quick": quick},
        )
        st.rerun()


@st.fragment(run_every=2.0)
def training_runs() -> None:
    for i, r in enumerate(training.list_runs(p.home, p.plant)[:3]):
        pr = training.progress(r)
        label = f"{r.id} by {r.user}: " + (
            f"running ({pr.stage or 'starting'})"
            if pr.running
            else "done, " + (pr.version or "")
            if pr.returncode == 0
            else "stopped"
            if pr.returncode in (training.STOPPED, 128 - training.STOPPED)
            else f"failed (exit code {pr.returncode})"
        )
        st.progress(pr.fraction or 0.0, text=label)
        if (
            pr.running
            and ui.allowed(Role.ENGINEER)
            and st.button("Stop training", key=f"stop-{r.id}")
        ):
            training.stop_training(r)
            p.store.log_event(
                user=p.user.name, kind="train_stop", plant=p.plant, subject=f"run:{r.id}"
            )
            st.rerun(scope="fragment")
        if pr.last_line:
            st.caption(pr.last_line[-200:])
        jepa = training.curves(r).get("jepa")
        if i == 0 and jepa:  # training curves of the newest run, live while it runs
            keys = [k for k in ("total", "val", "sigreg") if k in jepa[0]]
            st.plotly_chart(charts.curve_figure(jepa, keys), key=f"curve-{r.id}")


training_runs()

st.subheader("Step test")
campaigns = p.store.list_steptests(p.plant)
if campaigns:
    st.dataframe(
        [
            {
                "id": c.id,
                "status": c.status,
                "by": c.requested_by,
                "approved by": c.approved_by,
                "moves": len(c.design.get("moves", [])),
                "note": c.note,
            }
            for c in campaigns
        ],
        hide_index=True,
    )
if ui.allowed(Role.ENGINEER) and p.spec.mvs:
    with st.form("steptest"):
        col_mv, col_centre, col_amp, col_hold = st.columns(4)
        mv = col_mv.selectbox("MV", [t.name for t in p.spec.mvs])
        lo, hi = api.operator_limits(p.store, p.spec)[mv]
        max_amp = steptest.max_amplitude(p.spec, mv)
        centre = col_centre.number_input("Centre", float(lo), float(hi), float((lo + hi) / 2))
        amp = col_amp.number_input("Step size", 0.0, float(max_amp), float(max_amp) / 2)
        hold = col_hold.number_input("Hold (control intervals)", 1, 100, 6)
        note = st.text_input("Note")
        if st.form_submit_button("Request step test"):
            try:
                design = steptest.design_moves(
                    p.spec,
                    steptest.StepDesign(mv, centre, amp, int(hold)),
                    api.operator_limits(p.store, p.spec),
                )
                cid = api.request_steptest(p.store, p.user, p.spec, design, note)
            except TwinError as exc:
                st.error(str(exc))
            else:
                st.success(f"Step test {cid} requested; an engineer approves it before it runs.")
    pending = [c for c in campaigns if c.status == "requested"]
    running = [c for c in campaigns if c.status in ("requested", "approved", "running")]
    col_approve, col_abort = st.columns(2)
    if pending and col_approve.button(f"Approve step test {pending[0].id}", key="st-approve"):
        try:
            api.approve_steptest(p.store, p.user, pending[0].id)
        except TwinError as exc:
            st.error(str(exc))
        else:
            st.rerun()
    if running and col_abort.button(f"Abort step test {running[0].id}", key="st-abort"):
        try:
            api.abort_steptest(p.store, p.user, running[0].id, "aborted from the control room")
        except TwinError as exc:
            st.error(str(exc))
        else:
            st.rerun()
