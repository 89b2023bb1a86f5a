"""End to end over real protocols: `twin sim` serves the CSTR over OPC-UA and Modbus in its own
process, `twin serve` runs in another with a tiny trained twin, and the test acts as the
control room through twin.api and checks the plant with independent protocol clients."""

from __future__ import annotations

import math
import shutil
import signal
import time
from pathlib import Path

import pytest

from twin import api, audit
from twin.auth import PermissionDenied
from twin.paths import Home
from twin.spec import load_spec
from twin.state import Store
from twin.users import create_user

from .plant import (
    read_modbus,
    read_opcua,
    start_serve,
    start_sim,
    stop,
    train_tiny,
    wait_for,
    write_spec,
)

pytestmark = [pytest.mark.slow]
PASSWORD = "operator password"


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> Path:
    home = Home.at(tmp_path_factory.mktemp("tiny"))
    train_tiny(home)
    return home.models_dir("cstr")


class Rig:
    """A plant spec on free ports, a home with the tiny twin, a store and users."""

    def __init__(self, tmp: Path, models: Path, **spec_kw: float) -> None:
        self.tmp = tmp
        self.spec = write_spec(tmp / "spec", **spec_kw)
        self.home = tmp / "home"
        shutil.copytree(models, self.home / "models" / "cstr")
        self.store = Store(self.home / "state.db")
        create_user(self.store, "olga", "operator", PASSWORD, actor="test")
        create_user(self.store, "vic", "viewer", PASSWORD, actor="test")
        self.op = api.log_in(self.store, "olga", PASSWORD)
        self.viewer = api.log_in(self.store, "vic", PASSWORD)
        self.sim_log, self.serve_log = tmp / "sim.log", tmp / "serve.log"
        self.sim = self.serve = None

    def start(self, source: str = "opcua", mode: str = "supervised") -> None:
        self.sim = start_sim(self.spec, self.sim_log)
        self.serve = start_serve(self.spec, self.home, self.serve_log, mode=mode, source=source)

    def close(self) -> None:
        for p in (self.serve, self.sim):
            if p is not None:
                stop(p, signal.SIGKILL)
        self.store.close()

    def wait(self, check, timeout: float, what: str):
        return wait_for(check, timeout, what, self.serve, self.serve_log)

    def decide_next(
        self, how: str, min_id: int = 0, value: float | None = None, timeout: float = 90
    ):
        """Approve / modify / reject the newest pending proposal (retrying if it is superseded)."""

        def attempt():
            p = self.store.pending_proposal("cstr")
            if p is None or p.id <= min_id:
                return None
            try:
                if how == "approve":
                    api.approve(self.store, p.id, self.op, "e2e")
                elif how == "modify":
                    live = p.payload["mv_live"]["Tc"]
                    api.modify(
                        self.store,
                        p.id,
                        self.op,
                        {"Tc": value if value is not None else live - 1.0},
                        "e2e modify",
                        spec=self.spec,
                    )
                else:
                    api.reject(self.store, p.id, self.op, "e2e: not now")
            except api.ProposalClosed:
                return None
            return p

        return self.wait(attempt, timeout, f"a proposal to {how}")

    def outcome(self, proposal_id: int, timeout: float = 30) -> str:
        def done():
            d = self.store.get_decision(proposal_id)
            return d.applied if d is not None and d.applied not in (None, "writing") else None

        result = self.wait(done, timeout, f"the runtime to act on proposal {proposal_id}")
        self.reasons = [
            w.reason
            for w in self.store.writes_for(decision_id=self.store.get_decision(proposal_id).id)
        ]
        return result


@pytest.fixture
def rig(tmp_path, tiny_models):
    r = Rig(tmp_path, tiny_models)
    yield r
    r.close()


