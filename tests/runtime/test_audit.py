import csv
import os
import secrets
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest

from tests.state import backends
from tests.state.backends import Raw, reopen
from twin import audit
from twin.audit_keys import entry_mac
from twin.cli import main
from twin.keyfiles import write_private
from twin.paths import Home
from twin.state import Store
from twin.state.db import StoreIntegrityError

# The store fixtures of both backends (SQLite, PostgreSQL): every test here runs on each.
backend = backends.backend
store = backends.store


def _fill(store: Store, n: int) -> None:
    for i in range(n):
        store.log_event(
            user=f"u{i % 3}",
            kind="test",
            plant="cstr",
            subject=f"s:{i}",
            what={"i": i, "x": i / 3},
            why=f"because {i}",
        )


def test_chain_verifies_and_is_append_only(store: Store) -> None:
    _fill(store, 20)
    result = audit.verify(store)
    assert result.ok and result.entries == 20
    with pytest.raises(StoreIntegrityError, match="append-only"):
        store.query("UPDATE audit SET why = 'rewritten' WHERE seq = 3")
    with pytest.raises(StoreIntegrityError, match="append-only"):
        store.query("DELETE FROM audit WHERE seq = 20")
    assert audit.verify(store).ok


def _raw_without_triggers(store: Store) -> Raw:
    return Raw(store).drop_audit_triggers()


def test_tampered_content_names_first_broken_entry(store: Store) -> None:
    _fill(store, 12)
    raw = _raw_without_triggers(store)
    raw.execute("UPDATE audit SET why = 'nothing happened' WHERE seq = 7")
    raw.execute("UPDATE audit SET user = 'someone else' WHERE seq = 9")
    raw.close()
    result = audit.verify(store)
    assert not result.ok
    assert result.first_broken == 7
    assert "entry 7" in str(result)


def test_deleted_entry_is_detected(store: Store) -> None:
    _fill(store, 10)
    raw = _raw_without_triggers(store)
    raw.execute("DELETE FROM audit WHERE seq = 4")
    raw.close()
    result = audit.verify(store)
    assert not result.ok and result.first_broken == 4
    assert "missing" in result.reason


def test_rehashed_entry_fails_its_mac(store: Store) -> None:
    # A forger who recomputes the altered entry's own hash cannot recompute its MAC.
    _fill(store, 6)
    raw = _raw_without_triggers(store)
    row = raw.execute(f"SELECT {', '.join(audit.COLUMNS)} FROM audit WHERE seq = 3").fetchone()
    entry = audit._row_entry(row)
    entry["why"] = "forged"
    new_hash = audit.entry_hash(entry, entry["prev_hash"])
    raw.execute("UPDATE audit SET why = 'forged', hash = ? WHERE seq = 3", (new_hash,))
    raw.close()
    result = audit.verify(store)
    assert result.first_broken == 3 and "MAC" in result.reason


def test_export_csv_round_trips_and_filters(store: Store, tmp_path) -> None:
    _fill(store, 9)
    out = tmp_path / "audit.csv"
    assert audit.export_csv(store, out) == 9
    rows = list(csv.DictReader(out.open()))
    assert [int(r["seq"]) for r in rows] == list(range(1, 10))
    # The exported rows carry the hashes: the chain can be re-verified from the file alone.
    prev = audit.GENESIS
    for r in rows:
        entry = {
            **r,
            "seq": int(r["seq"]),
            "what": __import__("json").loads(r["what"]),
            "plant": r["plant"] or None,
        }
        assert r["prev_hash"] == prev
        assert audit.entry_hash(entry, prev) == r["hash"]
        prev = r["hash"]
    assert audit.export_csv(store, tmp_path / "u0.csv", user="u0") == 3
    assert len(audit.entries(store, limit=2)) == 2


def test_reopening_restores_dropped_triggers(store: Store) -> None:
    _fill(store, 3)
    _raw_without_triggers(store).close()
    again = reopen(store)
    with pytest.raises(StoreIntegrityError, match="append-only"):
        again.query("DELETE FROM audit WHERE seq = 1")
    again.close()


# ---- the key and the anchor: each attack is named at its first bad entry --------------


def _home(store: Store) -> Home:
    return store.home


def _resign_without_key(raw: Raw, from_seq: int, why: str) -> None:
    """An attacker without the key: edits an entry and recomputes every hash after it."""
    rows = raw.execute(f"SELECT {', '.join(audit.COLUMNS)} FROM audit ORDER BY seq").fetchall()
    prev = audit.GENESIS
    for row in rows:
        entry = audit._row_entry(row)
        if entry["seq"] == from_seq:
            entry["why"] = why
        h = audit.entry_hash(entry, prev)
        raw.execute(
            "UPDATE audit SET why = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (entry["why"], prev, h, entry["seq"]),
        )
        prev = h


