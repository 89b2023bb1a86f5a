"""Settling moves whose outcome is not known from a read-back (see twin.serve.writepath).

A move with a failed or uncertain write is settled from the plant's own fresh samples of every
MV in it, never by re-sending: all applied, none applied, or partly applied. A partly applied
move is put right by the spec's policy (`[safety] on_partial_move`: restore the moved MVs to
their prior values, or complete the move), through the same guard, and an alarm is raised. A
restart settles interrupted moves the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from twin.guard import GuardDecision
from twin.serve.alarms import Alarms
from twin.serve.config import ACTOR
from twin.serve.live import LiveState
from twin.spec import PlantSpec
from twin.state import Store, WriteRecord, WriteSettlement


@dataclass
class Move:
    """One move in flight or awaiting settlement."""

    ids: dict[str, int]
    """Write id of each MV of the move."""
    requested: dict[str, float]
    prior: dict[str, float]
    """Each MV's live value before the move."""
    since: datetime
    """Plant time the move was started: only samples after it settle it."""
    decision_id: int | None = None
    proposal_id: int | None = None
    campaign: tuple[int, int] | None = None
    unsettled: set[str] = field(default_factory=set)
    """MVs whose outcome is not known from a read-back."""
    alarmed: bool = False

    @property
    def subject(self) -> str:
        if self.proposal_id is not None:
            return f"proposal:{self.proposal_id}"
        return f"steptest:{self.campaign[0] if self.campaign else '?'}"


class MoveWriter(Protocol):
    """What settling needs of the write path: its parts, and a guarded move of its own."""

    spec: PlantSpec
    store: Store
    live: LiveState
    alarms: Alarms
    rel_tol: float

    def check_own_move(self, values: Mapping[str, float], now: datetime) -> GuardDecision: ...

    def start(
        self,
        values: Mapping[str, float],
        now: datetime,
        *,
        decision_id: int | None = None,
        proposal_id: int | None = None,
        campaign: tuple[int, int] | None = None,
    ) -> Move: ...

    async def write(self, move: Move) -> str: ...


