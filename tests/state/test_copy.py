"""`twin state copy`: a twin home's SQLite store, with proposals, decisions, writes, users,
sessions, alarms, the shift log, step tests, shadow rows and a key rotation in its audit log,
copied into an empty PostgreSQL schema on a real server. Every table's rows arrive with their
ids, PostgreSQL's next ids follow the copied ones, the audit log verifies on the copy (and the
chain goes on there), and a target that holds anything is refused with nothing written."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.state.backends import Raw, fresh_schema_url, postgres_url
from twin import api, audit
from twin.auth import AuthError
from twin.cli import main
from twin.paths import Home
from twin.serve.alarms import Alarms
from twin.state import Store
from twin.state.copy import tables
from twin.users import create_user

PASSWORD = "correct horse battery"


def fill(store: Store) -> None:
    """A little of everything a site's store holds."""
    create_user(store, "olga", "operator", PASSWORD, actor="test")
    create_user(store, "erin", "engineer", PASSWORD, actor="test")
    op = api.log_in(store, "olga", PASSWORD)
    with pytest.raises(AuthError):
        api.log_in(store, "olga", "not her password")
    now = datetime.now(UTC)
    for k in range(3):  # each supersedes the one before
        pid = store.add_proposal(
            plant="cstr",
            mv_values={"Tc": 300.0 + k},
            payload={"summary": f"p{k}", "x": [1.5]},
            data_ts=now,
            expires_at=now + timedelta(minutes=5),
            model_version="v001",
            mode="supervised",
        )
    api.approve(store, pid, op, "copy me")
    decision = store.get_decision(pid)
    assert decision is not None
    ids = store.record_intent(
        plant="cstr",
        actor="runtime",
        values={"Tc": 302.0},
        prior={"Tc": 301.0},
        decision_id=decision.id,
        proposal_id=pid,
    )
    store.complete_write(ids["Tc"], "done", written=302.0, read_back=302.0)
    store.finish_decision(decision.id, pid, "written", actor="runtime")
    store.add_incident("cstr", now - timedelta(hours=1), now, "trip", "feed pump", user="erin")
    store.add_operator_limits(
        "cstr", "Tc", 295.0, 305.0, user="erin", reason="summer", before=(290.0, 310.0)
    )
    store.add_steptest(
        "cstr", {"moves": [{"at_s": 0, "values": {"Tc": 301.0}}]}, user="erin", note="", what={}
    )
    store.put_status("cstr", mode="supervised", pid=4242, connected=True, steps_done=7)
    Alarms(store, "cstr").raise_("write_failed", "Tc", "Tc: no answer")
    store.add_shift_entry(
        "cstr", author="olga", notes="quiet", approved=[], pending=[], standing=[]
    )
    store.add_shadow(
        plant="cstr",
        version="v002",
        active_version="v001",
        active_proposal_id=pid,
        data_ts=now,
        mv_values={"Tc": 301.5},
        payload={"cost": 1.0},
    )
    with store.write() as c:
        audit.rotate_key(c, user="test", why="yearly")
    store.log_event(user="test", kind="note", plant="cstr", what={"after": "rotation"})


def dump(store: Store) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, by column name, in key order."""
    out = {}
    for t in tables():
        rows = store.query(f"SELECT * FROM {t.name} ORDER BY {t.key}")
        out[t.name] = [{k: r[k] for k in r.keys()} for r in rows]
    return out


def copy(*args: str) -> int:
    return main(["state", "copy", *args])


def said(capsys: pytest.CaptureFixture[str]) -> str:
    """What the command printed on stderr, unwrapped (rich wraps at the terminal's width)."""
    return " ".join(capsys.readouterr().err.split())


def test_a_sqlite_store_copied_into_postgres_keeps_every_record_and_its_audit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = Home.at(tmp_path / "site")
    with Store.open(home, url=str(home.state_db)) as source:
        fill(source)
        before = dump(source)
        proposals = source.list_proposals("cstr")
        entries = audit.entries(source)
    assert all(before[t.name] for t in tables()), [t for t, rows in before.items() if not rows]
    url = fresh_schema_url(postgres_url())
    monkeypatch.delenv("TWIN_STATE_URL", raising=False)
    monkeypatch.setattr("twin.state.copy.BATCH_ROWS", 2)  # every table in several pages
    assert copy("--to", url, "--home", str(home.root)) == 0
    out = capsys.readouterr().out
    assert "audit chain OK" in out and "note:" not in out  # the home's own key and anchor

    with Store(url, home=home) as target:
        assert target.backend == "postgresql"
        assert dump(target) == before
        assert target.list_proposals("cstr") == proposals
        assert audit.entries(target) == entries
        assert target.get_user("olga") is not None
        result = audit.verify(target)
        assert result.ok and result.entries == len(entries) and len(result.keys) == 2, str(result)
        # The next ids follow the copied ones, and the chain goes on from the copied head.
        now = datetime.now(UTC)
        pid = target.add_proposal(
            plant="cstr",
            mv_values={"Tc": 299.0},
            payload={},
            data_ts=now,
            expires_at=now + timedelta(minutes=5),
            model_version="v001",
            mode="supervised",
        )
        assert pid == max(p.id for p in proposals) + 1
        alarm = Alarms(target, "cstr").raise_("sensor_fault", "Ca", "Ca: stale")
        assert alarm["id"] == max(a["id"] for a in before["alarms"]) + 1
        after = audit.verify(target)
        assert after.ok and after.entries > len(entries), str(after)
        assert audit.entries(target)[: len(entries)] == entries
    monkeypatch.setenv("TWIN_STATE_URL", url)
    assert main(["audit", "verify", "--home", str(home.root)]) == 0

    # Copying again, into a store that now holds records, is refused and changes nothing.
    with Store(url, home=home) as target:
        held = dump(target)
    assert copy("--to", url, "--home", str(home.root)) == 2
    assert "is not empty" in said(capsys)
    with Store(url, home=home) as target:
        assert dump(target) == held


def test_a_source_whose_audit_does_not_verify_is_not_copied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = Home.at(tmp_path / "site")
    with Store(home.state_db, home=home) as source:
        create_user(source, "olga", "operator", PASSWORD, actor="test")
        source.log_event(user="test", kind="note", what={"n": 1})
        raw = Raw(source).drop_audit_triggers()
        raw.execute("UPDATE audit SET why = 'edited' WHERE seq = 1")
        raw.close()
    url = fresh_schema_url(postgres_url())
    assert copy("--to", url, "--home", str(home.root)) == 1
    assert "does not verify" in said(capsys)
    with Store(url, home=home) as target:
        assert not any(dump(target).values())
    assert copy("--from", str(tmp_path / "nowhere.db"), "--to", url) == 2
    assert "no such state store file" in said(capsys)


def test_a_copy_into_a_new_sqlite_file_names_the_key_and_anchor_to_bring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = Home.at(tmp_path / "site")
    with Store(home.state_db, home=home) as source:
        fill(source)
        before = dump(source)
    monkeypatch.delenv("TWIN_STATE_URL", raising=False)
    backup = tmp_path / "backup" / "state.db"
    assert copy("--to", str(backup), "--home", str(home.root)) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "audit chain OK" in out
    assert (
        f"the new store uses {backup.parent / 'keys'} and {backup.parent / 'audit.anchor'}" in out
    )
    shutil.copytree(home.keys_dir, backup.parent / "keys")  # as the note says
    shutil.copy2(home.audit_anchor, backup.parent / "audit.anchor")
    with Store(backup) as copied:
        assert dump(copied) == before
        assert audit.verify(copied).ok