def test_entries_are_keyed_and_anchored(store: Store) -> None:
    _fill(store, 5)
    home = _home(store)
    key = home.keys_dir / "audit-k1.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    lines = home.audit_anchor.read_text().splitlines()
    rows = store.query("SELECT seq, hash, key_id, mac FROM audit ORDER BY seq")
    assert lines == [f"{r['seq']} {r['hash']}" for r in rows]
    assert all(r["key_id"] == "k1" and len(r["mac"]) == 64 for r in rows)
    result = audit.verify(store)
    assert result.ok and result.keyed_from == 1 and result.anchored == 5
    assert result.keys == (audit.KeySpan("k1", 1, 5),)
    assert "keyed from entry 1 (k1: 1-5); anchored head 5" in str(result)


def test_rolled_back_entry_is_never_anchored(store: Store) -> None:
    _fill(store, 3)
    with pytest.raises(RuntimeError), store.write() as c:
        store.audit(c, user="u", kind="test", what={"i": 99})
        raise RuntimeError("the change fails after its audit entry")
    assert len(_home(store).audit_anchor.read_text().splitlines()) == 3
    _fill(store, 2)
    result = audit.verify(store)
    assert result.ok and result.anchored == 5, str(result)


def test_rehashing_without_the_key_is_detected(store: Store) -> None:
    _fill(store, 10)
    raw = _raw_without_triggers(store)
    _resign_without_key(raw, 6, "nothing to see")
    raw.close()
    result = audit.verify(store)
    assert not result.ok and result.first_broken == 6 and "MAC" in result.reason


def test_a_key_of_the_attackers_own_is_detected(store: Store) -> None:
    _fill(store, 6)
    raw = _raw_without_triggers(store)
    _resign_without_key(raw, 4, "forged")
    for row in raw.execute("SELECT seq, hash FROM audit WHERE seq >= 4").fetchall():
        mac = entry_mac(b"m" * 32, "k9", row[1])
        raw.execute("UPDATE audit SET key_id = 'k9', mac = ? WHERE seq = ?", (mac, row[0]))
    raw.close()
    result = audit.verify(store)
    assert result.first_broken == 4 and "names key k9, but key k1 covers it" in result.reason


def test_stripped_macs_are_detected(store: Store) -> None:
    _fill(store, 4)
    raw = _raw_without_triggers(store)
    raw.execute("UPDATE audit SET key_id = NULL, mac = NULL")
    raw.close()
    result = audit.verify(store)
    assert result.first_broken == 1 and "carries no MAC" in result.reason


def test_deleted_tail_is_detected(store: Store) -> None:
    _fill(store, 10)
    raw = _raw_without_triggers(store)
    raw.execute("DELETE FROM audit WHERE seq > 7")
    raw.close()
    result = audit.verify(store)
    assert not result.ok and result.first_broken == 8
    assert "entries 8-10 are missing" in result.reason and "audit.anchor" in result.reason


def test_truncated_log_is_detected(store: Store) -> None:
    _fill(store, 5)
    raw = _raw_without_triggers(store)
    raw.execute("DELETE FROM audit")
    raw.close()
    result = audit.verify(store)
    assert result.first_broken == 1 and "entries 1-5 are missing" in result.reason


def test_reordered_entries_are_detected(store: Store) -> None:
    _fill(store, 8)
    raw = _raw_without_triggers(store)
    raw.execute("UPDATE audit SET seq = -1 WHERE seq = 4")
    raw.execute("UPDATE audit SET seq = 4 WHERE seq = 5")
    raw.execute("UPDATE audit SET seq = 5 WHERE seq = -1")
    raw.close()
    result = audit.verify(store)
    assert result.first_broken == 4 and "entry 4" in str(result)


