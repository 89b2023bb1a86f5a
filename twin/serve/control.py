"""One control interval: check the sensors, ask the twin for a proposal, and hand over to
the spec's fallback when the twin abstains (safety rules 3 and 8)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

from twin import api
from twin.guard import SensorFault
from twin.plan.proposal import NoProposal, Proposal
from twin.serve.alarms import Alarms
from twin.serve.campaigns import Campaigns
from twin.serve.clock import interval_of
from twin.serve.config import ACTOR, Mode, RunSummary
from twin.serve.fallback import ABSTAINS, Fallback
from twin.serve.live import LiveState
from twin.serve.proposer import Proposer
from twin.spec import PlantSpec
from twin.state import Store

log = logging.getLogger(__name__)


class ControlStep:
    """Makes the proposal of each control interval, or records why there is none."""

    def __init__(
        self,
        spec: PlantSpec,
        store: Store,
        live: LiveState,
        proposer: Proposer,
        fallback: Fallback,
        campaigns: Campaigns,
        alarms: Alarms,
        *,
        mode: Mode,
        summary: RunSummary,
        apply_approvals: Callable[[], Awaitable[None]],
    ) -> None:
        self.spec, self.store, self.live, self.proposer = spec, store, live, proposer
        self.fallback, self.alarms, self.mode, self.summary = fallback, alarms, mode, summary
        self._campaigns = campaigns
        self.apply_approvals = apply_approvals
        self.last_proposal_id: int | None = None
        self.last_reason = "starting"
        self.ood_ratio: float | None = None
        """The gate's verdict in the last decided interval (above 1: out of distribution);
        None when it gave none (no decision: a sensor fault, a plan refused for another reason)."""
        self._decided: int | None = None
        """The control interval (of the data's plant time) last decided on."""

    async def step(self) -> bool:
        """One control interval: check the sensors, then ask the twin for a proposal.

        False when there was no new interval to decide (a late step found its interval
        already decided); the caller then counts nothing."""
        spec = self.spec
        assert self._campaigns is not None
        running = self._campaigns.running()
        if running is not None:
            self._no_proposal("steptest", f"step test {running.id} is running")
            return True
        try:
            await asyncio.to_thread(self.proposer.refresh)
        except Exception as exc:  # a broken checkpoint: keep serving data, make no proposal
            log.exception("cannot load the active twin")
            self._no_proposal("no_model", f"cannot load the active twin: {exc}")
            return True
        try:  # the fallback is built with the twin, not in the middle of the incident
            await asyncio.to_thread(self.fallback.refresh, self.proposer.version)
        except Exception as exc:  # the twin still acts; the abstention path alarms again
            log.exception("cannot build the fallback")
            self.alarms.raise_("runtime_error", None, f"{self.fallback.controller}: {exc!r}")
        now = self.live.clock.now()  # after loading a model, which may take a while
        data_ts = self.live.newest_ts()
        if now is None or data_ts is None:
            self._no_proposal("no_data", "no live data yet")
            return True
        interval = interval_of(data_ts, spec.plant.control_interval_s)
        if interval == self._decided:
            # A step that started late (the machine was busy) already decided on this
            # interval's data; a second decision would be a second move in one interval.
            log.debug("control interval of %s already decided", data_ts.isoformat())
            return False
        if not self.live.clock.measured:
            # Proposing now would invite an approval that the guard could only time at wall
            # speed if the plant went silent: measure the plant clock's rate first.
            self._no_proposal("no_data", "still measuring how fast the plant's clock runs")
            return True
        self._decided = interval
        self.ood_ratio = None  # no verdict of the gate yet in this interval
        if self._sensor_faults(now):
            return True
        window = self.live.window(self.proposer.tag_names, int(self.proposer.window), data_ts)
        operating = api.operator_limits(self.store, spec)
        try:
            result = await asyncio.to_thread(self.proposer, window, data_ts, now, operating)
        except Exception as exc:  # the plant side must keep running whatever the planner does
            log.exception("planning failed")
            self._no_proposal("error", f"planning failed: {type(exc).__name__}: {exc}")
            return True
        if isinstance(result, NoProposal):
            code, reason = result.code, result.reason
            self.ood_ratio = float("inf") if code == "ood" else None
            self._no_proposal(code, reason)
            if code in ABSTAINS:
                await self._abstain(reason, data_ts, now, operating)
            else:
                self.alarms.condition("twin_abstains", {})
            return True
        self.alarms.condition("twin_abstains", {})
        # Planning takes a while of plant time: a plant that went silent meanwhile gets nothing.
        after = self.live.clock.now() or now
        if self._sensor_faults(after):
            return True
        await self._store_proposal(result)
        return True

    def annunciate_faults(self, now: datetime) -> list[SensorFault]:
        """The sensor faults at plant time `now`, each standing as an alarm while it lasts."""
        faults = self.live.faults(now)
        self.alarms.condition("sensor_fault", {f.tag: f.message for f in faults})
        return faults

    def _sensor_faults(self, now: datetime) -> bool:
        faults = self.annunciate_faults(now)
        if faults:
            self._no_proposal("sensor_fault", "; ".join(f.message for f in faults))
        return bool(faults)

    def _no_proposal(self, code: str, reason: str) -> None:
        self.summary.no_proposals += 1
        self.last_reason = f"no proposal ({code}): {reason}"
        if not self.summary.reasons or self.summary.reasons[-1] != code:
            self.summary.reasons.append(code)
        log.info(self.last_reason)

    async def _abstain(
        self,
        reason: str,
        data_ts: datetime,
        now: datetime,
        operating: Mapping[str, tuple[float, float]],
    ) -> None:
        """The twin declines: alarm once per episode and hand over to the spec's fallback."""
        fb = self.fallback
        self.alarms.condition(
            "twin_abstains", {None: f"the twin abstains ({reason}); {fb.controller} acts"}
        )
        self.last_reason = f"{fb.controller} acting: the twin abstains ({reason})"
        if fb.kind != "linear_mpc":
            return  # hold: the MVs stay; operator: the alarm is the hand-over
        try:
            await asyncio.to_thread(fb.refresh, self.proposer.version)
            window = self.live.window(self.proposer.tag_names, max(fb.window, 1), data_ts)
            result = await asyncio.to_thread(fb.propose, window, data_ts, now, operating)
        except Exception as exc:  # a fallback that fails leaves the MVs held, loudly
            log.exception("fallback failed")
            self.alarms.raise_("runtime_error", None, f"{fb.controller} failed: {exc!r}")
            return
        if not isinstance(result, Proposal):
            why = result.reason if isinstance(result, NoProposal) else "no proposal"
            self.last_reason = f"{fb.controller} makes no proposal either: {why}; MVs held"
            return
        await self._store_proposal(result, controller=fb.controller)

    async def _store_proposal(self, proposal: Proposal, controller: str = "twin") -> None:
        spec, mode = self.spec, self.mode
        payload = proposal.to_dict()
        payload["spec_path"] = str(spec.path) if spec.path is not None else spec.name
        live = {t.name: v for t in spec.mvs if (v := self.live.value(t.name)) is not None}
        payload["mv_live"] = live
        payload["controller"] = controller
        payload.setdefault(
            "summary",
            ", ".join(
                f"{k} {live.get(k, float('nan')):.4g} -> {v:.4g}"
                for k, v in proposal.proposed.items()
            ),
        )
        pid = self.store.add_proposal(
            plant=spec.name,
            mv_values=dict(proposal.proposed),
            payload=payload,
            data_ts=proposal.data_ts,
            expires_at=proposal.expires_at,
            model_version=str(proposal.model_version),
            mode=mode,
            status="advisory" if mode == "advisory" else "pending",
            actor=ACTOR,
        )
        self.summary.proposals += 1
        self.last_proposal_id = pid
        if controller == "twin":
            self.ood_ratio = float(proposal.ood_score)
        self.last_reason = f"proposal {pid} made ({controller})"
        if mode == "auto":
            api.auto_approve(self.store, pid)
            await self.apply_approvals()
