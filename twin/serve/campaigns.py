"""Step-test campaigns on the live plant: each approved campaign's moves, at their plant-clock
times, every one through the guard and the write path like any approved move."""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from twin.serve.config import ACTOR
from twin.serve.live import LiveState
from twin.serve.writepath import WritePath
from twin.spec import PlantSpec
from twin.state import StepTestRecord, Store

log = logging.getLogger(__name__)


class Campaigns:
    def __init__(
        self, spec: PlantSpec, store: Store, live: LiveState, writes: WritePath, historian: Any
    ) -> None:
        self.spec, self.store, self.live, self.writes = spec, store, live, writes
        self.historian = historian

    def running(self) -> StepTestRecord | None:
        rows = self.store.list_steptests(self.spec.name, status="running")
        return rows[0] if rows else None

    async def step(self, now: datetime) -> None:
        """Start an approved campaign, or write the running one's next move when it is due."""
        camp = self.running()
        if camp is None:
            approved = self.store.list_steptests(self.spec.name, status="approved")
            if not approved or not self.store.start_steptest(approved[0].id, now, actor=ACTOR):
                return
            camp = self.store.get_steptest(approved[0].id)
        moves = camp.design["moves"]
        if camp.started_at is None:
            return
        if camp.next_step >= len(moves):
            self.finish(camp, "done", "all moves written", now)
            return
        move = moves[camp.next_step]
        if now < camp.started_at + timedelta(seconds=float(move["at_s"])):
            return
        values = {k: float(v) for k, v in move["values"].items()}
        g = self.writes.check_own_move(values, now)
        if not g.allowed:
            why = "; ".join(g.reasons)
            self.store.log_event(
                user=ACTOR,
                kind="write_refused",
                plant=self.spec.name,
                subject=f"steptest:{camp.id}",
                what={"step": camp.next_step, "values": values, "reasons": list(g.reasons)},
                why=why,
            )
            self.finish(camp, "failed", f"move {camp.next_step} refused by the guard: {why}", now)
            return
        started = self.writes.start(g.values, now, campaign=(camp.id, camp.next_step))
        outcome = await self.writes.write(started)
        if outcome != "written":
            self.finish(camp, "failed", f"move {camp.next_step} {outcome}", now)

    def finish(self, camp: StepTestRecord, status: str, why: str, now: datetime | None) -> None:
        ended = self.store.finish_steptest(camp.id, status, now, actor=ACTOR, why=why)
        if ended and camp.started_at is not None and now is not None:
            with contextlib.suppress(Exception):  # the annotation is a convenience for training
                self.historian.annotate(
                    camp.started_at,
                    now,
                    "campaign",
                    f"steptest {camp.id}",
                    {"campaign_id": camp.id, "status": status},
                )
