"""The control room's logic on a real twin home (generated history, trained twin, real store)."""

from __future__ import annotations

import math
import os
import re
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from room_homes import PASSWORD, BuiltHome, ToyModel

from app.logic import (
    audit_view,
    context,
    limits,
    replay,
    report,
    session,
    training,
    trends,
    whatif,
)
from app.logic import proposals as pv
from twin import api, registry, steptest, train_events
from twin.auth import AuthError, PermissionDenied, Role
from twin.errors import BadInput
from twin.spec import load_spec
from twin.state import RuntimeStatus, Store


@pytest.fixture
def store(built: BuiltHome):
    s = Store.open(built.home)
    yield s
    s.close()


def test_log_in_with_the_runtimes_users(built: BuiltHome, store: Store) -> None:
    u = session.log_in(store, "operator", PASSWORD)
    assert u.role == Role.OPERATOR
    with pytest.raises(AuthError, match="wrong user name or password"):
        session.log_in(store, "operator", "not the password")
    with pytest.raises(AuthError):
        session.log_in(store, "nobody", PASSWORD)
    assert session.may(store, built.users["operator"], Role.OPERATOR)
    assert not session.may(store, built.users["viewer"], Role.OPERATOR)
    assert not session.may(store, None, Role.VIEWER)


def test_known_plants_and_spec(built: BuiltHome, store: Store) -> None:
    assert context.known_plants(built.home, store) == ["cstr"]
    assert context.spec_ref(store, "cstr") == str(built.spec.path)
    assert context.plant_spec(store, "cstr").tag_names == built.spec.tag_names
    assert (
        context.plant_name(str(built.spec.path)) == "cstr" and context.plant_name("cstr") == "cstr"
    )


def test_trends_read_the_newest_data_with_bands_and_states(built: BuiltHome, store: Store) -> None:
    bands = trends.limit_bands(built.spec, {"T": (310.0, 350.0)})
    assert bands["T"].op == (310.0, 350.0) and bands["T"].eng == (280.0, 400.0)
    assert bands["Ca"].op == (0.05, 1.0)
    assert trends.state_of(320.0, bands["T"]) == trends.TagState.NORMAL
    assert trends.state_of(305.0, bands["T"]) == trends.TagState.OPERATING
    assert trends.state_of(401.0, bands["T"]) == trends.TagState.LIMIT
    assert trends.state_of(math.nan, bands["T"]) == trends.TagState.MISSING
    with context.historian(built.home, "cstr") as h:
        frame = trends.trend_frame(h, built.spec, 15)
        last = h.latest()
    period = built.spec.plant.sample_period_s
    assert list(frame.columns) == built.spec.tag_names
    assert len(frame) == pytest.approx(15 * 60 / period, abs=2)
    assert frame.index[-1] == built.last
    tiles = trends.live_tiles(frame, bands)
    by_tag = {t.tag: t for t in tiles}
    assert by_tag["Tc"].value == pytest.approx(last["Tc"].value)
    assert by_tag["Tc"].ts == built.last


def test_a_plant_wide_spec_is_shown_by_unit_and_no_abnormal_tag_is_hidden() -> None:
    tep = load_spec("tep")
    groups = trends.tag_groups(tep)
    assert list(groups) == [
        "feeds",
        "compressor and purge",
        "reactor",
        "separator",
        "stripper",
        "product",
    ]
    every = [name for names in groups.values() for name in names]
    assert sorted(every) == sorted(tep.tag_names) and len(every) == 51
    assert {"reactor_pressure", "sp_reactor_pressure"} <= set(groups["reactor"])
    # A spec without groups is one group; a grouped spec puts what it leaves out last.
    assert trends.tag_groups(load_spec("cstr")) == {trends.ALL_TAGS: load_spec("cstr").tag_names}
    partial = tep.model_copy(
        update={"tags": [t.model_copy(update={"group": ""}) for t in tep.tags[:2]] + tep.tags[2:]}
    )
    assert list(trends.tag_groups(partial))[-1] == trends.UNGROUPED
    assert trends.tag_groups(partial)[trends.UNGROUPED] == tep.tag_names[:2]

    # Tiles: one tag at its engineering limit in the reactor, one without data in the stripper.
    bands = trends.limit_bands(tep)
    values = {name: (b.op[0] + b.op[1]) / 2 for name, b in bands.items()}
    values["reactor_pressure"] = bands["reactor_pressure"].eng[1] + 1.0
    values["stripper_level"] = math.nan
    frame = pd.DataFrame([values], index=[pd.Timestamp("2026-12-01", tz="UTC")])
    tiles = trends.live_tiles(frame, bands)
    elsewhere = trends.abnormal_elsewhere(tiles, groups, "feeds")
    assert {g: [t.tag for t in ts] for g, ts in elsewhere.items()} == {
        "reactor": ["reactor_pressure"],
        "stripper": ["stripper_level"],
    }
    assert elsewhere["reactor"][0].state == trends.TagState.LIMIT
    assert "reactor" not in trends.abnormal_elsewhere(tiles, groups, "reactor")