def _auto_operating(rig: Rig) -> None:
    """In auto mode operating limits are hard (safety rule 4): the tiny test twin's wide bands
    on T (about +-30 K) would cross the cstr's 360 K operating limit on every plan, so the
    auto-mode tests run the plant with T's operating band widened inside its engineering limits."""
    text = rig.spec.path.read_text().replace(
        "operating = [300.0, 360.0]", "operating = [290.0, 398.0]"
    )
    rig.spec.path.write_text(text)
    rig.spec = load_spec(rig.spec.path)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-4)


@pytest.mark.timeout(240)
def test_supervised_over_opcua(rig: Rig) -> None:
    rig.start("opcua")
    nominal = read_opcua(rig.spec, "Tc")
    p = rig.wait(lambda: rig.store.pending_proposal("cstr"), 120, "a first proposal")
    # Stored with its predicted trajectories, with and without the move.
    assert p.payload["predicted"]["Ca"]["mean"] and p.payload["hold"]["Ca"]["mean"]
    assert p.model_version == "v001" and p.expires_at > p.data_ts

    with pytest.raises(PermissionDenied):
        api.approve(rig.store, p.id, rig.viewer)

    rejected = rig.decide_next("reject")
    time.sleep(1.5)  # a control interval at 20x
    assert rig.store.writes_for(plant="cstr") == []
    assert _close(read_opcua(rig.spec, "Tc"), nominal)
    assert rig.store.get_proposal(rejected.id).status == "rejected"

    approved = rig.decide_next("approve", min_id=rejected.id)
    assert rig.outcome(approved.id) == "written"
    want = approved.mv_values["Tc"]
    (w,) = rig.store.writes_for(decision_id=rig.store.get_decision(approved.id).id)
    assert w.status == "done" and _close(w.read_back, want) and _close(w.requested, want)
    assert _close(read_opcua(rig.spec, "Tc"), want)

    modified = rig.decide_next("modify", min_id=approved.id)
    assert rig.outcome(modified.id) == "written", rig.reasons
    target = rig.store.get_decision(modified.id).mv_values["Tc"]
    assert _close(read_opcua(rig.spec, "Tc"), target)

    status = rig.store.get_status("cstr")
    assert status.connected and status.mode == "supervised" and status.model_version == "v001"
    assert stop(rig.serve) == 0
    assert audit.verify(rig.store).ok
    kinds = {e["kind"] for e in audit.entries(rig.store, plant="cstr")}
    assert {"proposal", "reject", "approve", "modify", "write_intent", "write"} <= kinds


