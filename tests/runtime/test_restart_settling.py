"""What a restart finds of moves the runtime was writing when it stopped (safety rule 5)."""

from __future__ import annotations

from pathlib import Path

from twin.paths import Home
from twin.serve import LiveState
from twin.serve.alarms import Alarms
from twin.serve.connections import open_connections
from twin.serve.writepath import WritePath
from twin.spec import PlantSpec
from twin.state import Store

from .conftest import add_pending


def _approved_and_written(store: Store, statuses: dict[str, str]) -> tuple[int, int]:
    """An approval whose writes ended with `statuses`, its decision left "writing"."""
    pid = add_pending(store, values={"Tc": 301.0, "Caf": 1.0})
    did = store.decide(
        store.get_proposal(pid), user="olga", kind="approve", values=None, note="", evaluation=None
    )
    ids = store.record_intent(
        plant="cstr",
        actor="runtime",
        values={"Tc": 301.0, "Caf": 1.0},
        prior={"Tc": 300.0, "Caf": 1.0},
        decision_id=did,
        proposal_id=pid,
    )
    for tag, wid in ids.items():
        store.complete_write(wid, statuses[tag], written=1.0, read_back=1.0)
    return pid, did


def _restart(store: Store, spec: PlantSpec, tmp_path: Path) -> WritePath:
    _, sink = open_connections(spec, Home.at(tmp_path), "opcua")  # never entered: no I/O
    path = WritePath(spec, store, sink, LiveState(spec, keep_s=600), Alarms(store, spec.name))
    path.load_interrupted()
    return path


def test_a_move_done_before_the_stop_closes_its_decision_at_the_next_start(
    store: Store, cstr: PlantSpec, tmp_path: Path
) -> None:
    pid, did = _approved_and_written(store, {"Tc": "done", "Caf": "done"})
    assert store.decisions_left_writing("cstr") == [did]
    path = _restart(store, cstr, tmp_path)
    assert store.decisions_left_writing("cstr") == []
    assert store.get_decision(pid).applied == "written"  # type: ignore[union-attr]
    assert store.get_proposal(pid).status == "written"
    assert path.unsettled == []  # nothing to settle: no write is sent again


def test_a_move_that_ended_otherwise_is_settled_from_the_plant(
    store: Store, cstr: PlantSpec, tmp_path: Path
) -> None:
    pid, did = _approved_and_written(store, {"Tc": "done", "Caf": "failed"})
    path = _restart(store, cstr, tmp_path)
    assert [m.decision_id for m in path.unsettled] == [did]
    assert path.unsettled[0].unsettled == {"Tc", "Caf"}  # what the plant holds decides
    assert store.get_decision(pid).applied == "writing"  # type: ignore[union-attr]
