"""Two `twin serve` runtimes, as on two hosts (each its own twin home, one shared audit key),
on one PostgreSQL state store and one simulated plant: every approval is acted on exactly once
(written or refused, never both, never twice) and the audit verifies from either host."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest

from tests.runtime.plant import start_serve, start_sim, stop, train_tiny, wait_for, write_spec
from tests.state.backends import fresh_schema_url, postgres_url
from twin import api, audit
from twin.audit_keys import AuditFiles
from twin.paths import Home
from twin.state import Store
from twin.users import create_user

pytestmark = [pytest.mark.slow]
PASSWORD = "operator password"


@pytest.mark.timeout(600)
def test_two_runtimes_on_one_postgres_store_act_on_each_approval_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = fresh_schema_url(postgres_url())
    models = Home.at(tmp_path / "tiny")
    train_tiny(models)
    spec = write_spec(tmp_path / "spec")
    hosts = [Home.at(tmp_path / f"host{k}") for k in (1, 2)]
    for h in hosts:
        shutil.copytree(models.models_dir("cstr"), h.models_dir("cstr"))
    store = Store(url, home=hosts[0])
    create_user(store, "olga", "operator", PASSWORD, actor="test")  # makes the audit key
    shutil.copytree(hosts[0].keys_dir, hosts[1].keys_dir)  # the site's one key, on each host
    op = api.log_in(store, "olga", PASSWORD)
    monkeypatch.setenv("TWIN_STATE_URL", url)  # what both runtimes (child processes) open
    sim = start_sim(spec, tmp_path / "sim.log")
    logs = [tmp_path / f"serve{k}.log" for k in (1, 2)]
    serves = [start_serve(spec, h.root, log) for h, log in zip(hosts, logs, strict=True)]
    decided: list[int] = []
    try:
        for _ in range(3):

            def approve_one() -> int | None:
                p = store.pending_proposal("cstr")
                if p is None or p.id in decided:
                    return None
                try:
                    api.approve(store, p.id, op, "two runtimes")
                except api.ProposalClosed:
                    return None  # superseded by the other runtime's newer proposal
                return p.id

            pid = wait_for(approve_one, 180, "a proposal to approve", serves[0], logs[0])
            decided.append(pid)

            def acted_on(pid: int = pid) -> str | None:
                d = store.get_decision(pid)
                return d.applied if d is not None and d.applied not in (None, "writing") else None

            wait_for(acted_on, 120, f"a runtime to act on proposal {pid}", serves[0], logs[0])
    finally:
        for p in (*serves, sim):
            stop(p, signal.SIGTERM)
    for pid in decided:
        decision = store.get_decision(pid)
        assert decision is not None
        rows = store.writes_for(decision_id=decision.id)
        tags = [w.tag for w in rows]
        assert len(tags) == len(set(tags)) and tags, f"proposal {pid}: {rows}"
        statuses = {w.status for w in rows}
        assert statuses <= {"done", "mismatch", "refused"} and len(statuses) == 1, statuses
        subject = f"proposal:{pid}"
        acted = [e for e in audit.entries(store, kind="write_") if e["subject"] == subject]
        assert len([e for e in acted if e["kind"] in ("write_intent", "write_refused")]) == 1
    # Losing a race for a decision is the store doing its job, not a runtime fault.
    errors = [a.message for a in store.alarm_history("cstr") if a.kind == "runtime_error"]
    assert not errors, errors
    for h in hosts:  # each host's anchor holds the heads it committed: both runtimes wrote
        assert h.audit_anchor.read_text().strip(), f"{h.root}: no transaction committed"
        result = audit.verify(store, files=AuditFiles.of_home(h))
        assert result.ok, str(result)
    store.close()
