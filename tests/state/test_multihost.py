"""What a site with several hosts relies on, on both backends (PostgreSQL on a real server):
two runtimes racing for one decision, a store opened by several processes at once, migrations
with a version table, and tampering found by `twin audit verify`."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.state import backends
from tests.state.backends import Raw, new_target, reopen
from twin import audit
from twin.errors import TwinError
from twin.paths import Home
from twin.state import SCHEMA_VERSION, Store, WriteSettlement

backend = backends.backend
store = backends.store


def _claim(
    target: str, home: str, decision_id: int, proposal_id: int, k: int, go: Any, out: Any
) -> None:
    """One runtime: open the store, wait for the other, try to take the decision."""
    s = Store(target, home=Home(Path(home)))
    go.wait(60)
    try:
        ids = s.record_intent(
            plant="cstr",
            actor=f"runtime{k}",
            values={"Tc": 301.0, "F": 1.0},
            prior={"Tc": 300.0, "F": 0.9},
            decision_id=decision_id,
            proposal_id=proposal_id,
        )
        out.put((k, "took", sorted(ids)))
    except TwinError as exc:
        out.put((k, "refused", str(exc)))
    finally:
        s.close()


def _approved(s: Store) -> tuple[int, int]:
    now = datetime.now(UTC)
    pid = s.add_proposal(
        plant="cstr",
        mv_values={"Tc": 301.0, "F": 1.0},
        payload={},
        data_ts=now,
        expires_at=now + timedelta(minutes=5),
        model_version="v1",
        mode="supervised",
    )
    did = s.decide(
        s.get_proposal(pid), user="op", kind="approve", values=None, note="", evaluation=None
    )
    return did, pid


@pytest.mark.timeout(180)
def test_two_runtimes_racing_for_one_decision_write_it_once(store: Store) -> None:
    decision_id, proposal_id = _approved(store)
    ctx = mp.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(
            target=_claim,
            args=(str(store.target), str(store.home.root), decision_id, proposal_id, k, go, out),
        )
        for k in range(2)
    ]
    for p in procs:
        p.start()
    go.set()
    results = sorted(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    outcomes = [r[1] for r in results]
    assert sorted(outcomes) == ["refused", "took"], results
    assert "already taken" in next(r[2] for r in results if r[1] == "refused")
    writes = store.writes_for(decision_id=decision_id)
    assert sorted(w.tag for w in writes) == ["F", "Tc"]  # one intent per tag, no doubles
    assert all(w.status == "intent" for w in writes)
    intents = audit.entries(store, kind="write_intent")
    assert len(intents) == 1 and intents[0]["what"]["decision_id"] == decision_id
    assert audit.verify(store).ok


def test_a_decision_taken_by_one_runtime_is_not_refused_by_another(store: Store) -> None:
    decision_id, proposal_id = _approved(store)
    store.record_intent(
        plant="cstr",
        actor="runtime-a",
        values={"Tc": 301.0},
        prior={"Tc": 300.0},
        decision_id=decision_id,
        proposal_id=proposal_id,
    )
    other = reopen(store)  # runtime b's guard refuses the same approval a moment later
    assert not other.refuse_write(
        plant="cstr",
        actor="runtime-b",
        proposal_id=proposal_id,
        decision_id=decision_id,
        values={"Tc": 301.0},
        reasons=("too far",),
    )
    other.close()
    assert [w.status for w in store.writes_for(decision_id=decision_id)] == ["intent"]
    assert store.get_decision(proposal_id).applied == "writing"
    assert not audit.entries(store, kind="write_refused")


def test_an_interrupted_move_closes_with_its_writes_in_one_transaction(store: Store) -> None:
    decision_id, proposal_id = _approved(store)
    ids = store.record_intent(
        plant="cstr",
        actor="runtime",
        values={"Tc": 301.0},
        prior={"Tc": 300.0},
        decision_id=decision_id,
        proposal_id=proposal_id,
    )
    settled = WriteSettlement(
        write_id=ids["Tc"],
        tag="Tc",
        requested=301.0,
        live=300.0,
        applied=False,
        reason="settled from the plant's value 300",
    )
    store.settle_move(
        plant="cstr",
        actor="runtime",
        decision_id=decision_id,
        proposal_id=proposal_id,
        outcome="failed",
        why="no MV of the move was applied",
        writes=[settled],
    )
    (w,) = store.writes_for(decision_id=decision_id)
    assert (w.status, w.read_back, w.reason) == ("failed", 300.0, settled.reason)
    assert store.open_write_intents("cstr") == []
    assert store.get_decision(proposal_id).applied == "failed"
    assert store.get_proposal(proposal_id).status == "failed"
    assert store.decisions_left_writing("cstr") == []
    # Both audit entries, one after the other: written by the one transaction.
    kinds = [e["kind"] for e in audit.entries(store)][-2:]
    assert kinds == ["write_reconciled", "move_reconciled"]
    assert audit.verify(store).ok


def _open_and_log(target: str, home: str, k: int, go: Any) -> None:
    go.wait(60)
    with Store(target, home=Home(Path(home))) as s:
        for i in range(5):
            s.log_event(user=f"host{k}", kind="test", what={"i": i})


@pytest.mark.timeout(180)
def test_processes_opening_an_empty_store_at_once_migrate_it_once(
    backend: str, tmp_path: Path
) -> None:
    target = str(new_target(backend, tmp_path))
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    procs = [
        ctx.Process(target=_open_and_log, args=(target, str(tmp_path), k, go)) for k in range(3)
    ]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with Store(target, home=Home(tmp_path)) as s:
        assert s.schema_version == SCHEMA_VERSION
        assert len(s.query("SELECT * FROM meta WHERE key = 'schema_version'")) == 1
        result = audit.verify(s)
        assert result.ok and result.entries == 15, str(result)


def test_migration_from_empty_and_reopen_is_idempotent(store: Store) -> None:
    assert store.schema_version == SCHEMA_VERSION
    store.log_event(user="u", kind="test", what={"n": 1})
    again = reopen(store)
    again.close()
    again = reopen(store)
    assert again.schema_version == SCHEMA_VERSION
    assert len(again.query("SELECT key FROM meta")) == 1
    assert audit.verify(again).ok and audit.verify(again).entries == 1
    again.close()


def test_an_older_schema_is_migrated_forward(store: Store) -> None:
    """A store left at version 1 (before `writes.prior` and `decisions.audit_seq`) is brought
    up to this program's version by the migrations, in order, at the next open."""
    raw = Raw(store)
    raw.execute("ALTER TABLE writes DROP COLUMN prior")
    raw.execute("ALTER TABLE decisions DROP COLUMN audit_seq")
    raw.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    raw.close()
    store.close()
    again = reopen(store)
    assert again.schema_version == SCHEMA_VERSION
    decision_id, _ = _approved(again)
    assert again.decision_audit_seq(decision_id) is not None
    again.close()


