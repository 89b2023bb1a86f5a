"""Proposals and the decisions on them: the one owner of the proposals and decisions tables."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from twin.errors import BadInput
from twin.state.base import NotFound, inserted_id, iso, now_utc, select, to_json
from twin.state.core import StoreCore
from twin.state.db import Db
from twin.state.records import DecisionRecord, ProposalRecord, decision_row, proposal_row
from twin.state.schema import ENSURED

# A plant's pending proposal is looked up at every new proposal: without this index the lookup
# scanned every proposal of the plant (34 ms at 50,000 rows).
ENSURED.append(("CREATE INDEX IF NOT EXISTS proposals_status ON proposals(plant, status, id)",))

PROPOSAL_OPEN = "pending"
# Final states of a proposal; an approved one becomes "written", "refused" or "failed".
PROPOSAL_STATES = (
    "pending",
    "approved",
    "modified",
    "rejected",
    "expired",
    "superseded",
    "written",
    "refused",
    "failed",
    "advisory",
)
DECISION_STATUS = {"approve": "approved", "modify": "modified", "reject": "rejected"}


class ProposalClosed(BadInput):
    """The proposal is no longer pending (decided, expired, superseded or advisory)."""


class ProposalsMixin(StoreCore):
    def add_proposal(
        self,
        *,
        plant: str,
        mv_values: dict[str, float],
        payload: dict[str, Any],
        data_ts: datetime,
        expires_at: datetime,
        model_version: str | None,
        mode: str,
        status: str = PROPOSAL_OPEN,
        actor: str = "runtime",
    ) -> int:
        """Store a new proposal; older pending proposals of the plant are superseded."""
        with self.write() as c:
            older = c.execute(
                "SELECT id FROM proposals WHERE plant = ? AND status = 'pending'", (plant,)
            ).fetchall()
            for row in older:
                c.execute(
                    "UPDATE proposals SET status = 'superseded', status_reason = ? WHERE id = ?",
                    ("a newer proposal was made", row["id"]),
                )
            cur = c.execute(
                "INSERT INTO proposals (plant, created_at, data_ts, expires_at, model_version, "
                "mode, status, mv_values, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    plant,
                    iso(now_utc()),
                    iso(data_ts),
                    iso(expires_at),
                    model_version,
                    mode,
                    status,
                    to_json(mv_values),
                    to_json(payload),
                ),
            )
            pid = inserted_id(cur)
            self.audit(
                c,
                user=actor,
                kind="proposal",
                plant=plant,
                subject=f"proposal:{pid}",
                what={
                    "mv_values": mv_values,
                    "data_ts": iso(data_ts),
                    "expires_at": iso(expires_at),
                    "model_version": model_version,
                    "mode": mode,
                    "status": status,
                    "superseded": [r["id"] for r in older],
                },
                why=str(payload.get("summary", "")),
            )
            return pid

    def get_proposal(self, proposal_id: int) -> ProposalRecord:
        rows = self.query("SELECT * FROM proposals WHERE id = ?", (proposal_id,))
        if not rows:
            raise NotFound(f"no proposal with id {proposal_id}")
        return proposal_row(rows[0])

    def list_proposals(
        self, plant: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[ProposalRecord]:
        """Newest first."""
        sql, params = select("proposals", plant=plant, status=status)
        rows = self.query(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [proposal_row(r) for r in rows]

    def pending_proposal(self, plant: str) -> ProposalRecord | None:
        rows = self.list_proposals(plant, status=PROPOSAL_OPEN, limit=1)
        return rows[0] if rows else None

    def set_proposal_status(
        self,
        proposal_id: int,
        status: str,
        *,
        actor: str,
        why: str = "",
        only_if: str | None = None,
        c: Db | None = None,
    ) -> bool:
        """Move a proposal to a new status (audited); with only_if, only from that status."""
        if status not in PROPOSAL_STATES:
            raise ValueError(f"unknown proposal status {status!r}")
        if c is None:
            with self.write() as c2:
                return self.set_proposal_status(
                    proposal_id, status, actor=actor, why=why, only_if=only_if, c=c2
                )
        row = c.execute(
            "SELECT plant, status FROM proposals WHERE id = ?", (proposal_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no proposal with id {proposal_id}")
        if only_if is not None and row["status"] != only_if:
            return False
        c.execute(
            "UPDATE proposals SET status = ?, status_reason = ? WHERE id = ?",
            (status, why, proposal_id),
        )
        self.audit(
            c,
            user=actor,
            kind=f"proposal_{status}",
            plant=row["plant"],
            subject=f"proposal:{proposal_id}",
            what={"from": row["status"], "to": status},
            why=why,
        )
        return True

    def expire_pending(self, plant: str, *, actor: str, why: str) -> int:
        """Expire every pending proposal of a plant; returns how many."""
        n = 0
        for p in self.list_proposals(plant, status=PROPOSAL_OPEN):
            n += self.set_proposal_status(p.id, "expired", actor=actor, only_if="pending", why=why)
        return n

    # ---- decisions ---------------------------------------------------------------------

    def decide(
        self,
        proposal: ProposalRecord,
        *,
        user: str,
        kind: str,
        values: Mapping[str, float] | None,
        note: str,
        evaluation: dict[str, Any] | None,
    ) -> int:
        """Record an approval, modification or rejection of a pending proposal (audited)."""
        status = DECISION_STATUS[kind]
        with self.write() as c:
            row = c.execute("SELECT status FROM proposals WHERE id = ?", (proposal.id,)).fetchone()
            if row["status"] != PROPOSAL_OPEN:
                raise ProposalClosed(f"proposal {proposal.id} is {row['status']}, not pending")
            cur = c.execute(
                "INSERT INTO decisions (proposal_id, kind, user, at, mv_values, note, evaluation) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    proposal.id,
                    kind,
                    user,
                    iso(now_utc()),
                    to_json(values) if values is not None else None,
                    note,
                    to_json(evaluation) if evaluation is not None else None,
                ),
            )
            decision_id = inserted_id(cur)
            c.execute(
                "UPDATE proposals SET status = ?, status_reason = ? WHERE id = ?",
                (status, note, proposal.id),
            )
            seq = self.audit(
                c,
                user=user,
                kind=kind,
                plant=proposal.plant,
                subject=f"proposal:{proposal.id}",
                what={
                    "proposed": proposal.mv_values,
                    "values": dict(values) if values else None,
                    "evaluation": evaluation,
                    "decision_id": decision_id,
                },
                why=note,
            )
            c.execute("UPDATE decisions SET audit_seq = ? WHERE id = ?", (seq, decision_id))
            return decision_id

    def decision_audit_seq(self, decision_id: int) -> int | None:
        """The audit entry that recorded a decision (None for decisions made before schema 3)."""
        rows = self.query("SELECT audit_seq FROM decisions WHERE id = ?", (decision_id,))
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    def get_decision(self, proposal_id: int) -> DecisionRecord | None:
        rows = self.query("SELECT * FROM decisions WHERE proposal_id = ?", (proposal_id,))
        return decision_row(rows[0]) if rows else None

    def unapplied_approvals(self, plant: str) -> list[tuple[DecisionRecord, ProposalRecord]]:
        """Approvals and modifications the runtime has not acted on yet, oldest first."""
        rows = self.query(
            "SELECT d.*, p.id AS pid FROM decisions d JOIN proposals p ON p.id = d.proposal_id "
            "WHERE p.plant = ? AND d.kind IN ('approve', 'modify') AND d.applied IS NULL "
            "ORDER BY d.id",
            (plant,),
        )
        return [(decision_row(r), self.get_proposal(r["pid"])) for r in rows]

    def mark_applied(self, c: Db, decision_id: int, outcome: str) -> None:
        c.execute("UPDATE decisions SET applied = ? WHERE id = ?", (outcome, decision_id))

    def finish_decision(
        self, decision_id: int, proposal_id: int, outcome: str, *, actor: str
    ) -> None:
        """The runtime acted on an approval: the decision and its proposal take the outcome."""
        with self.write() as c:
            self.mark_applied(c, decision_id, outcome)
            status = "written" if outcome == "written" else "failed"
            self.set_proposal_status(proposal_id, status, actor=actor, why=outcome, c=c)
