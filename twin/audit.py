"""The audit log: append-only, hash-chained, keyed with an HMAC and anchored outside the database.

Entries live in the state store's `audit` table. SQLite triggers reject every UPDATE and
DELETE, so the program cannot rewrite history by mistake. Deliberate tampering (someone who
drops the triggers or edits the file) is made visible three ways, and `verify()` names the
first entry that fails:

- the chain: hash_n = sha256(canonical_json(entry_n without its hash) + hash_{n-1}), the first
  entry's predecessor is 64 zeros; the entry includes its sequence number, so reordering or
  removing an entry breaks it;
- the key: mac_n = HMAC-SHA256(key, key_id + ":" + hash_n) with a key outside the database
  (`twin.audit_keys`), so a forger who recomputes the hashes still cannot make the MACs;
- the anchor: every committed head is also appended to a file outside the database, so a
  truncated log or an older copy of the database (whose entries all still verify) is caught.

Entries written before the key existed (older databases) stay chained but unkeyed; `verify`
says where keyed entries start, and every entry after that must be keyed.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, cast

from twin.audit_keys import (
    AuditFiles,
    AuditKeyError,
    Keyring,
    anchor_on_commit,
    commit_watch,
    entry_mac,
    key_fingerprint,
)

GENESIS = "0" * 64
COLUMNS = (
    "seq", "at", "user", "kind", "plant", "subject", "what", "why", "prev_hash", "hash",
    "key_id", "mac",
)  # fmt: skip
ROTATION = "audit_key_rotated"
"""Kind of the entry that hands the log over to a new key (MAC-ed with the old one)."""

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
        hash TEXT NOT NULL,
        key_id TEXT,
        mac TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS audit_at ON audit(at)",
    """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: DELETE refused'); END""",
)


class AuditStore(Protocol):
    """What verify and the readers need of the state store."""

    path: Path

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]: ...


def create_schema(c: sqlite3.Connection) -> None:
    """Create the audit table and its append-only triggers (inside the caller's transaction)."""
    c.execute(_SCHEMA[0])
    # Databases made before the key: their table gains the columns, their entries stay unkeyed.
    have = {row[1] for row in c.execute("PRAGMA table_info(audit)").fetchall()}
    for column in ("key_id", "mac"):
        if column not in have:
            c.execute(f"ALTER TABLE audit ADD COLUMN {column} TEXT")
    for statement in _SCHEMA[1:]:
        c.execute(statement)


def canonical(value: Any) -> str:
    """The one JSON text of a value that the hashes are computed over."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def entry_hash(entry: dict[str, Any], prev_hash: str) -> str:
    body = {k: entry[k] for k in ("seq", "at", "user", "kind", "plant", "subject", "what", "why")}
    return hashlib.sha256((canonical(body) + prev_hash).encode("utf-8")).hexdigest()


def _signing_key(ring: Keyring, tail: sqlite3.Row | tuple[Any, ...] | None) -> str:
    """The key that covers the next entry: the tail's, or the one a rotation handed over to."""
    if tail is None or tail[2] is None:
        return ring.current_or_create()
    if tail[3] == ROTATION:
        return str(json.loads(tail[4])["to"])
    return str(tail[2])


def append(
    c: sqlite3.Connection,
    *,
    user: str,
    kind: str,
    plant: str | None,
    subject: str | None,
    what: dict[str, Any],
    why: str,
    files: AuditFiles | None = None,
) -> int:
    """Append one entry; call inside a BEGIN IMMEDIATE transaction so the chain stays linear.

    The key and anchor are those of the twin home holding the database (`files` overrides).
    Raises AuditKeyError when the key that covers the log is missing: an unkeyed entry after
    keyed ones would read as tampering, so nothing is recorded (and the caller's change with it).
    """
    files = files or AuditFiles.of_connection(c)
    watch = commit_watch(c) if files.anchor is not None else None
    seen = watch.statements if watch is not None else 0
    tail = c.execute(
        "SELECT seq, hash, key_id, kind, CASE WHEN kind = ? THEN what END "
        "FROM audit ORDER BY seq DESC LIMIT 1",
        (ROTATION,),
    ).fetchone()
    seq = 1 if tail is None else int(tail[0]) + 1
    prev = GENESIS if tail is None else str(tail[1])
    from twin.state.base import _finite  # NaN has no canonical JSON; store it as null

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
    key_id = mac = None
    if files.keys_dir is not None:
        ring = Keyring(files.keys_dir)
        key_id = _signing_key(ring, tail)
        mac = entry_mac(ring.get(key_id), key_id, h)
    c.execute(
        "INSERT INTO audit (seq, at, user, kind, plant, subject, what, why, prev_hash, hash, "
        "key_id, mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, entry["at"], user, kind, plant, subject, canonical(entry["what"]), entry["why"],
         prev, h, key_id, mac),
    )  # fmt: skip
    if watch is not None and files.anchor is not None:
        anchor_on_commit(c, watch, seen, files.anchor, seq, h)
    return seq


