"""Judging a case from the plant's own MV log and what the runtime recorded."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from twin.historian import Historian
from twin.paths import Home

from . import mixer, store_view
from .fault_plant import FaultPlant, MvWrite

ANY = "*"
"""An expected alarm that may name any tag (a fault of the whole source)."""


@dataclass(frozen=True)
class Block:
    """Plant time during which no write may land, and why."""

    start: datetime
    end: datetime
    why: str


@dataclass
class CaseResult:
    case: str
    writes_before_fault: int = 0
    writes_total: int = 0
    unsafe_writes: int = 0
    unsafe: list[str] = field(default_factory=list)
    partial_unreconciled: int = 0
    partial: list[str] = field(default_factory=list)
    alarms_expected: list[str] = field(default_factory=list)
    alarms_missing: list[str] = field(default_factory=list)
    alarms_raised: int = 0
    false_alarms: list[str] = field(default_factory=list)
    must_keep_writing: bool = False
    may_lose_samples: bool = False
    writes_during_fault: int = 0
    resumed: bool = False
    samples_published: int = 0
    samples_lost: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def alarm_ok(self) -> bool:
        return not self.alarms_missing

    def problems(self) -> list[str]:
        """Every way this case failed, in words the lead can act on."""
        out = [f"unsafe write: {u}" for u in self.unsafe]
        out += [f"partial move left unreconciled: {p}" for p in self.partial]
        out += [f"no alarm naming {t}" for t in self.alarms_missing]
        out += [f"false alarm: {a}" for a in self.false_alarms]
        if self.must_keep_writing and self.writes_during_fault == 0:
            out.append("the fault blocked writes that it must not block")
        if self.samples_lost and not self.may_lose_samples:
            out.append(
                f"{self.samples_lost} of {self.samples_published} samples sent while the "
                "runtime was subscribed never reached the historian"
            )
        if not self.resumed:
            out.append("writes did not resume after the fault cleared (the loop stalled)")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "alarm_ok": self.alarm_ok, "problems": self.problems()}


def unsafe_writes(plant: FaultPlant, blocks: list[Block], rec: store_view.Recorded) -> list[str]:
    out = []
    lo, hi = mixer.MV_OPERATING
    for w in plant.writes:
        where = f"{w.tag}={w.requested:g} at plant {w.plant_ts:%H:%M:%S}"
        for b in blocks:
            if b.start <= w.plant_ts <= b.end:
                out.append(f"{where} while {b.why}")
        if abs(w.requested - w.before) > mixer.MAX_MOVE * (1 + 1e-9):
            out.append(f"{where}: a move of {w.requested - w.before:+g} > max_move")
        if not lo - 1e-9 <= w.requested <= hi + 1e-9:
            out.append(f"{where}: outside the operator limits [{lo:g}, {hi:g}]")
    ci = mixer.CONTROL_INTERVAL_S
    per_interval = Counter(math.floor(p.data_ts.timestamp() / ci) for p in rec.written_proposals)
    for k, n in per_interval.items():
        if n > 1:
            out.append(f"{n} moves written for one control interval (data at {k * ci:.0f} s)")
    return out


def partial_moves(plant: FaultPlant, rec: store_view.Recorded) -> list[str]:
    out = []
    groups: dict[int, list[Any]] = {}
    for w in rec.writes:
        if w.decision_id is not None:
            groups.setdefault(w.decision_id, []).append(w)
    for did, rows in groups.items():
        done = [r.tag for r in rows if r.status == "done"]
        if done and len(done) < len(rows) and not _reconciled(rec, did, rows):
            rest = ", ".join(f"{r.tag} {r.status}" for r in rows if r.status != "done")
            out.append(f"decision {did}: {', '.join(done)} done, {rest}, no reconciliation record")
    # The plant's truth: a value it applied that the store never recorded as written.
    applied = Counter((w.tag, round(w.applied, 6)) for w in plant.writes if w.applied != w.before)
    recorded = Counter((r.tag, round(r.requested, 6)) for r in rec.writes if r.status == "done")
    for (tag, value), n in applied.items():
        if n > recorded[(tag, value)]:
            out.append(f"the plant applied {tag}={value:g} but the store has no done write of it")
    return out


def _reconciled(rec: store_view.Recorded, decision_id: int, rows: list[Any]) -> bool:
    subjects = {f"decision:{decision_id}"} | {f"write:{r.id}" for r in rows}
    subjects |= {f"proposal:{r.proposal_id}" for r in rows if r.proposal_id is not None}
    for e in rec.reconciliations:
        what = e.get("what") or {}
        if e.get("subject") in subjects or (
            isinstance(what, dict) and what.get("decision_id") == decision_id
        ):
            return True
    return False


def samples_lost(plant: FaultPlant, home: Path) -> tuple[int, int]:
    """(published, lost): samples sent while a runtime was subscribed (FaultPlant.published),
    with a timestamp inside the span the historian covers, and how many of them it lacks."""
    with Historian(Home.at(home).historian_dir(mixer.NAME)) as h:
        span = h.time_range()
        if span is None:
            return len(plant.published), len(plant.published)
        stored = h.read_long(span[0], span[1] + timedelta(seconds=1))
    have = {
        (t, round(ts.timestamp(), 3)) for t, ts in zip(stored["tag"], stored["ts"], strict=True)
    }
    sent = [(t, round(ts.timestamp(), 3)) for t, ts in plant.published if span[0] <= ts <= span[1]]
    return len(sent), sum(1 for k in sent if k not in have)


def mv_writes_after(plant: FaultPlant, ts: datetime) -> list[MvWrite]:
    return [w for w in plant.writes if w.plant_ts > ts]
