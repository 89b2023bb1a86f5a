"""Verifying the audit log: the chain, the keys and MACs, and the anchor, first failure named.

Kept apart from `twin.audit` (which writes and reads entries) so each stays one screenful of
rules. The checks of one entry are written once (`_check_entry`) and used by both the whole-log
walk and the single-entry check the runtime makes before it acts on a decision.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twin.audit import GENESIS, ROTATION, KeySpan, VerifyResult, _row_entry, entry_hash, hmac_equal
from twin.audit_keys import (
    AuditFiles,
    AuditKeyError,
    Keyring,
    entry_mac,
    key_fingerprint,
    read_anchor,
)


class _Broken(Exception):
    def __init__(self, seq: int | None, reason: str) -> None:
        self.seq = seq
        self.reason = reason


@dataclass
class _Walk:
    """What the walk knows so far: the key that must cover the next keyed entry, the spans."""

    ring: Keyring | None
    expected_key: str | None = None
    keyed_from: int | None = None
    spans: list[KeySpan] = field(default_factory=list)

    def covered(self, key_id: str, seq: int) -> None:
        if self.spans and self.spans[-1].key_id == key_id:
            self.spans[-1] = KeySpan(key_id, self.spans[-1].first, seq)
        else:
            self.spans.append(KeySpan(key_id, seq, seq))


def _key(ring: Keyring | None, key_id: str, seq: int) -> bytes:
    if ring is None:
        raise _Broken(seq, f"it is keyed ({key_id}) but this database has no key folder")
    try:
        return ring.get(key_id)
    except AuditKeyError as exc:
        raise _Broken(seq, f"{exc}; restore it to verify entries from {seq}") from None


def _check_mac(entry: dict[str, Any], ring: Keyring | None) -> None:
    seq, key_id = entry["seq"], entry["key_id"]
    key = _key(ring, key_id, seq)
    if not hmac_equal(entry["mac"], entry_mac(key, key_id, entry["hash"])):
        raise _Broken(
            seq, f"its MAC does not match key {key_id} (altered or forged without the audit key)"
        )


def _check_entry(entry: dict[str, Any], prev: str) -> None:
    seq = entry["seq"]
    if entry["prev_hash"] != prev:
        raise _Broken(
            seq, "its link to the previous entry does not match (an entry was removed or altered)"
        )
    if entry_hash(entry, prev) != entry["hash"]:
        raise _Broken(seq, "its content no longer matches its hash (altered)")


def _check_key(entry: dict[str, Any], walk: _Walk) -> None:
    seq, key_id = entry["seq"], entry["key_id"]
    if key_id is None:
        if walk.keyed_from is not None:
            raise _Broken(
                seq, f"it carries no MAC, but keyed entries start at {walk.keyed_from} (removed)"
            )
        return
    if walk.expected_key is None:
        walk.keyed_from = seq
    elif key_id != walk.expected_key:
        raise _Broken(
            seq,
            f"it names key {key_id}, but key {walk.expected_key} covers it (no rotation hands over)",
        )
    _check_mac(entry, walk.ring)
    walk.covered(key_id, seq)
    walk.expected_key = key_id
    if entry["kind"] == ROTATION:
        to = str(entry["what"].get("to"))
        new = _key(walk.ring, to, seq)
        if key_fingerprint(new) != entry["what"].get("fingerprint"):
            raise _Broken(seq, f"key {to} is not the key this rotation handed over to (replaced)")
        walk.expected_key = to


def _anchor_heads(path: Path | None, keyed: bool) -> dict[int, list[tuple[int, str]]]:
    """seq -> [(line, hash)] of every anchored head; a missing file is an error once keyed.

    Only committed entries are anchored, so every line must match: a number anchored twice
    means the log was rolled back to an older copy and written again.
    """
    if path is None:
        return {}
    if not path.is_file():
        if keyed:
            raise _Broken(None, f"the anchor file {path} is missing (deleted?)")
        return {}
    heads: dict[int, list[tuple[int, str]]] = {}
    try:
        for line, seq, h in read_anchor(path):
            heads.setdefault(seq, []).append((line, h))
    except (ValueError, OSError) as exc:
        raise _Broken(None, f"the anchor cannot be read: {exc}") from None
    return heads


def verify_log(rows: list[Any], files: AuditFiles) -> VerifyResult:
    """Walk every entry in order; the first failure (or a short log) is named."""
    walk = _Walk(Keyring(files.keys_dir, cached=False) if files.keys_dir else None)
    try:
        keyed = any(r[10] is not None for r in rows)
        heads = _anchor_heads(files.anchor, keyed)
        prev, expected_seq = GENESIS, 1
        for row in rows:
            try:
                entry = _row_entry(row)
            except (json.JSONDecodeError, ValueError) as exc:
                raise _Broken(row[0], f"entry is not valid JSON: {exc}") from None
            seq = entry["seq"]
            if seq != expected_seq:
                raise _Broken(expected_seq, f"entry {expected_seq} is missing (next is {seq})")
            _check_entry(entry, prev)
            _check_key(entry, walk)
            anchored = heads.get(seq, [])
            if anchored and entry["key_id"] is None:
                raise _Broken(seq, "it was keyed when written (anchored) but carries no MAC")
            for line, h in anchored:
                if h != entry["hash"]:
                    raise _Broken(
                        seq,
                        f"it is not the entry anchored at line {line} of {files.anchor} "
                        "(the database was replaced by another copy)",
                    )
            prev, expected_seq = entry["hash"], expected_seq + 1
        top = max(heads, default=0)
        if top > len(rows):
            raise _Broken(
                len(rows) + 1,
                f"entries {len(rows) + 1}-{top} are missing: the anchor {files.anchor} records "
                f"{top} (the log was truncated or the database replaced by an older copy)",
            )
    except _Broken as b:
        done = (b.seq - 1) if b.seq is not None else len(rows)
        return VerifyResult(
            False, max(done, 0), b.seq, b.reason, walk.keyed_from, tuple(walk.spans)
        )
    return VerifyResult(True, len(rows), None, "", walk.keyed_from, tuple(walk.spans), top)


def verify_one(
    rows: list[Any], seq: int, expect: dict[str, Any], files: AuditFiles
) -> VerifyResult:
    """Check entry `seq` (rows: it and the entry before it) and that it holds `expect`."""
    by_seq = {r[0]: r for r in rows}
    try:
        if seq not in by_seq:
            raise _Broken(seq, f"entry {seq} does not exist")
        entry = _row_entry(by_seq[seq])
        before = by_seq.get(seq - 1)
        if seq > 1 and before is None:
            raise _Broken(seq, f"entry {seq - 1} before it is missing")
        _check_entry(entry, GENESIS if before is None else str(before[9]))
        if entry["key_id"] is None:
            raise _Broken(seq, "it is not keyed: it cannot be trusted to act on")
        ring = Keyring(files.keys_dir) if files.keys_dir else None
        _check_mac(entry, ring)
        for name, value in expect.items():
            if entry.get(name) != value:
                raise _Broken(seq, f"its {name} is {entry.get(name)!r}, expected {value!r}")
    except _Broken as b:
        return VerifyResult(False, 0, b.seq, b.reason)
    except (json.JSONDecodeError, ValueError) as exc:
        return VerifyResult(False, 0, seq, f"entry is not valid JSON: {exc}")
    return VerifyResult(True, 1, None, "", seq, (KeySpan(entry["key_id"], seq, seq),))
