"""The runtime's status row (what the control room shows about it) and its start/stop record."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from twin.serve.config import ACTOR
from twin.state import now_utc

if TYPE_CHECKING:
    from twin.serve.runtime import Runtime


class StatusReporter:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def started(self) -> None:
        rt = self.runtime
        cfg = rt.config
        what = {"mode": cfg.mode, "source": cfg.source, "pid": os.getpid(), "steps": cfg.steps}
        rt.store.log_event(user=ACTOR, kind="runtime_start", plant=rt.spec.name, what=what)
        rt.store.put_status(
            rt.spec.name,
            mode=cfg.mode,
            source=cfg.source,
            pid=os.getpid(),
            connected=False,
            heartbeat_at=now_utc(),
            steps_done=0,
            alarms=[],
            last_reason="starting",
        )

    def stopped(self) -> None:
        rt = self.runtime
        self.write(final=True)
        s = rt.summary
        what = {
            "steps": s.steps,
            "proposals": s.proposals,
            "writes": s.writes,
            "refused": s.refused,
        }
        rt.store.log_event(user=ACTOR, kind="runtime_stop", plant=rt.spec.name, what=what)

    def write(self, final: bool = False) -> None:
        """The status row the control room shows (a heartbeat); `final` when stopping."""
        rt = self.runtime
        now = rt.live.clock.now()
        newest = rt.live.last_heard()
        age = (now - newest).total_seconds() if now is not None and newest is not None else None
        status = getattr(rt.source, "status", None)
        connected = bool(getattr(status, "connected", False)) and not final
        if age is not None and age > rt.spec.safety.max_staleness_s:
            reason = f"data stale: newest sample {age:.0f} s old"
        else:
            reason = rt.control.last_reason if rt.control else "starting"
        rt.summary.alarms = rt.alarms.raised
        rt.store.put_status(
            rt.spec.name,
            heartbeat_at=now_utc(),
            connected=connected,
            last_sample_ts=rt.live.clock.last_ts,
            last_sample_age_s=age,
            model_version=rt.proposer.version,
            ood_score=rt.control.ood_ratio if rt.control else None,
            last_proposal_id=rt.control.last_proposal_id if rt.control else None,
            last_reason="stopped" if final else reason,
            steps_done=rt.summary.steps,
            alarms=list(rt.alarms.recent),
            mode=rt.config.mode,
            source=rt.config.source,
            pid=os.getpid(),
        )