def test_an_edited_row_is_named_by_verify(store: Store) -> None:
    for i in range(6):
        store.log_event(user="u", kind="test", what={"i": i})
    raw = Raw(store).drop_audit_triggers()
    raw.execute("UPDATE audit SET what = ? WHERE seq = ?", ('{"i":99}', 4))
    raw.close()
    result = audit.verify(store)
    assert not result.ok and result.first_broken == 4 and "altered" in result.reason
    # Reopening puts the append-only triggers back.
    again = reopen(store)
    with pytest.raises(TwinError, match="append-only"):
        again.query("DELETE FROM audit WHERE seq = 1")
    again.close()


@pytest.fixture
def pg_store(tmp_path: Path) -> Iterator[Store]:
    s = backends.open_store("postgresql", tmp_path)
    yield s
    s.close()


def test_a_dropped_connection_is_reopened_at_the_next_transaction(pg_store: Store) -> None:
    """The server restarted or dropped the session between two transactions: the store
    reconnects instead of failing every call from then on."""
    pg_store.log_event(user="u", kind="test", what={"n": 1})
    (pid,) = pg_store.query("SELECT pg_backend_pid()")[0]
    raw = Raw(pg_store)
    assert raw.execute("SELECT pg_terminate_backend(?)", (pid,)).fetchone()[0] is True
    raw.close()
    pg_store.log_event(user="u", kind="test", what={"n": 2})
    assert pg_store.query("SELECT pg_backend_pid()")[0][0] != pid
    assert len(audit.entries(pg_store)) == 2 and audit.verify(pg_store).ok
