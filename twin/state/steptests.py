"""Step-test campaigns: the one owner of the steptests table."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from twin.errors import BadInput
from twin.state.base import NotFound, inserted_id, iso, now_utc, select, to_json
from twin.state.core import StoreCore
from twin.state.records import StepTestRecord, steptest_row


class StepTestsMixin(StoreCore):
    def get_steptest(self, campaign_id: int) -> StepTestRecord:
        rows = self.query("SELECT * FROM steptests WHERE id = ?", (campaign_id,))
        if not rows:
            raise NotFound(f"no step-test campaign with id {campaign_id}")
        return steptest_row(rows[0])

    def list_steptests(
        self, plant: str | None = None, status: str | None = None
    ) -> list[StepTestRecord]:
        sql, params = select("steptests", plant=plant, status=status)
        return [steptest_row(r) for r in self.query(sql + " ORDER BY id", params)]

    def add_steptest(
        self, plant: str, design: Mapping[str, Any], *, user: str, note: str, what: dict[str, Any]
    ) -> int:
        with self.write() as c:
            cur = c.execute(
                "INSERT INTO steptests (plant, design, status, requested_by, requested_at, note) "
                "VALUES (?, ?, 'requested', ?, ?, ?)",
                (plant, to_json(dict(design)), user, iso(now_utc()), note),
            )
            cid = inserted_id(cur)
            self.audit(
                c,
                user=user,
                kind="steptest_request",
                plant=plant,
                subject=f"steptest:{cid}",
                what=what,
                why=note,
            )
            return cid

    def move_steptest(
        self,
        campaign_id: int,
        *,
        user: str,
        from_: tuple[str, ...],
        to: str,
        kind: str,
        why: str,
        **cols: Any,
    ) -> bool:
        """Move a campaign from one of `from_` to `to`, setting `cols` too (audited).

        Raises BadInput for a user's transition that cannot be made; returns False when the
        campaign had already left `from_` (a race the caller may ignore)."""
        with self.write() as c:
            row = c.execute(
                "SELECT plant, status FROM steptests WHERE id = ?", (campaign_id,)
            ).fetchone()
            if row is None:
                raise BadInput(f"no step-test campaign with id {campaign_id}")
            if row["status"] not in from_:
                raise BadInput(
                    f"step test {campaign_id} is {row['status']}; cannot move it to {to}"
                )
            sets = ", ".join(f"{k} = ?" for k in ("status", *cols))
            c.execute(
                f"UPDATE steptests SET {sets} WHERE id = ?", (to, *cols.values(), campaign_id)
            )
            self.audit(
                c,
                user=user,
                kind=kind,
                plant=row["plant"],
                subject=f"steptest:{campaign_id}",
                what={"from": row["status"], "to": to, **_jsonable(cols)},
                why=why,
            )
            return True

    def start_steptest(self, campaign_id: int, started_at: datetime, *, actor: str) -> bool:
        """The runtime starts an approved campaign at a plant-clock time."""
        try:
            return self.move_steptest(
                campaign_id,
                user=actor,
                from_=("approved",),
                to="running",
                kind="steptest_start",
                why="",
                started_at=iso(started_at),
            )
        except BadInput:
            return False

    def finish_steptest(
        self, campaign_id: int, status: str, finished_at: datetime | None, *, actor: str, why: str
    ) -> bool:
        """The runtime ends a running campaign (done or failed)."""
        try:
            return self.move_steptest(
                campaign_id,
                user=actor,
                from_=("running",),
                to=status,
                kind=f"steptest_{status}",
                why=why,
                finished_at=iso(finished_at) if finished_at else None,
            )
        except BadInput:
            return False


def _jsonable(cols: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cols.items() if isinstance(v, str | int | float) or v is None}