@pytest.mark.timeout(240)
def test_supervised_over_modbus(rig: Rig) -> None:
    rig.start("modbus")
    nominal = read_modbus(rig.spec, "Tc")
    rejected = rig.decide_next("reject", timeout=120)
    time.sleep(2.0)
    assert rig.store.writes_for(plant="cstr") == []
    assert _close(read_modbus(rig.spec, "Tc"), nominal)
    with pytest.raises(PermissionDenied):
        api.approve(
            rig.store,
            rig.wait(lambda: rig.store.pending_proposal("cstr"), 30, "a proposal").id,
            rig.viewer,
        )
    approved = rig.decide_next("approve", min_id=rejected.id)
    assert rig.outcome(approved.id) == "written"
    assert _close(read_modbus(rig.spec, "Tc"), approved.mv_values["Tc"])
    assert read_opcua(rig.spec, "Tc") == pytest.approx(approved.mv_values["Tc"], abs=1e-4)

    # A step-test campaign: runs only once an engineer approves it, every move guarded and logged.
    # Two engineers: the one who asks for a step test cannot approve it (two-person rule).
    create_user(rig.store, "erin", "engineer", PASSWORD, actor="test")
    create_user(rig.store, "ed", "engineer", PASSWORD, actor="test")
    eng, eng2 = api.log_in(rig.store, "erin", PASSWORD), api.log_in(rig.store, "ed", PASSWORD)
    base = read_modbus(rig.spec, "Tc")
    moves = [
        {"at_s": 0, "values": {"Tc": base - 1.0}},
        {"at_s": 30, "values": {"Tc": base - 2.0}},
        {"at_s": 60, "values": {"Tc": base - 1.0}},
    ]
    cid = api.request_steptest(rig.store, eng, rig.spec, {"moves": moves}, "e2e campaign")
    time.sleep(1.0)
    assert rig.store.writes_for(campaign_id=cid) == []  # requested is not approved
    api.approve_steptest(rig.store, eng2, cid)
    rig.wait(lambda: rig.store.get_steptest(cid).status == "done", 60, "the campaign to finish")
    writes = rig.store.writes_for(campaign_id=cid)
    assert sorted(w.step for w in writes) == [0, 1, 2] and all(w.status == "done" for w in writes)
    assert _close(read_modbus(rig.spec, "Tc"), base - 1.0)
    # A long campaign, aborted by an operator after its first move: nothing more is written.
    long = [{"at_s": 0, "values": {"Tc": base}}, {"at_s": 100_000, "values": {"Tc": base + 1.0}}]
    cid2 = api.request_steptest(rig.store, eng, rig.spec, {"moves": long})
    api.approve_steptest(rig.store, eng2, cid2)
    rig.wait(lambda: len(rig.store.writes_for(campaign_id=cid2)) == 1, 30, "the first move")
    api.abort_steptest(rig.store, rig.op, cid2, "operator stop")
    time.sleep(1.0)
    assert rig.store.get_steptest(cid2).status == "aborted"
    assert len(rig.store.writes_for(campaign_id=cid2)) == 1
    assert _close(read_modbus(rig.spec, "Tc"), base)
    kinds = [e["kind"] for e in audit.entries(rig.store, kind="steptest")]
    assert (
        kinds.count("steptest_start") == 2
        and "steptest_done" in kinds
        and "steptest_abort" in kinds
    )
    assert stop(rig.serve) == 0
    assert audit.verify(rig.store).ok


@pytest.mark.timeout(240)
def test_expired_proposal_writes_nothing(tmp_path, tiny_models) -> None:
    # Proposals live 60 s of plant time (3 s at 20x). One is approved while the runtime is
    # down; by the time a new runtime picks the approval up, the proposal has expired.
    rig = Rig(tmp_path, tiny_models, ttl_s=60.0)
    try:
        rig.start("opcua")
        nominal = read_opcua(rig.spec, "Tc")

        def fresh():
            p, st = rig.store.pending_proposal("cstr"), rig.store.get_status("cstr")
            ok = p is not None and st.last_sample_ts is not None
            return p if ok and (p.expires_at - st.last_sample_ts).total_seconds() > 30 else None

        p = rig.wait(fresh, 120, "a fresh proposal")
        assert stop(rig.serve) == 0
        api.approve(rig.store, p.id, rig.op, "approved while the runtime was down")
        rig.serve = start_serve(rig.spec, rig.home, rig.serve_log)
        assert rig.outcome(p.id, timeout=90) == "refused"
        (w,) = rig.store.writes_for(decision_id=rig.store.get_decision(p.id).id)
        assert w.status == "refused" and "expired" in w.reason and w.written is None
        assert rig.store.get_proposal(p.id).status == "refused"
        assert _close(read_opcua(rig.spec, "Tc"), nominal)
        assert stop(rig.serve) == 0
        assert audit.verify(rig.store).ok
    finally:
        rig.close()