def test_status_view_flags_a_silent_or_stale_runtime(built: BuiltHome) -> None:
    spec = built.spec
    assert not trends.status_view(None, spec).running
    now = datetime.now(UTC)
    live = RuntimeStatus(
        "cstr",
        mode="supervised",
        heartbeat_at=now,
        connected=True,
        last_sample_age_s=3.0,
        model_version="v001",
        ood_score=0.4,
    )
    v = trends.status_view(live, spec, now=now)
    assert v.running and v.connected and not v.stale and not v.ood_alarm
    silent = trends.status_view(live, spec, now=now + timedelta(seconds=60))
    assert not silent.running and silent.stale and "silent" in silent.last_reason
    stale = RuntimeStatus(
        "cstr", heartbeat_at=now, connected=True, last_sample_age_s=99.0, ood_score=1.7
    )
    v = trends.status_view(stale, spec, now=now)
    assert v.stale and v.ood_alarm


def test_proposal_view_and_history(built: BuiltHome, store: Store) -> None:
    pending = store.get_proposal(built.proposals[-1])
    view = pv.proposal_view(pending, built.spec, api.operator_limits(store, built.spec))
    row = view.mv_table.iloc[0]
    assert row["MV"] == "Tc" and row["proposed"] == pytest.approx(pending.mv_values["Tc"])
    assert row["move"] == pytest.approx(row["proposed"] - row["current"])
    assert abs(row["move"]) <= built.spec.tag("Tc").max_move + 1e-9
    assert set(view.predicted) == {"Ca", "T"} and set(view.hold) == {"Ca", "T"}
    tr = view.predicted["Ca"]
    assert len(tr.times) == len(tr.mean) == len(tr.lo) == len(tr.hi) > 0
    assert tr.times[0] == pending.data_ts + timedelta(seconds=built.spec.plant.control_interval_s)
    assert view.improvement == pytest.approx(view.hold_cost["total"] - view.cost["total"])
    assert view.model_version == built.version and len(view.margins) > 0
    status = RuntimeStatus("cstr", last_sample_ts=pending.data_ts + timedelta(seconds=10))
    left = pv.seconds_to_expiry(pending, status)
    assert left == pytest.approx((pending.expires_at - pending.data_ts).total_seconds() - 10)
    hist = pv.history_table(store, "cstr")
    assert list(hist["id"])[-3:] == built.proposals[::-1]
    by_id = hist.set_index("id")
    assert by_id.loc[built.proposals[0], "decision"] == "approve"
    assert by_id.loc[built.proposals[0], "by"] == "operator"
    assert by_id.loc[built.proposals[1], "note"] == "too aggressive before the shift change"
    assert by_id.loc[built.proposals[2], "status"] in ("pending", "superseded", "rejected")


def test_window_and_rollout_of_the_real_twin(built: BuiltHome, store: Store) -> None:
    model = registry.load_active(built.home, built.spec)
    at = built.last - timedelta(minutes=20)
    with context.historian(built.home, "cstr") as h:
        window = whatif.window_at(h, built.spec, list(model.tag_names), int(model.window), at)
        moves = whatif.actual_mv_plan(h, built.spec, at, 6)
        frame = h.read(at - timedelta(seconds=1), at + timedelta(seconds=1))
    assert window.shape == (model.window, len(model.tag_names))
    assert not pd.isna(window[-1]).any()
    assert window[-1, model.tag_names.index("Tc")] == pytest.approx(frame["Tc"].iloc[-1])
    assert len(moves["Tc"]) == 6 and moves["Tc"][0] == pytest.approx(frame["Tc"].iloc[-1])
    r = whatif.rollout(model, built.spec, window, at, moves)
    assert set(r.cv) == {"Ca", "T"} and len(r.cv["T"].mean) == 6
    # Offset correction: the rollout starts from the measured value, so the first step is near it.
    t_now = window[-1, model.tag_names.index("T")]
    assert abs(r.cv["T"].mean[0] - t_now) < 15.0
    with pytest.raises(BadInput, match="no values for MV Tc"):
        whatif.rollout(model, built.spec, window, at, {})
    with pytest.raises(whatif.NoWindow):
        with context.historian(built.home, "cstr") as h:
            whatif.window_at(
                h,
                built.spec,
                list(model.tag_names),
                int(model.window),
                built.first - timedelta(days=2),
            )


