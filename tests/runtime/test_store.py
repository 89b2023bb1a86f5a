"""The state store: schema, records, and several processes writing at once."""

import multiprocessing as mp
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.state import backends
from tests.state.backends import new_target, reopen
from twin import audit
from twin.paths import Home
from twin.state import SCHEMA_VERSION, Store, StoreError
from twin.state.db import StoreIntegrityError

# The store fixtures of both backends (SQLite, PostgreSQL): every test here runs on each.
backend = backends.backend
store = backends.store


def test_schema_and_wal(store: Store) -> None:
    assert store.schema_version == SCHEMA_VERSION
    if store.backend == "sqlite":
        assert store.query("PRAGMA journal_mode")[0][0] == "wal"
    store.close()
    # Reopening keeps the data and does not re-run the migration.
    again = reopen(store)
    assert again.schema_version == SCHEMA_VERSION
    again.close()


def test_newer_schema_is_refused(store: Store) -> None:
    store.query("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    store.close()
    with pytest.raises(StoreError, match="newer"):
        reopen(store)


def test_status_round_trip(store: Store) -> None:
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    store.put_status(
        "cstr",
        mode="supervised",
        connected=True,
        last_sample_ts=ts,
        ood_score=float("nan"),
        alarms=[{"kind": "readback", "tag": "Tc"}],
    )
    store.put_status("cstr", heartbeat_at=ts + timedelta(seconds=1), steps_done=3)
    st = store.get_status("cstr")
    assert st.mode == "supervised" and st.connected is True and st.last_sample_ts == ts
    assert st.ood_score is None and st.steps_done == 3 and st.alarms[0]["tag"] == "Tc"
    assert store.get_status("other") is None
    with pytest.raises(ValueError, match="unknown status"):
        store.put_status("cstr", colour="red")


def test_proposal_payload_round_trip(store: Store) -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    payload = {"trajectories": {"Ca": [0.1, 0.2, float("nan")]}, "summary": "x"}
    pid = store.add_proposal(
        plant="cstr",
        mv_values={"Tc": 300.0},
        payload=payload,
        data_ts=t,
        expires_at=t + timedelta(seconds=60),
        model_version="v3",
        mode="advisory",
        status="advisory",
    )
    p = store.get_proposal(pid)
    assert p.payload["trajectories"]["Ca"] == [0.1, 0.2, None]
    assert p.data_ts == t and p.status == "advisory" and p.model_version == "v3"
    assert store.pending_proposal("cstr") is None


def _worker(target: str, home: str, n: int, k: int) -> None:
    s = Store(target, home=Home(Path(home)))
    t = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(n):
        s.log_event(user=f"proc{k}", kind="load", what={"i": i})
        s.add_proposal(
            plant=f"p{k}",
            mv_values={"Tc": float(i)},
            payload={},
            data_ts=t,
            expires_at=t,
            model_version=None,
            mode="supervised",
        )
        s.put_status(f"p{k}", steps_done=i)
        s.get_status(f"p{k}")
    s.close()


@pytest.mark.timeout(120)
def test_several_processes_write_at_once(backend: str, tmp_path: Path) -> None:
    target = str(new_target(backend, tmp_path))
    Store(target, home=Home(tmp_path)).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(target, str(tmp_path), 40, k)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(90)
        assert p.exitcode == 0
    s = Store(target, home=Home(tmp_path))
    # Each process: 40 events + 40 proposals, each audited; the chain stays linear.
    result = audit.verify(s)
    assert result.ok and result.entries == 4 * 80
    for k in range(4):
        props = s.list_proposals(f"p{k}", limit=1000)
        assert len(props) == 40
        assert sum(p.status == "pending" for p in props) == 1  # the rest superseded
        assert s.get_status(f"p{k}").steps_done == 39
    s.close()


def test_one_write_per_decision_and_tag(store: Store) -> None:
    with store.write() as c:
        c.execute(
            "INSERT INTO writes (plant, decision_id, tag, requested, status, at) VALUES ('cstr', 1, 'Tc', 1.0, 'intent', 'x')"
        )
    with pytest.raises(StoreIntegrityError):
        with store.write() as c:
            c.execute(
                "INSERT INTO writes (plant, decision_id, tag, requested, status, at) VALUES ('cstr', 1, 'Tc', 1.0, 'intent', 'x')"
            )
