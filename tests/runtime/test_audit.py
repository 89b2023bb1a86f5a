import csv
import sqlite3

import pytest

from twin import audit
from twin.store import Store


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
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.query("UPDATE audit SET why = 'rewritten' WHERE seq = 3")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.query("DELETE FROM audit WHERE seq = 20")
    assert audit.verify(store).ok


def _raw_without_triggers(store: Store) -> sqlite3.Connection:
    raw = sqlite3.connect(store.path, isolation_level=None)
    raw.execute("DROP TRIGGER audit_no_update")
    raw.execute("DROP TRIGGER audit_no_delete")
    return raw


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


def test_rehashed_entry_breaks_the_next_link(store: Store) -> None:
    # A forger who recomputes the altered entry's own hash still breaks the link of the next one.
    _fill(store, 6)
    raw = _raw_without_triggers(store)
    row = raw.execute(f"SELECT {', '.join(audit.COLUMNS)} FROM audit WHERE seq = 3").fetchone()
    entry = audit._row_entry(row)
    entry["why"] = "forged"
    new_hash = audit.entry_hash(entry, entry["prev_hash"])
    raw.execute("UPDATE audit SET why = 'forged', hash = ? WHERE seq = 3", (new_hash,))
    raw.close()
    result = audit.verify(store)
    assert result.first_broken == 4 and "link" in result.reason


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
    again = Store(store.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        again.query("DELETE FROM audit WHERE seq = 1")
    again.close()