def test_modification_is_judged_against_holding(built: BuiltHome) -> None:
    spec = built.spec
    toy = ToyModel(spec, {"Ca": 0.85 / 300.0, "T": 1.0})
    window = pd.DataFrame([[0.85, 300.0, 350.0, 1.0, 300.0]] * 4, columns=spec.tag_names).to_numpy()
    at = datetime(2026, 1, 1, tzinfo=UTC)
    ops = {"T": (300.0, 360.0), "Ca": (0.05, 1.0)}
    ok = whatif.evaluate_modification(toy, spec, window, at, {"Tc": 302.0}, {"Tc": 300.0}, ops, 6)
    assert ok.ok, ok.reasons
    assert ok.rollout.cv["T"].mean[-1] == pytest.approx(302.0, abs=0.1)
    bad = whatif.evaluate_modification(toy, spec, window, at, {"Tc": 289.0}, {"Tc": 300.0}, ops, 6)
    assert not bad.ok
    assert any("T is predicted to cross its lower operator limit" in r for r in bad.reasons)
    assert bad.to_dict()["ok"] is False and "T" in bad.to_dict()["predicted"]


def test_replay_assembles_actual_predictions_and_markers(built: BuiltHome, store: Store) -> None:
    start, end = built.last - timedelta(minutes=45), built.last
    with context.historian(built.home, "cstr") as h:
        win = replay.assemble(store, h, built.spec, start, end)
    assert len(win.actual) > 400
    assert [p.proposal_id for p in win.predictions][:3] == built.proposals
    kinds = [m.kind for m in win.markers]
    assert kinds.count("proposal") >= 3
    # The approval and rejection happened on the wall clock just now; the clock map puts them
    # after the proposals they decide on (the history's plant clock is in the past here).
    assert "approve" in kinds and "reject" in kinds
    first = win.predictions[0]
    assert win.prediction_at(first.data_ts + timedelta(seconds=1)).proposal_id == first.proposal_id
    assert win.prediction_at(start - timedelta(hours=1)) is None
    csv = replay.window_csv(win).decode()
    head = csv.splitlines()[0].split(",")
    assert head[0] == "timestamp" and "Tc" in head and head[-1] == "events"
    assert "proposal " in csv


def test_clock_map_interpolates_wall_to_plant_time(built: BuiltHome, store: Store) -> None:
    props = store.list_proposals("cstr")
    to_plant = replay.clock_map(props)
    for p in props:
        assert abs((to_plant(p.created_at) - p.data_ts).total_seconds()) < 1e-3
    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert replay.clock_map([])(t) == t


def test_html_report_is_self_contained(built: BuiltHome, store: Store) -> None:
    from app import charts

    start, end = built.last - timedelta(minutes=45), built.last
    with context.historian(built.home, "cstr") as h:
        win = replay.assemble(store, h, built.spec, start, end)
    bands = trends.limit_bands(built.spec)
    figs = [
        charts.replay_figure(win, t, bands[t], start + timedelta(minutes=5)) for t in ("Ca", "Tc")
    ]
    html = report.incident_report(
        win, figs, title="Runaway <check>", notes="T rose\nfast", author="engineer"
    )
    assert html.startswith("<!DOCTYPE html>") and "Runaway &lt;check&gt;" in html
    assert "T rose<br>fast" in html
    assert html.count("Plotly.newPlot") == 2
    assert re.search(r"<script[^>]*\bsrc=", html) is None  # nothing fetched from the network
    assert len(html) > 1_000_000  # plotly.js is inlined