def rotate_key(c: sqlite3.Connection, *, user: str, why: str = "") -> str:
    """Start a new audit key; the hand-over is an entry MAC-ed with the old key. Returns its id.

    Call inside a write transaction. Old keys stay in the ring: they still verify old entries.
    """
    files = AuditFiles.of_connection(c)
    if files.keys_dir is None:
        raise AuditKeyError("an in-memory database has no audit keys to rotate")
    ring = Keyring(files.keys_dir)
    ring.current_or_create()  # the hand-over entry needs an old key to be MAC-ed with
    new = ring.create_next()
    append(c, user=user, kind=ROTATION, plant=None, subject=f"audit_key:{new}",
           what={"to": new, "fingerprint": key_fingerprint(ring.get(new))},
           why=why or "audit key rotated", files=files)  # fmt: skip
    return new


def ensure_key(files: AuditFiles) -> str | None:
    """Make the first audit key if the ring has none (`twin certs`); the newest key's id."""
    return Keyring(files.keys_dir).current_or_create() if files.keys_dir else None


def _row_entry(row: sqlite3.Row | tuple[Any, ...]) -> dict[str, Any]:
    d = dict(zip(COLUMNS, tuple(row), strict=True))
    d["what"] = json.loads(d["what"])
    return d


def _files_of(store: AuditStore) -> AuditFiles:
    return AuditFiles.of_database(store.path)


def verify(store: AuditStore, *, files: AuditFiles | None = None) -> VerifyResult:
    """Check every entry's chain link, hash, key and MAC, and the log against its anchor."""
    from twin.audit_verify import verify_log

    rows = store.query(f"SELECT {', '.join(COLUMNS)} FROM audit ORDER BY seq")
    return verify_log(rows, files or _files_of(store))


def verify_entry(
    store: AuditStore, seq: int, *, expect: dict[str, Any] | None = None,
    files: AuditFiles | None = None,
) -> VerifyResult:  # fmt: skip
    """Check one entry before acting on it: its hash, its link to the entry before, its MAC.

    `expect` holds fields the entry must have (kind, subject, user, plant, what, why), so the
    caller knows the entry is the one it is about to act on. The anchor is checked by `verify`.
    """
    from twin.audit_verify import verify_one

    rows = store.query(
        f"SELECT {', '.join(COLUMNS)} FROM audit WHERE seq IN (?, ?) ORDER BY seq", (seq - 1, seq)
    )
    return verify_one(rows, seq, expect or {}, files or _files_of(store))


@dataclass(frozen=True)
class KeySpan:
    """Entries first..last are covered by one key."""

    key_id: str
    first: int
    last: int


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    """True when every entry's hash, link, key and MAC match, and the anchor agrees."""
    entries: int
    """Entries checked."""
    first_broken: int | None = None
    """Sequence number of the first entry that does not verify."""
    reason: str = ""
    """Why that entry fails."""
    keyed_from: int | None = None
    """First keyed entry; the ones before it predate the audit key (chained, not keyed)."""
    keys: tuple[KeySpan, ...] = ()
    """Which key covers which entries."""
    anchored: int = 0
    """Highest entry the anchor file records."""

    def __str__(self) -> str:
        if not self.ok:
            where = f" at entry {self.first_broken}" if self.first_broken is not None else ""
            return f"audit chain BROKEN{where}: {self.reason}"
        text = f"audit chain OK: {self.entries} entries verified"
        if self.keyed_from is None:
            return text + ("; none is keyed (no audit key yet)" if self.entries else "")
        if self.keyed_from > 1:
            text += f"; entries 1-{self.keyed_from - 1} predate the audit key (chained, not keyed)"
        spans = ", ".join(f"{k.key_id}: {k.first}-{k.last}" for k in self.keys)
        return (
            text + f"; keyed from entry {self.keyed_from} ({spans}); anchored head {self.anchored}"
        )


def hmac_equal(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a, b)


def entries(
    store: AuditStore, *, start: datetime | None = None, end: datetime | None = None,
    user: str | None = None, kind: str | None = None, plant: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Audit entries in order, filtered by wall-clock time, user, kind (prefix) and plant."""
    from twin.state import iso

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


def export_csv(store: AuditStore, path: Path | str, **filters: Any) -> int:
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
