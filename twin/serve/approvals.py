"""Approvals -> guarded moves: every check of safety rule 2 at the moment of writing."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from twin import audit
from twin.guard import GuardDecision, check_write
from twin.serve.alarms import Alarms
from twin.serve.campaigns import Campaigns
from twin.serve.config import ACTOR, Mode, RunSummary
from twin.serve.fallback import is_fallback
from twin.serve.live import LiveState
from twin.serve.proposer import Proposer
from twin.serve.writepath import WritePath
from twin.spec import PlantSpec
from twin.state import DecisionRecord, DecisionTaken, ProposalRecord, Store, iso

log = logging.getLogger(__name__)


class Approvals:
    """Picks up decisions, guards them against the live plant and writes them as moves."""

    def __init__(
        self,
        spec: PlantSpec,
        store: Store,
        live: LiveState,
        proposer: Proposer,
        writes: WritePath,
        campaigns: Campaigns,
        alarms: Alarms,
        *,
        mode: Mode,
        summary: RunSummary,
    ) -> None:
        self.spec, self.store, self.live, self.proposer = spec, store, live, proposer
        self.writes, self.campaigns, self.alarms = writes, campaigns, alarms
        self.mode, self.summary = mode, summary
        self._lock = asyncio.Lock()

    async def apply_all(self) -> None:
        """Act on every approval not acted on yet (one pass at a time: the poll loop and an
        auto-mode control step may both get here)."""
        async with self._lock:
            for decision, proposal in self.store.unapplied_approvals(self.spec.name):
                await self._apply(decision, proposal)

    async def _apply(self, decision: DecisionRecord, proposal: ProposalRecord) -> None:
        assert self.writes is not None and self.campaigns is not None
        values = decision.mv_values or {}
        problem = self._audit_problem(decision, proposal)
        if problem is not None:
            # The row to be written is not what was approved and keyed in the audit log (or the
            # log was altered): write nothing, ever, for this decision.
            self.alarms.raise_("audit_mismatch", None, problem, subject=f"proposal:{proposal.id}")
            self._refuse(decision, proposal, values, (problem,))
            return
        now = self.live.clock.now()
        writing = self.mode != "advisory"
        # One move per control interval of plant time: two moves in one interval could add up
        # to twice max_move, so an approval that arrives after this interval's move waits for
        # the next interval (its expiry still applies when it is written).
        if writing and now is not None and self.writes.quarantined(values, now):
            await self.writes.probe()
            return  # a write of these MVs may still land late: wait (see WritePath.quarantined)
        if writing and (
            now is None
            or not self.live.clock.measured
            or self.writes.unsettled
            or self.writes.moved_in_interval(now)
        ):
            return  # decided once the plant clock is known and interrupted moves are settled
        g = self._guard(decision, proposal, now) if writing and now is not None else None
        if g is None:
            g = GuardDecision({}, ("the runtime is in advisory mode: nothing is ever written",))
        if not g.allowed:
            self._refuse(decision, proposal, values, g.reasons)
            return
        assert now is not None
        try:
            move = self.writes.start(
                g.values, now, decision_id=decision.id, proposal_id=proposal.id
            )
        except DecisionTaken:  # another runtime on this store took it first: not a fault
            log.info("decision %d was taken by another runtime", decision.id)
            return
        outcome = await self.writes.write(move)
        self.summary.writes = self.writes.writes
        if outcome != "unsettled":  # an unsettled move's decision closes when it is settled
            self.store.finish_decision(decision.id, proposal.id, outcome, actor=ACTOR)

    def _refuse(
        self,
        decision: DecisionRecord,
        proposal: ProposalRecord,
        values: dict[str, float],
        reasons: tuple[str, ...],
    ) -> None:
        self.store.refuse_write(
            plant=self.spec.name,
            actor=ACTOR,
            proposal_id=proposal.id,
            decision_id=decision.id,
            values=values,
            reasons=reasons,
        )
        self.summary.refused += 1
        log.warning("write for proposal %d refused: %s", proposal.id, "; ".join(reasons))

    def _audit_problem(self, decision: DecisionRecord, proposal: ProposalRecord) -> str | None:
        """Why the decision's audit entry does not vouch for this row, or None when it does.

        The entry must verify (hash, link, key, MAC) and hold this decision's kind, user,
        proposal and values, so an edited `decisions` row or a forged entry is never written.
        """
        seq = self.store.decision_audit_seq(decision.id)
        if seq is None:
            return f"decision {decision.id} has no audit entry recorded: not written"
        expect = {
            "kind": decision.kind,
            "user": decision.user,
            "plant": proposal.plant,
            "subject": f"proposal:{proposal.id}",
            "what": {
                "proposed": proposal.mv_values,
                "values": decision.mv_values or None,
                "evaluation": decision.evaluation,
                "decision_id": decision.id,
            },
        }
        result = audit.verify_entry(self.store, seq, expect=expect)
        if result.ok:
            return None
        return f"decision {decision.id} does not match its audit entry ({result}): not written"

    def _guard(
        self, decision: DecisionRecord, proposal: ProposalRecord, now: datetime
    ) -> GuardDecision:
        reasons: list[str] = []
        if self.campaigns is not None and self.campaigns.running() is not None:
            reasons.append("a step test is running")
        if proposal.data_ts > now:
            reasons.append("the proposal was made on another plant timeline (the plant restarted)")
        if reasons:
            return GuardDecision({}, tuple(reasons))
        # A fallback's move is made because the twin does not know this state: the twin's own
        # OOD score cannot veto it (the fallback's model has no such score).
        ood = None if is_fallback(proposal.payload) else self._ood_now()
        values = decision.mv_values or {}
        return check_write(
            self.spec,
            approved=values,
            proposed=proposal.mv_values,
            live=self.live.latest,
            now=now,
            expires_at=proposal.expires_at,
            operator_limits=self.store.operator_limits(self.spec.name),
            modification=values if decision.kind == "modify" else None,
            ood_score=ood,
            ood_threshold=1.0 if ood is not None else None,
            written=self.writes.unseen_writes(),
        )

    def _ood_now(self) -> float | None:
        """The OOD score recomputed from the plant as it is at write time (safety rule 2)."""
        data_ts = self.live.newest_ts()
        if data_ts is None:
            return None
        window = self.live.window(self.proposer.tag_names, int(self.proposer.window), data_ts)
        try:
            return self.proposer.ood_ratio(window)
        except Exception as exc:  # a score that cannot be computed is no score: refuse
            log.exception("OOD score at write time")
            self.alarms.raise_("runtime_error", None, f"OOD score at write time failed: {exc!r}")
            return float("inf")

    def expire(self, now: datetime | None) -> None:
        """The pending proposal expires when the plant clock passes its expiry."""
        p = self.store.pending_proposal(self.spec.name)
        if p is not None and now is not None and now > p.expires_at:
            self.store.set_proposal_status(
                p.id,
                "expired",
                actor=ACTOR,
                only_if="pending",
                why=f"not decided before {iso(p.expires_at)} (plant clock)",
            )

    # ---- status ------------------------------------------------------------------------