def test_audit_filters_and_export(built: BuiltHome, store: Store) -> None:
    f = audit_view.AuditFilter(user="engineer")
    rows = audit_view.filtered(store, f)
    assert rows and all(r["user"] == "engineer" for r in rows)
    assert [
        r["kind"] for r in audit_view.filtered(store, audit_view.AuditFilter(kind="reject"))
    ] == ["reject"]
    assert audit_view.filtered(store, audit_view.AuditFilter(text="shift change"))
    future = audit_view.AuditFilter(start=datetime.now(UTC) + timedelta(days=1))
    assert audit_view.filtered(store, future) == []
    frame = audit_view.audit_frame(audit_view.filtered(store, audit_view.AuditFilter()))
    assert list(frame["seq"]) == sorted(frame["seq"], reverse=True)
    csv = audit_view.export_bytes(rows).decode().splitlines()
    assert csv[0].split(",")[:4] == ["seq", "at", "user", "kind"] and len(csv) == len(rows) + 1
    users, kinds = audit_view.choices(store)
    assert "operator" in users and "approve" in kinds


def test_limits_are_changed_by_engineers_inside_engineering_limits(
    built: BuiltHome, store: Store
) -> None:
    spec = built.spec
    before = limits.limits_frame(store, spec)
    after = before.copy()
    after.loc[after["tag"] == "T", "operator hi"] = 355.0
    edits = limits.changes(before, after)
    assert edits == [("T", 300.0, 355.0)]
    with pytest.raises(PermissionDenied):
        limits.apply_changes(store, built.users["operator"], spec, edits, "tighter")
    with pytest.raises(BadInput, match="reason"):
        limits.apply_changes(store, built.users["engineer"], spec, edits, " ")
    problems = limits.apply_changes(
        store, built.users["engineer"], spec, [*edits, ("Ca", 0.0, 1.5)], "tighter for the campaign"
    )
    assert len(problems) == 1 and "Ca" in problems[0] and "engineering limits" in problems[0]
    now = limits.limits_frame(store, spec).set_index("tag")
    assert now.loc["T", "operator hi"] == 355.0 and now.loc["T", "from"] == "control room"
    assert (
        store.query("SELECT why FROM audit WHERE kind = 'operator_limits'")[-1][0]
        == "tighter for the campaign"
    )
    limits.apply_changes(store, built.users["engineer"], spec, [("T", 300.0, 360.0)], "restore")


def test_versions_cards_and_comparison(built: BuiltHome) -> None:
    frame = training.versions_frame(built.home, "cstr")
    assert list(frame["version"]) == [built.version] and bool(frame["active"].iloc[0])
    assert any(c.startswith("NRMSE h") for c in frame.columns)
    card = training.card(built.home, "cstr", built.version)
    ev = training.evaluation_table(card)
    assert {"jepa", "persistence"} <= set(ev["model"])
    cmp = training.compare(built.home, "cstr", built.version, built.version)
    assert len(cmp) > 0 and (cmp["change %"].fillna(0) == 0).all()
    mon = training.monitors_frame(card)
    assert len(mon) > 3 and all(isinstance(v, str) for v in mon["value"])
    import pyarrow as pa

    pa.Table.from_pandas(mon)  # what st.dataframe does: must not raise


def test_training_progress_is_read_from_the_runs_events(built: BuiltHome, tmp_path) -> None:
    run = training.TrainingRun(
        "train-x",
        "cstr",
        os.getpid(),
        tmp_path / "x.log",
        tmp_path / "x.rc",
        datetime.now(UTC),
        "engineer",
    )
    run.log.write_text("jepa:  50%|#####     | 1/2 [00:03<00:03, 3.05s/it]\r")
    with train_events.recording(run.events):
        train_events.emit("start", plant="cstr", pid=os.getpid())
        train_events.emit("epoch", stage="jepa", epochs=2, epoch=0, total=1.3, val=0.383)
        train_events.emit("epoch", stage="jepa", epochs=2, epoch=1, total=0.445, val=float("nan"))
        train_events.emit("stage_end", stage="jepa", stopped="all 2 epochs", best_val=0.383)
        train_events.emit(
            "epoch", stage="observation model", epochs=20, epoch=10, total=0.84, val=0.612
        )
    with run.events.open("a") as f:
        f.write('{"event": "epoch", "stage": "observation mo')  # a line still being written
    pr = training.progress(run)
    assert pr.running and pr.fraction == pytest.approx(11 / 20) and pr.returncode is None
    assert pr.stage == "observation model" and pr.last_line.startswith("jepa:  50%")
    cur = training.curves(run)
    assert cur["jepa"] == [{"total": 1.3, "val": 0.383}, {"total": 0.445}]  # NaN is left out
    assert cur["observation model"] == [{"total": 0.84, "val": 0.612}]
    run.events.write_text(run.events.read_text().rsplit("\n", 1)[0] + "\n")  # the writer finishes
    with train_events.recording(run.events):
        train_events.emit("done", version="v002", seconds=12.5)
    run.rc_file.write_text("0\n")
    pr = training.progress(run)
    assert not pr.running and pr.returncode == 0 and pr.version == "v002" and pr.fraction == 1.0
    cmd = training.train_command(built.home, "cstr", epochs=5, seed=3)
    assert cmd[1:5] == ["-m", "twin.cli", "train", "cstr"] and cmd[-4:] == [
        "--epochs",
        "5",
        "--seed",
        "3",
    ]


