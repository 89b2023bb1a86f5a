"""The audit table: its schema, the append that chains, keys and anchors an entry, its reads.

The rules of the log (the chain, the key, the anchor) are described in `twin.audit`, which
also verifies it; this module is where its SQL lives, the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from twin.audit_keys import AuditFiles, Keyring, anchor_line, entry_mac
from twin.state.base import _finite, iso

GENESIS = "0" * 64
COLUMNS = (
    "seq",
    "at",
    "user",
    "kind",
    "plant",
    "subject",
    "what",
    "why",
    "prev_hash",
    "hash",
    "key_id",
    "mac",
)
ROTATION = "audit_key_rotated"
"""Kind of the entry that hands the log over to a new key (MAC-ed with the old one)."""

_TABLE = """CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    user TEXT NOT NULL,
    kind TEXT NOT NULL,
    plant TEXT,
    subject TEXT,
    what TEXT NOT NULL,
    why TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    key_id TEXT,
    mac TEXT
)"""
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM audit"


class AuditDb(Protocol):
    """The part of `twin.state.db.Db` an append needs (inside its write transaction)."""

    files: AuditFiles

    def execute(self, sql: str, params: Any = ()) -> Any: ...

    def after_commit(self, fn: Callable[[], None], key: object = None) -> None: ...


class Queryable(Protocol):
    def query(self, sql: str, params: Any = ()) -> list[Any]: ...


class SchemaDb(Protocol):
    def ddl(self, statement: str) -> None: ...

    def columns(self, table: str) -> set[str]: ...

    def append_only(self, table: str) -> None: ...


def create_schema(db: SchemaDb) -> None:
    """The audit table and its append-only triggers (put back at every open if dropped)."""
    db.ddl(_TABLE)
    # Databases made before the key: their table gains the columns, their entries stay unkeyed.
    have = db.columns("audit")
    for column in ("key_id", "mac"):
        if column not in have:
            db.ddl(f"ALTER TABLE audit ADD COLUMN {column} TEXT")
    db.ddl("CREATE INDEX IF NOT EXISTS audit_at ON audit(at)")
    db.append_only("audit")


def canonical(value: Any) -> str:
    """The one JSON text of a value that the hashes are computed over."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def entry_hash(entry: dict[str, Any], prev_hash: str) -> str:
    body = {k: entry[k] for k in ("seq", "at", "user", "kind", "plant", "subject", "what", "why")}
    return hashlib.sha256((canonical(body) + prev_hash).encode("utf-8")).hexdigest()


def _signing_key(ring: Keyring, tail: Any) -> str:
    """The key that covers the next entry: the tail's, or the one a rotation handed over to."""
    if tail is None or tail[2] is None:
        return ring.current_or_create()
    if tail[3] == ROTATION:
        return str(json.loads(tail[4])["to"])
    return str(tail[2])


def append(
    db: AuditDb,
    *,
    user: str,
    kind: str,
    plant: str | None,
    subject: str | None,
    what: dict[str, Any],
    why: str,
    files: AuditFiles | None = None,
) -> int:
    """Append one entry inside the caller's write transaction (which holds the writer lock,
    so the chain stays linear); its head goes to the anchor once the transaction commits.

    The key and anchor are the store's (`files` overrides). Raises AuditKeyError when the key
    that covers the log is missing: an unkeyed entry after keyed ones would read as tampering,
    so nothing is recorded (and the caller's change with it).
    """
    files = files or db.files
    tail = db.execute(
        "SELECT seq, hash, key_id, kind, CASE WHEN kind = ? THEN what END "
        "FROM audit ORDER BY seq DESC LIMIT 1",
        (ROTATION,),
    ).fetchone()
    seq = 1 if tail is None else int(tail[0]) + 1
    prev = GENESIS if tail is None else str(tail[1])
    entry = {
        "seq": seq,
        "at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "user": user,
        "kind": kind,
        "plant": plant,
        "subject": subject,
        # NaN has no canonical JSON: it is stored as null.
        "what": json.loads(canonical(_finite(what))) if what else {},
        "why": why or "",
    }
    h = entry_hash(entry, prev)
    key_id = mac = None
    ring = files.ring
    if ring is not None:
        key_id = _signing_key(ring, tail)
        mac = entry_mac(ring.get(key_id), key_id, h)
    db.execute(
        "INSERT INTO audit (seq, at, user, kind, plant, subject, what, why, prev_hash, hash, "
        "key_id, mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            key_id,
            mac,
        ),
    )
    if files.anchor is not None:
        anchor_line(db, files.anchor, seq, h)
    return seq


def all_rows(store: Queryable) -> list[Any]:
    return store.query(f"{_SELECT} ORDER BY seq")


def rows_at(store: Queryable, seq: int) -> list[Any]:
    """Entry `seq` and the one before it."""
    return store.query(f"{_SELECT} WHERE seq IN (?, ?) ORDER BY seq", (seq - 1, seq))


def filtered_rows(
    store: Queryable,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    user: str | None = None,
    kind: str | None = None,
    plant: str | None = None,
    limit: int | None = None,
) -> list[Any]:
    """Entries in order, filtered by wall-clock time, user, kind (prefix) and plant."""
    sql, params = f"{_SELECT} WHERE 1=1", cast(list[Any], [])
    for clause, value in (
        (" AND at >= ?", iso(start)),
        (" AND at <= ?", iso(end)),
        (" AND user = ?", user),
        (" AND kind LIKE ?", None if kind is None else kind + "%"),
        (" AND plant = ?", plant),
    ):
        if value is not None:
            sql += clause
            params.append(value)
    if limit is None:
        return store.query(sql + " ORDER BY seq", tuple(params))
    newest = f"SELECT * FROM ({sql} ORDER BY seq DESC LIMIT ?) AS newest ORDER BY seq"
    return store.query(newest, (*params, limit))
