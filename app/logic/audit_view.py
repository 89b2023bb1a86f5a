"""The Audit page: filtered entries as a table, chain verification, CSV export."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from twin import audit
from twin.state import Store


@dataclass(frozen=True)
class AuditFilter:
    """What the investigator narrows the log to; None means any."""

    start: datetime | None = None
    """Entries at or after this wall-clock time (UTC)."""
    end: datetime | None = None
    """Entries at or before this wall-clock time (UTC)."""
    user: str | None = None
    """Only this user's entries."""
    kind: str | None = None
    """Only entries whose kind starts with this (e.g. "write" also matches write_refused)."""
    plant: str | None = None
    """Only this plant's entries."""
    text: str | None = None
    """Only entries whose subject, what or why contain this text (case-insensitive)."""

    def query(self) -> dict:
        return {
            "start": self.start,
            "end": self.end,
            "user": self.user or None,
            "kind": self.kind or None,
            "plant": self.plant or None,
        }


def filtered(store: Store, f: AuditFilter) -> list[dict]:
    rows = audit.entries(store, **f.query())
    if f.text:
        needle = f.text.lower()
        rows = [
            r
            for r in rows
            if needle in f"{r['subject']} {audit.canonical(r['what'])} {r['why']}".lower()
        ]
    return rows


def audit_frame(rows: list[dict]) -> pd.DataFrame:
    """Newest first, with `what` as compact JSON."""
    frame = pd.DataFrame(
        [
            {
                "seq": r["seq"],
                "at": r["at"],
                "user": r["user"],
                "kind": r["kind"],
                "plant": r["plant"] or "",
                "subject": r["subject"] or "",
                "what": audit.canonical(r["what"]),
                "why": r["why"],
                "hash": r["hash"][:12],
            }
            for r in rows
        ],
        columns=["seq", "at", "user", "kind", "plant", "subject", "what", "why", "hash"],
    )
    return frame.sort_values("seq", ascending=False, ignore_index=True)


def choices(store: Store) -> tuple[list[str], list[str]]:
    """Users and kinds that occur in the log, for the filter boxes."""
    return store.audit_users_and_kinds()


def export_bytes(rows: list[dict]) -> bytes:
    """The filtered entries as CSV with their hashes (same columns as `twin audit export`)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(audit.COLUMNS)
    for e in rows:
        w.writerow(
            [
                audit.canonical(e[c]) if c == "what" else ("" if e[c] is None else e[c])
                for c in audit.COLUMNS
            ]
        )
    return buf.getvalue().encode("utf-8")
