"""What the runtime recorded, read only through the state store's public methods and the audit.

The one place that imports the store, so that its move (twin.store -> twin.state) is one line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twin import audit

try:
    from twin.state import Store
except ImportError:  # main before the state package (5ccf30f): keeps the "before" figures runnable
    from twin.store import Store  # type: ignore[no-redef]


@dataclass(frozen=True)
class Recorded:
    """A snapshot of the store after a case."""

    writes: list[Any]
    """WriteRecords, oldest first."""
    alarms: list[dict[str, Any]]
    """Audit entries of kind alarm, plus the runtime status's alarms."""
    reconciliations: list[dict[str, Any]]
    """Audit entries whose kind mentions reconciliation."""
    written_proposals: list[Any]
    """ProposalRecords with status written."""


def read(home: Path, plant: str) -> Recorded:
    store = Store(home / "state.db")
    try:
        writes = sorted(store.writes_for(plant=plant, limit=1_000_000), key=lambda w: w.id)
        entries = audit.entries(store, plant=plant)
        status = store.get_status(plant)
        written = [p for p in store.list_proposals(plant, limit=1_000_000) if p.status == "written"]
    finally:
        store.close()
    alarms = [e for e in entries if e["kind"] == "alarm"]
    alarms += [{"kind": "status_alarm", "what": a} for a in (status.alarms if status else [])]
    recon = [e for e in entries if "reconcil" in e["kind"]]
    return Recorded(writes, alarms, recon, written)


def names(entry: dict[str, Any], word: str) -> bool:
    """Whether an audit entry (its what and why) names `word` as a whole word."""
    text = json.dumps({k: entry.get(k) for k in ("what", "why", "subject")}, default=str)
    return re.search(rf"\b{re.escape(word)}\b", text) is not None


def mentions_any(entry: dict[str, Any], words: list[str]) -> bool:
    return any(names(entry, w) for w in words)