class Settling:
    """The moves awaiting settlement, and how each is settled."""

    def __init__(self, path: MoveWriter) -> None:
        self.path = path
        self.unsettled: list[Move] = []

    def load_interrupted(self) -> None:
        """After a restart: every move with an intent left open becomes unsettled."""
        moves: dict[tuple[Any, ...], list[WriteRecord]] = {}
        for w in self.path.store.open_write_intents(self.path.spec.name):
            moves.setdefault(_move_key(w), []).append(w)
        for open_writes in moves.values():
            writes = open_writes
            if open_writes[0].decision_id is not None:
                writes = self.path.store.writes_for(decision_id=open_writes[0].decision_id)
            self.unsettled.append(_interrupted(writes, open_writes[0]))
        # Stopped after a move's last read-back but before its decision was closed: nothing is
        # open, yet the approval stays "writing" for good unless it is closed here.
        store, plant = self.path.store, self.path.spec.name
        covered = {m.decision_id for m in self.unsettled}
        for decision_id in store.decisions_left_writing(plant):
            writes = store.writes_for(decision_id=decision_id)
            if decision_id in covered or not writes:
                continue
            if all(w.status == "done" for w in writes):
                store.settle_move(
                    plant=plant,
                    actor=ACTOR,
                    decision_id=decision_id,
                    proposal_id=writes[0].proposal_id,
                    outcome="written",
                    why="every write of the move was done and read back before the runtime "
                    "stopped; closed at the next start",
                )
            else:  # some write ended otherwise: what the plant holds settles it
                self.unsettled.append(_interrupted(writes, writes[-1]))

    async def settle(self, now: datetime | None) -> None:
        """Settle every unsettled move whose MVs have all reported since it started."""
        for move in list(self.unsettled):
            fresh = {t: self.path.live.latest.get(t) for t in move.requested}
            if all(s is not None and s.usable and s.ts > move.since for s in fresh.values()):
                self.unsettled.remove(move)
                values = {t: s.value for t, s in fresh.items() if s is not None}
                await self._settle_move(move, values, now)
            elif not move.alarmed and now is not None and self._overdue(move, now):
                move.alarmed = True
                self.path.alarms.raise_(
                    "move_unsettled",
                    None,
                    f"{move.subject}: cannot confirm what the plant holds for "
                    f"{', '.join(move.requested)}; no fresh samples since {move.since.isoformat()}",
                    move.subject,
                )

    def _overdue(self, move: Move, now: datetime) -> bool:
        return (now - move.since).total_seconds() > self.path.spec.safety.max_staleness_s

    def _applied(self, value: float, requested: float) -> bool:
        return math.isclose(value, requested, rel_tol=self.path.rel_tol, abs_tol=1e-9)

    async def _settle_move(self, move: Move, live: dict[str, float], now: datetime | None) -> None:
        applied = {t: self._applied(live[t], v) for t, v in move.requested.items()}
        open_ids = {w.id for w in self.path.store.open_write_intents(self.path.spec.name)}
        settled = [
            WriteSettlement(
                write_id=wid,
                tag=tag,
                requested=move.requested.get(tag),
                live=live[tag],
                applied=applied[tag],
                reason=f"settled from the plant's value {live[tag]:g}",
            )
            for tag, wid in move.ids.items()
            if wid in open_ids
        ]
        n = sum(applied.values())
        partial = 0 < n < len(applied)
        if partial:  # its writes are settled before the repair writes anew
            self.path.store.settle_writes(settled, plant=self.path.spec.name, actor=ACTOR)
            outcome, why = await self._repair(move, live, applied, now)
        elif n == len(applied):
            outcome, why = "written", "every MV of the move holds its requested value"
        else:
            outcome, why = "failed", "no MV of the move was applied"
        # Otherwise the move closes in the same transaction that settles its writes.
        self.path.store.settle_move(
            plant=self.path.spec.name,
            actor=ACTOR,
            decision_id=move.decision_id,
            proposal_id=move.proposal_id,
            outcome=outcome,
            why=why,
            writes=() if partial else settled,
        )

    async def _repair(
        self, move: Move, live: dict[str, float], applied: dict[str, bool], now: datetime | None
    ) -> tuple[str, str]:
        """A partly applied move: restore or complete it (the spec's policy), guarded."""
        policy = self.path.spec.safety.on_partial_move
        moved = [t for t, ok in applied.items() if ok]
        if policy == "restore":
            target = {t: move.prior[t] for t in moved if t in move.prior}
        else:
            target = {t: v for t, v in move.requested.items() if not applied[t]}
        message = (
            f"{move.subject}: partial move ({', '.join(moved)} applied, "
            f"{', '.join(t for t in applied if not applied[t])} not): {policy}"
        )
        self.path.alarms.raise_("partial_move", None, message, move.subject)
        if not target or now is None:
            return "partial", message + ": nothing to write it with"
        g = self.path.check_own_move(target, now)
        if not g.allowed:
            why = "; ".join(g.reasons)
            self.path.alarms.raise_("partial_move", None, f"{message} refused by the guard: {why}")
            return "partial", f"{message}; refused by the guard: {why}"
        repair = self.path.start(g.values, now, proposal_id=move.proposal_id)
        outcome = await self.path.write(repair)
        done = "restored" if policy == "restore" else "completed"
        if outcome == "written":
            return done, f"{message}: {done}"
        return "partial", f"{message}: the {policy} write {outcome}"


def _interrupted(writes: list[WriteRecord], first: WriteRecord) -> Move:
    """A move a restart found interrupted: every MV of it to be settled from fresh samples."""
    campaign = (
        (first.campaign_id, first.step)
        if first.campaign_id is not None and first.step is not None
        else None
    )
    return Move(
        ids={w.tag: w.id for w in writes},
        requested={w.tag: w.requested for w in writes if w.requested is not None},
        prior={w.tag: w.prior for w in writes if w.prior is not None},
        since=first.at,
        decision_id=first.decision_id,
        proposal_id=first.proposal_id,
        campaign=campaign,
        unsettled={w.tag for w in writes},
    )


def _move_key(w: WriteRecord) -> tuple[Any, ...]:
    """The writes of one move: one approval, one step-test step, or one repair (same intent)."""
    if w.decision_id is not None:
        return ("decision", w.decision_id)
    if w.campaign_id is not None:
        return ("campaign", w.campaign_id, w.step)
    return ("repair", w.proposal_id, w.at)