@pytest.mark.timeout(300)
def test_plant_killed_and_restarted_while_serving(rig: Rig) -> None:
    rig.start("opcua")
    first = rig.wait(lambda: rig.store.pending_proposal("cstr"), 120, "a first proposal")
    stop(rig.sim, signal.SIGKILL)
    # No crash; the data goes stale and no proposal is made while it is.
    rig.wait(
        lambda: "stale" in (rig.store.get_status("cstr").last_reason or ""), 30, "stale status"
    )
    stale_count = len(rig.store.list_proposals("cstr", limit=10_000))
    # An approval while the data is stale is refused by the guard and writes nothing.
    pending = rig.store.pending_proposal("cstr")
    assert pending is not None  # made before the outage, still within its lifetime
    api.approve(rig.store, pending.id, rig.op, "during the outage")
    assert rig.outcome(pending.id) == "refused"
    (w,) = rig.store.writes_for(decision_id=rig.store.get_decision(pending.id).id)
    assert "stale" in w.reason, w.reason
    time.sleep(4.0)
    assert rig.serve.poll() is None
    assert len(rig.store.list_proposals("cstr", limit=10_000)) == stale_count
    # The plant comes back on the same ports (a fresh simulator: its clock starts over).
    rig.sim = start_sim(rig.spec, rig.sim_log)
    newest = max(p.id for p in rig.store.list_proposals("cstr", limit=10_000))
    resumed = rig.wait(
        lambda: (p := rig.store.pending_proposal("cstr")) is not None and p.id > newest and p,
        120,
        "proposals to resume",
    )
    assert resumed.id > first.id
    approved = rig.decide_next("approve", min_id=newest)
    assert rig.outcome(approved.id) == "written"
    assert _close(read_opcua(rig.spec, "Tc"), approved.mv_values["Tc"])
    assert stop(rig.serve) == 0
    assert audit.verify(rig.store).ok


@pytest.mark.timeout(300)
def test_runtime_sigkilled_and_restarted(rig: Rig) -> None:
    rig.start("opcua")
    approved = rig.decide_next("approve", timeout=120)
    stop(rig.serve, signal.SIGKILL)  # at whatever point the runtime had reached
    rig.serve = start_serve(rig.spec, rig.home, rig.serve_log)
    outcome = rig.outcome(approved.id, timeout=90)
    decision = rig.store.get_decision(approved.id)
    writes = rig.store.writes_for(decision_id=decision.id)
    assert len(writes) == 1  # one row per tag, ever: never applied twice
    assert rig.store.open_write_intents("cstr") == []
    written = [
        e
        for e in audit.entries(rig.store, kind="write")
        if e["kind"] == "write" and e["subject"] == f"proposal:{approved.id}"
    ]
    assert len(written) <= 1
    if outcome == "written":
        assert _close(read_opcua(rig.spec, "Tc"), approved.mv_values["Tc"])
    # Later approvals are written as usual after the restart.
    nxt = rig.decide_next("approve", min_id=approved.id)
    assert rig.outcome(nxt.id) == "written", rig.store.writes_for(plant="cstr", limit=3)

    # A crash exactly between committing the intent and writing: settled on restart, not re-sent.
    p = rig.wait(lambda: rig.store.pending_proposal("cstr"), 30, "a pending proposal")
    stop(rig.serve, signal.SIGKILL)
    current = read_opcua(rig.spec, "Tc")
    live = p.payload["mv_live"]["Tc"]
    target = next(live + d for d in (-1.0, 1.0, -1.5, 1.5) if abs(live + d - current) > 0.1)
    did = api.modify(rig.store, p.id, rig.op, {"Tc": target}, "interrupted", spec=rig.spec)
    # What the runtime commits before it writes: the decision taken and the intent recorded.
    rig.store.record_intent(
        plant="cstr",
        actor="runtime",
        values={"Tc": target},
        prior={"Tc": live},
        decision_id=did,
        proposal_id=p.id,
    )
    assert len(rig.store.open_write_intents("cstr")) == 1
    rig.serve = start_serve(rig.spec, rig.home, rig.serve_log)
    rig.wait(
        lambda: not rig.store.open_write_intents("cstr"),
        90,
        "the interrupted write to be reconciled",
    )
    (w,) = rig.store.writes_for(decision_id=did)
    assert w.status == "failed" and "settled from the plant's value" in w.reason
    assert rig.store.get_decision(p.id).applied == "failed"
    time.sleep(1.0)
    assert _close(read_opcua(rig.spec, "Tc"), current)
    assert stop(rig.serve) == 0
    assert audit.verify(rig.store).ok
    starts = [e["kind"] for e in audit.entries(rig.store, kind="runtime_start")]
    assert len(starts) == 3