def test_step_test_design_passes_the_apis_validation(built: BuiltHome, store: Store) -> None:
    spec = built.spec
    design = steptest.design_moves(spec, steptest.StepDesign("Tc", 296.0, 2.0, hold_intervals=4))
    assert [m["values"]["Tc"] for m in design["moves"]] == [298.0, 296.0, 294.0, 296.0]
    assert design["moves"][1]["at_s"] == 4 * spec.plant.control_interval_s
    cid = api.request_steptest(store, built.users["engineer"], spec, design, "identification")
    assert store.get_steptest(cid).status == "requested"
    api.abort_steptest(store, built.users["engineer"], cid, "test done")
    with pytest.raises(BadInput, match="max_move"):
        steptest.design_moves(spec, steptest.StepDesign("Tc", 296.0, 5.0))
    with pytest.raises(BadInput, match="operator limits"):
        steptest.design_moves(spec, steptest.StepDesign("Tc", 303.0, 2.0))


@pytest.mark.timeout(180)
def test_background_training_makes_a_new_version(built: BuiltHome) -> None:
    run = training.start_training(built.home, "cstr", "engineer", epochs=2, seed=1, quick=True)
    assert training.list_runs(built.home, "cstr")[0].id == run.id
    deadline = datetime.now(UTC) + timedelta(seconds=150)
    while training.progress(run).running and datetime.now(UTC) < deadline:
        import time

        time.sleep(0.5)
    pr = training.progress(run)
    assert pr.returncode == 0, run.log.read_text()[-2000:]
    assert pr.version is not None and pr.version != built.version
    kinds = [e["event"] for e in train_events.read(run.events)]
    assert kinds[0] == "start" and kinds[-1] == "done" and "stage_end" in kinds
    assert 1 <= len(training.curves(run)["jepa"]) <= 2  # one row per epoch actually trained
    assert pr.version in registry.versions(built.home, "cstr")
    assert (
        registry.active_version(built.home, "cstr") == built.version
    )  # later versions wait for promotion


@pytest.mark.timeout(60)
def test_a_background_training_run_can_be_stopped(built: BuiltHome) -> None:
    import time

    run = training.start_training(built.home, "cstr", "engineer", seed=2)
    assert training.progress(run).running
    training.stop_training(run)
    deadline = time.monotonic() + 20
    while training._alive(run.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    pr = training.progress(run)
    assert not pr.running and pr.returncode in (training.STOPPED, 128 - training.STOPPED)
    ghost = training.TrainingRun(
        "train-ghost",
        "cstr",
        2**22 + 7,
        run.log,
        run.rc_file.with_name("g.rc"),
        datetime.now(UTC),
        "x",
    )
    assert not training.progress(ghost).running  # a run that vanished is not shown as running


def test_alarm_tables_of_a_flood_convert_for_the_page(tmp_path) -> None:
    """A dropped connection groups each tag's alarm under one parent: the tables the Alarms page
    shows mix alarms with and without a parent, and must still convert to Arrow (Streamlit's
    table format; an int/str column did not, and the page failed)."""
    import pyarrow as pa

    from app.logic import alarms as av
    from twin.sample import Quality, Sample
    from twin.serve.alarms import Alarms
    from twin.state import Store

    with Store(tmp_path / "state.db") as store:
        runtime = Alarms(store, "cstr")
        ts = datetime(2026, 1, 1, tzinfo=UTC)
        runtime.on_batch([Sample(ts, tag, math.nan, Quality.GAP) for tag in ("Ca", "T")])
        runtime.condition("sensor_fault", {"Ca": "Ca: GAP", "T": "T: GAP"})
        history = store.alarm_history("cstr", ts - timedelta(days=1), limit=50)
        assert {a.parent_id is None for a in history} == {True, False}
        for frame in (av.history_frame(history), av.alarm_frame(store.standing_alarms("cstr"))):
            assert pa.Table.from_pandas(frame).num_rows == len(frame)
