"""The audit log: append-only, hash-chained, keyed with an HMAC and anchored outside the database.

Entries live in the state store's `audit` table (its SQL in twin.state.audit_log). Triggers
reject every UPDATE and DELETE (SQLite or PostgreSQL), so the program cannot rewrite history by
mistake. Deliberate tampering (someone who drops the triggers or edits the database) is made
visible three ways, and `verify()` names the first entry that fails:

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
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from twin.audit_keys import AuditFiles, AuditKeyError, Keyring, key_fingerprint
from twin.state.audit_log import (
    COLUMNS,
    GENESIS,
    ROTATION,
    all_rows,
    append,
    canonical,
    create_schema,
    entry_hash,
    filtered_rows,
    rows_at,
)
from twin.state.db import Db

__all__ = [
    "COLUMNS",
    "GENESIS",
    "ROTATION",
    "AuditStore",
    "KeySpan",
    "VerifyResult",
    "append",
    "canonical",
    "create_schema",
    "ensure_key",
    "entries",
    "entry_hash",
    "export_csv",
    "rotate_key",
    "verify",
    "verify_entry",
]


class AuditStore(Protocol):
    """What verify and the readers need of the state store."""

    @property
    def audit_files(self) -> AuditFiles: ...

    def query(self, sql: str, params: Any = ()) -> list[Any]: ...


def rotate_key(c: Db, *, user: str, why: str = "") -> str:
    """Start a new audit key; the hand-over is an entry MAC-ed with the old key. Returns its id.

    Call inside the store's write transaction (`with store.write() as c`). Old keys stay in
    the ring: they still verify old entries.
    """
    files = c.files
    if files.keys_dir is None:
        raise AuditKeyError("an in-memory database has no audit keys to rotate")
    ring = Keyring(files.keys_dir)
    ring.current_or_create()  # the hand-over entry needs an old key to be MAC-ed with
    new = ring.create_next()
    append(
        c,
        user=user,
        kind=ROTATION,
        plant=None,
        subject=f"audit_key:{new}",
        what={"to": new, "fingerprint": key_fingerprint(ring.get(new))},
        why=why or "audit key rotated",
        files=files,
    )
    return new


def ensure_key(files: AuditFiles) -> str | None:
    """Make the first audit key if the ring has none (`twin certs`); the newest key's id."""
    return Keyring(files.keys_dir).current_or_create() if files.keys_dir else None


def _row_entry(row: Any) -> dict[str, Any]:
    d = dict(zip(COLUMNS, tuple(row), strict=True))
    d["what"] = json.loads(d["what"])
    return d


def verify(store: AuditStore, *, files: AuditFiles | None = None) -> VerifyResult:
    """Check every entry's chain link, hash, key and MAC, and the log against its anchor."""
    from twin.audit_verify import verify_log

    return verify_log(all_rows(store), files or store.audit_files)


def verify_entry(
    store: AuditStore,
    seq: int,
    *,
    expect: dict[str, Any] | None = None,
    files: AuditFiles | None = None,
) -> VerifyResult:
    """Check one entry before acting on it: its hash, its link to the entry before, its MAC.

    `expect` holds fields the entry must have (kind, subject, user, plant, what, why), so the
    caller knows the entry is the one it is about to act on. The anchor is checked by `verify`.
    """
    from twin.audit_verify import verify_one

    return verify_one(rows_at(store, seq), seq, expect or {}, files or store.audit_files)


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
    store: AuditStore,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    user: str | None = None,
    kind: str | None = None,
    plant: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Audit entries in order, filtered by wall-clock time, user, kind (prefix) and plant."""
    rows = filtered_rows(
        store, start=start, end=end, user=user, kind=kind, plant=plant, limit=limit
    )
    return [_row_entry(r) for r in rows]


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
