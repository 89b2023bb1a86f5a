"""The audit log: append-only, each entry hash-chained to the one before it.

Entries live in the state store's `audit` table. SQLite triggers reject every UPDATE and
DELETE, so the program cannot rewrite history by mistake; the hash chain makes deliberate
tampering (someone who drops the triggers, or edits the file) visible: `verify()` recomputes
every hash and names the first entry that no longer matches.

hash_n = sha256( canonical_json(entry_n without its hash) + hash_{n-1} ), hash_0's predecessor
is 64 zeros. The entry includes its sequence number, so reordering breaks the chain too.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from twin.store import Store

GENESIS = "0" * 64
COLUMNS = ("seq", "at", "user", "kind", "plant", "subject", "what", "why", "prev_hash", "hash")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS audit (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        user TEXT NOT NULL,
        kind TEXT NOT NULL,
        plant TEXT,
        subject TEXT,
        what TEXT NOT NULL,
        why TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS audit_at ON audit(at)",
    """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: DELETE refused'); END""",
)


def create_schema(c: sqlite3.Connection) -> None:
    """Create the audit table and its append-only triggers (inside the caller's transaction)."""
    for statement in _SCHEMA:
        c.execute(statement)


def canonical(value: Any) -> str:
    """The one JSON text of a value that the hashes are computed over."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def entry_hash(entry: dict[str, Any], prev_hash: str) -> str:
    body = {k: entry[k] for k in ("seq", "at", "user", "kind", "plant", "subject", "what", "why")}
    return hashlib.sha256((canonical(body) + prev_hash).encode("utf-8")).hexdigest()


def append(
    c: sqlite3.Connection, *, user: str, kind: str, plant: str | None, subject: str | None,
    what: dict[str, Any], why: str,
) -> int:  # fmt: skip
    """Append one entry; call inside a BEGIN IMMEDIATE transaction so the chain stays linear."""
    last = c.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    seq = 1 if last is None else int(last[0]) + 1
    prev = GENESIS if last is None else str(last[1])
    from twin.store import _finite  # NaN has no canonical JSON; store it as null

    entry = {
        "seq": seq,
        "at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "user": user,
        "kind": kind,
        "plant": plant,
        "subject": subject,
        "what": json.loads(canonical(_finite(what))) if what else {},
        "why": why or "",
    }
    h = entry_hash(entry, prev)
    c.execute(
        "INSERT INTO audit (seq, at, user, kind, plant, subject, what, why, prev_hash, hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            seq,
            entry["at"],
            user,
            kind,
            plant,
            subject,
            canonical(entry["what"]),
            entry["why"],
            prev,
            h,
        ),
    )
    return seq


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    """True when every entry's hash and link match."""
    entries: int
    """Entries checked."""
    first_broken: int | None = None
    """Sequence number of the first entry that does not verify."""
    reason: str = ""
    """Why that entry fails."""

    def __str__(self) -> str:
        if self.ok:
            return f"audit chain OK: {self.entries} entries verified"
        return f"audit chain BROKEN at entry {self.first_broken}: {self.reason}"


def _row_entry(row: sqlite3.Row | tuple[Any, ...]) -> dict[str, Any]:
    d = dict(zip(COLUMNS, tuple(row), strict=True))
    d["what"] = json.loads(d["what"])
    return d


def verify(store: Store) -> VerifyResult:
    """Recompute the chain from the first entry; stop at the first one that does not match."""
    rows = store.query(f"SELECT {', '.join(COLUMNS)} FROM audit ORDER BY seq")
    prev = GENESIS
    expected_seq = 1
    for row in rows:
        try:
            entry = _row_entry(row)
        except (json.JSONDecodeError, ValueError) as exc:
            return VerifyResult(False, expected_seq, row[0], f"entry is not valid JSON: {exc}")
        seq = entry["seq"]
        if seq != expected_seq:
            return VerifyResult(
                False,
                expected_seq - 1,
                expected_seq,
                f"entry {expected_seq} is missing (next is {seq})",
            )
        if entry["prev_hash"] != prev:
            return VerifyResult(
                False,
                seq,
                seq,
                "its link to the previous entry does not match (an entry was removed or altered)",
            )
        if entry_hash(entry, prev) != entry["hash"]:
            return VerifyResult(False, seq, seq, "its content no longer matches its hash (altered)")
        prev = entry["hash"]
        expected_seq += 1
    return VerifyResult(True, len(rows))


def entries(
    store: Store, *, start: datetime | None = None, end: datetime | None = None,
    user: str | None = None, kind: str | None = None, plant: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Audit entries in order, filtered by wall-clock time, user, kind (prefix) and plant."""
    from twin.store import iso

    sql, params = f"SELECT {', '.join(COLUMNS)} FROM audit WHERE 1=1", cast(list[Any], [])
    if start is not None:
        sql += " AND at >= ?"
        params.append(iso(start))
    if end is not None:
        sql += " AND at <= ?"
        params.append(iso(end))
    if user is not None:
        sql += " AND user = ?"
        params.append(user)
    if kind is not None:
        sql += " AND kind LIKE ?"
        params.append(kind + "%")
    if plant is not None:
        sql += " AND plant = ?"
        params.append(plant)
    sql += " ORDER BY seq"
    if limit is not None:
        sql = f"SELECT * FROM ({sql.replace('ORDER BY seq', 'ORDER BY seq DESC')} LIMIT ?) ORDER BY seq"
        params.append(limit)
    return [_row_entry(r) for r in store.query(sql, tuple(params))]


def export_csv(store: Store, path: Path | str, **filters: Any) -> int:
    """Write the (filtered) audit log as CSV with the hashes, so a reader can re-verify it."""
    rows = entries(store, **filters)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for e in rows:
            w.writerow(
                [
                    canonical(e[c]) if c == "what" else ("" if e[c] is None else e[c])
                    for c in COLUMNS
                ]
            )
    return len(rows)