@pytest.mark.timeout(240)
def test_advisory_writes_nothing_and_auto_closes_the_loop(rig: Rig) -> None:
    rig.sim = start_sim(rig.spec, rig.sim_log)
    nominal = read_opcua(rig.spec, "Tc")
    rig.serve = start_serve(rig.spec, rig.home, rig.serve_log, mode="advisory", steps=2)
    assert rig.serve.wait(120) == 0, rig.serve_log.read_text()
    made = rig.store.list_proposals("cstr")
    assert made and all(p.status in ("advisory", "expired") for p in made)
    with pytest.raises(api.ProposalClosed):
        api.approve(rig.store, made[0].id, rig.op)
    assert rig.store.writes_for(plant="cstr") == [] and _close(read_opcua(rig.spec, "Tc"), nominal)

    _auto_operating(rig)
    rig.serve = start_serve(rig.spec, rig.home, rig.serve_log, mode="auto", steps=3)
    assert rig.serve.wait(120) == 0, rig.serve_log.read_text()
    auto = [p for p in rig.store.list_proposals("cstr") if p.mode == "auto"]
    assert auto and all(rig.store.get_decision(p.id).user == "runtime(auto)" for p in auto)
    done = [w for w in rig.store.writes_for(plant="cstr") if w.status == "done"]
    assert done and _close(read_opcua(rig.spec, "Tc"), done[0].read_back)
    assert audit.verify(rig.store).ok


def test_auto_mode_is_refused_unless_the_spec_allows_it(tmp_path) -> None:
    import subprocess

    from .plant import twin_cmd

    spec = write_spec(tmp_path / "spec")
    text = spec.path.read_text().replace("allow_auto = true", "allow_auto = false")
    spec.path.write_text(text)
    run = subprocess.run(
        twin_cmd("serve", str(spec.path), "--mode", "auto", "--home", str(tmp_path / "h")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "allow_auto" in run.stderr


@pytest.mark.timeout(300)
def test_auto_moves_sit_on_the_control_interval_grid(rig: Rig) -> None:
    # Served at 20x, consecutive writes used to land 25-35 s of plant time apart on a 30 s
    # interval, so an MV could move twice its max_move within one interval.
    from twin.historian import Historian

    _auto_operating(rig)
    rig.sim = start_sim(rig.spec, rig.sim_log)
    rig.serve = start_serve(rig.spec, rig.home, rig.serve_log, mode="auto", steps=12)
    assert rig.serve.wait(200) == 0, rig.serve_log.read_text()
    done = [w for w in rig.store.writes_for(plant="cstr") if w.status == "done"]
    assert len(done) >= 3, rig.serve_log.read_text()[-3000:]
    with Historian(Home.at(rig.home).historian_dir("cstr")) as h:
        start, end = h.time_range()
        tc = h.read(start, end, tags=["Tc"])["Tc"].dropna()
    interval = rig.spec.plant.control_interval_s
    max_move = rig.spec.tag("Tc").max_move
    grid = (tc.index.map(lambda t: t.timestamp()).to_numpy() // interval).astype(int)
    spans = tc.groupby(grid).agg(lambda v: v.max() - v.min())
    assert (spans <= max_move + 1e-6).all(), spans[spans > max_move]
    # Each interval starts from where the previous one ended: the sum of both sides too.
    ends = tc.groupby(grid).last()
    starts = tc.groupby(grid).first()
    moved = (starts.shift(-1) - ends).abs().dropna()
    assert ((spans + moved.reindex(spans.index, fill_value=0)) <= 2 * max_move + 1e-6).all()