def test_older_copy_of_the_database_is_detected(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = Store(db)
    _fill(store, 6)
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as copy:
        store.db.conn.backup(copy)  # a consistent copy, as a backup tool would take
    _fill(store, 4)
    store.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copy(old, db)
    store = Store(db)
    result = audit.verify(store)
    assert result.first_broken == 7 and "entries 7-10 are missing" in result.reason
    # New entries on top of the old copy reuse numbers 7-10: still not the anchored ones.
    _fill(store, 5)
    result = audit.verify(store)
    assert result.first_broken == 7 and "not the entry anchored at line 7" in result.reason
    store.close()


def test_deleted_anchor_and_missing_key_are_named(store: Store) -> None:
    _fill(store, 3)
    home = _home(store)
    home.audit_anchor.unlink()
    assert "anchor file" in audit.verify(store).reason and "missing" in str(audit.verify(store))
    (home.keys_dir / "audit-k1.key").unlink()
    home.audit_anchor.write_text("")
    result = audit.verify(store)
    assert result.first_broken == 1 and "audit key k1 is missing" in result.reason


def test_rotation_is_an_entry_and_verify_knows_each_key(store: Store) -> None:
    _fill(store, 3)
    with store.write() as c:
        new = audit.rotate_key(c, user="admin", why="yearly rotation")
    _fill(store, 3)
    assert new == "k2"
    (rotation,) = audit.entries(store, kind=audit.ROTATION)
    assert rotation["seq"] == 4 and rotation["key_id"] == "k1" and rotation["what"]["to"] == "k2"
    result = audit.verify(store)
    assert result.ok and result.keys == (audit.KeySpan("k1", 1, 4), audit.KeySpan("k2", 5, 7))
    key2 = _home(store).keys_dir / "audit-k2.key"
    key2.unlink()
    write_private(key2, (secrets.token_hex(32) + "\n").encode())
    result = audit.verify(store)
    assert result.first_broken == 4 and "not the key this rotation handed over to" in result.reason


def test_old_unkeyed_database_opens_and_says_where_keys_start(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    Store(db).close()
    raw = sqlite3.connect(db, isolation_level=None)
    raw.execute("DROP TABLE audit")  # the table as databases made before the key have it
    raw.execute(
        "CREATE TABLE audit (seq INTEGER PRIMARY KEY, at TEXT NOT NULL, user TEXT NOT NULL, "
        "kind TEXT NOT NULL, plant TEXT, subject TEXT, what TEXT NOT NULL, why TEXT NOT NULL, "
        "prev_hash TEXT NOT NULL, hash TEXT NOT NULL)"
    )
    prev = audit.GENESIS
    for seq in (1, 2, 3):
        e = {
            "seq": seq,
            "at": f"2024-01-0{seq}T00:00:00+00:00",
            "user": "old",
            "kind": "test",
            "plant": None,
            "subject": None,
            "what": {"n": seq},
            "why": "",
        }
        h = audit.entry_hash(e, prev)
        raw.execute(
            "INSERT INTO audit VALUES (?, ?, 'old', 'test', NULL, NULL, ?, '', ?, ?)",
            (seq, e["at"], audit.canonical(e["what"]), prev, h),
        )
        prev = h
    raw.close()
    store = Store(db)
    _fill(store, 2)
    result = audit.verify(store)
    assert result.ok and result.keyed_from == 4
    assert "entries 1-3 predate the audit key (chained, not keyed); keyed from entry 4" in str(
        result
    )
    raw = _raw_without_triggers(store)
    raw.execute("UPDATE audit SET key_id = NULL, mac = NULL WHERE seq = 5")
    raw.close()
    result = audit.verify(store)
    assert result.first_broken == 5 and "keyed entries start at 4" in result.reason
    store.close()


def test_one_entry_is_checked_before_it_is_acted_on(store: Store) -> None:
    _fill(store, 4)
    seq = store.log_event(user="alice", kind="approve", subject="proposal:7", what={"Tc": 301.0})
    assert audit.verify_entry(store, seq, expect={"kind": "approve", "subject": "proposal:7"}).ok
    wrong = audit.verify_entry(store, seq, expect={"subject": "proposal:8"})
    assert not wrong.ok and "its subject is 'proposal:7'" in wrong.reason
    assert "does not exist" in audit.verify_entry(store, 99).reason
    raw = _raw_without_triggers(store)
    raw.execute("UPDATE audit SET what = '{\"Tc\":350.0}' WHERE seq = ?", (seq,))
    raw.close()
    tampered = audit.verify_entry(store, seq)
    assert not tampered.ok and tampered.first_broken == seq and "altered" in tampered.reason


def test_private_files_are_born_0600(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        assert write_private(tmp_path / "k.key", b"first")
        assert not write_private(tmp_path / "k.key", b"second")  # the first one stands
    finally:
        os.umask(old)
    path = tmp_path / "k.key"
    assert path.read_bytes() == b"first" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["k.key"]  # no temporary left behind


def test_cli_verify_names_the_first_bad_entry_and_rotates(
    store: Store, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = str(store.home.root)
    # --state-url sets TWIN_STATE_URL for the command; monkeypatch puts back what was there
    # before (set first, so that it records the variable even when it was absent).
    monkeypatch.setenv("TWIN_STATE_URL", "")
    monkeypatch.delenv("TWIN_STATE_URL")
    url = ["--state-url", str(store.target)] if store.backend == "postgresql" else []
    _fill(store, 4)
    assert main([*url, "audit", "rotate-key", "--home", home]) == 0
    _fill(store, 1)
    assert main(["audit", "verify", "--home", home]) == 0
    out = capsys.readouterr().out
    assert "rotated" in out and "k1: 1-5, k2: 6-6" in out.replace("\n", " ")
    raw = _raw_without_triggers(store)
    raw.execute("DELETE FROM audit WHERE seq = 6")
    raw.close()
    assert main(["audit", "verify", "--home", home]) == 1
    assert "BROKEN at entry 6" in capsys.readouterr().err.replace("\n", " ")
