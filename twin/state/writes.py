"""The write ledger: every value the runtime means to write, wrote, or refused to write.

A move (the MV values of one approval, or of one step-test step) is recorded as intents before
any I/O, in the same transaction that takes the approval, so a crash can never write one
approval twice; each intent then gets its outcome. An intent left without one (a crash, a cut
connection) is settled later by reading the plant back, never by re-sending.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from twin.errors import TwinError
from twin.state.base import inserted_id, iso, now_utc, select
from twin.state.core import StoreCore
from twin.state.db import Db
from twin.state.records import WriteRecord, write_row

# Outcomes of one write: done (written and read back), mismatch (read back differs),
# failed (not written), uncertain (the write was sent but its outcome is unknown), refused,
# restored (written, then put back to its prior value because its move could not complete).
WRITE_OUTCOMES = ("done", "mismatch", "failed", "uncertain", "refused", "restored")


class WriteSettlement(NamedTuple):
    """An open intent settled from the value the plant holds now."""

    write_id: int
    tag: str
    requested: float | None
    live: float
    applied: bool
    reason: str


class DecisionTaken(TwinError):
    """Another runtime has already acted on this decision (it writes it, or refused it)."""


def _num(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


class WritesMixin(StoreCore):
    def writes_for(
        self,
        *,
        decision_id: int | None = None,
        campaign_id: int | None = None,
        step: int | None = None,
        plant: str | None = None,
        limit: int = 1000,
    ) -> list[WriteRecord]:
        sql, params = select(
            "writes", decision_id=decision_id, campaign_id=campaign_id, step=step, plant=plant
        )
        rows = self.query(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [write_row(r) for r in rows]

    def open_write_intents(self, plant: str) -> list[WriteRecord]:
        """Writes recorded as intended but never settled: a crash or a cut connection."""
        rows = self.query(
            "SELECT * FROM writes WHERE plant = ? AND status IN ('intent', 'uncertain') "
            "ORDER BY id",
            (plant,),
        )
        return [write_row(r) for r in rows]

    def decisions_left_writing(self, plant: str) -> list[int]:
        """Approvals taken for writing and never closed: the runtime stopped between taking one
        and recording its outcome (its writes may all be done, or some still open)."""
        rows = self.query(
            "SELECT d.id FROM decisions d JOIN proposals p ON p.id = d.proposal_id "
            "WHERE p.plant = ? AND d.applied = 'writing' ORDER BY d.id",
            (plant,),
        )
        return [int(r[0]) for r in rows]

    def record_intent(
        self,
        *,
        plant: str,
        actor: str,
        values: Mapping[str, float],
        prior: Mapping[str, float],
        decision_id: int | None = None,
        proposal_id: int | None = None,
        campaign: tuple[int, int] | None = None,
    ) -> dict[str, int]:
        """Commit the intent to write a move (and, for an approval, that it is taken) before
        any I/O; returns the write id of each tag. `prior` holds each MV's live value."""
        ids: dict[str, int] = {}
        cid, step = campaign if campaign else (None, None)
        with self.write() as c:
            # Take the approval first: the writer lock makes this the one runtime that finds
            # it untaken (the unique index on writes(decision_id, tag) backs this up).
            if decision_id is not None:
                taken = c.execute(
                    "UPDATE decisions SET applied = 'writing' WHERE id = ? AND applied IS NULL",
                    (decision_id,),
                ).rowcount
                if not taken:  # another runtime took it: never write an approval twice
                    raise DecisionTaken(f"decision {decision_id} was already taken")
            for tag, v in values.items():
                cur = c.execute(
                    "INSERT INTO writes (plant, proposal_id, decision_id, campaign_id, step, tag, "
                    "requested, prior, status, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'intent', ?)",
                    (
                        plant,
                        proposal_id,
                        decision_id,
                        cid,
                        step,
                        tag,
                        v,
                        _num(prior.get(tag)),
                        iso(now_utc()),
                    ),
                )
                ids[tag] = inserted_id(cur)
            if cid is not None and step is not None:
                c.execute("UPDATE steptests SET next_step = ? WHERE id = ?", (step + 1, cid))
            self.audit(
                c,
                user=actor,
                kind="write_intent",
                plant=plant,
                subject=f"proposal:{proposal_id}" if proposal_id else f"steptest:{cid}",
                what={
                    "values": dict(values),
                    "live": dict(prior),
                    "decision_id": decision_id,
                    "campaign_id": cid,
                    "step": step,
                    "write_ids": ids,
                },
                why="guard passed",
            )
        return ids

    def complete_write(
        self,
        write_id: int,
        status: str,
        *,
        written: float | None = None,
        read_back: float | None = None,
        reason: str | None = None,
    ) -> None:
        """The outcome of one intended write."""
        if status not in WRITE_OUTCOMES:
            raise ValueError(f"unknown write outcome {status!r}")
        with self.write() as c:
            c.execute(
                "UPDATE writes SET status = ?, written = ?, read_back = ?, reason = ?, "
                "completed_at = ? WHERE id = ?",
                (status, _num(written), _num(read_back), reason, iso(now_utc()), write_id),
            )

    def refuse_write(
        self,
        *,
        plant: str,
        actor: str,
        proposal_id: int,
        decision_id: int,
        values: Mapping[str, float],
        reasons: tuple[str, ...],
    ) -> bool:
        """The guard refused an approval: recorded per tag, the proposal closed, audited.

        False (nothing recorded) when another runtime has already acted on the decision: the
        decision is taken once, by writing or by refusing, as in `record_intent`.
        """
        at = iso(now_utc())
        why = "; ".join(reasons)
        with self.write() as c:
            taken = c.execute(
                "UPDATE decisions SET applied = 'refused' WHERE id = ? AND applied IS NULL",
                (decision_id,),
            ).rowcount
            if not taken:
                return False
            for tag, v in values.items():
                c.execute(
                    "INSERT INTO writes (plant, proposal_id, decision_id, tag, requested, status, "
                    "reason, at, completed_at) VALUES (?, ?, ?, ?, ?, 'refused', ?, ?, ?)",
                    (plant, proposal_id, decision_id, tag, _num(v), why, at, at),
                )
            c.execute(
                "UPDATE proposals SET status = 'refused', status_reason = ? WHERE id = ?",
                (why, proposal_id),
            )
            self.audit(
                c,
                user=actor,
                kind="write_refused",
                plant=plant,
                subject=f"proposal:{proposal_id}",
                what={"values": dict(values), "decision_id": decision_id, "reasons": list(reasons)},
                why=why,
            )
        return True

    def settle_writes(self, writes: Sequence[WriteSettlement], *, plant: str, actor: str) -> None:
        """Settle intents whose outcome was unknown, from the values the plant holds now (one
        transaction; `settle_move` does it together with closing the move)."""
        with self.write() as c:
            for settled in writes:
                self._settle_write(c, settled, plant=plant, actor=actor)

    def _settle_write(self, c: Db, s: WriteSettlement, *, plant: str, actor: str) -> None:
        c.execute(
            "UPDATE writes SET status = ?, read_back = ?, reason = ?, completed_at = ? "
            "WHERE id = ?",
            ("done" if s.applied else "failed", s.live, s.reason, iso(now_utc()), s.write_id),
        )
        self.audit(
            c,
            user=actor,
            kind="write_reconciled",
            plant=plant,
            subject=f"write:{s.write_id}",
            what={"tag": s.tag, "requested": s.requested, "live": s.live, "applied": s.applied},
            why=s.reason,
        )

    def settle_move(
        self,
        *,
        plant: str,
        actor: str,
        decision_id: int | None,
        proposal_id: int | None,
        outcome: str,
        why: str,
        writes: Sequence[WriteSettlement] = (),
    ) -> None:
        """An interrupted approval's move was reconciled: its decision and proposal close, in
        the same transaction as the settling of `writes` (no reader sees them settled and the
        decision still open)."""
        with self.write() as c:
            for settled in writes:
                self._settle_write(c, settled, plant=plant, actor=actor)
            if decision_id is not None:
                c.execute("UPDATE decisions SET applied = ? WHERE id = ?", (outcome, decision_id))
            if proposal_id is not None:
                c.execute(
                    "UPDATE proposals SET status = ?, status_reason = ? WHERE id = ? "
                    "AND status IN ('approved', 'modified')",
                    ("written" if outcome == "written" else "failed", why, proposal_id),
                )
            self.audit(
                c,
                user=actor,
                kind="move_reconciled",
                plant=plant,
                subject=f"proposal:{proposal_id}" if proposal_id else f"decision:{decision_id}",
                what={"decision_id": decision_id, "outcome": outcome},
                why=why,
            )
