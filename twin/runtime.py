"""`twin serve`: the process that runs beside a plant.

Ingest from the plant's Source into the historian; every control interval, counted on the
plant's own sample clock, a proposal from the active twin, stored with its trajectories; in
supervised mode, approvals are picked up, guarded against the live plant and written through
the Sink, then read back; advisory mode never writes; auto mode approves its own proposals
(only where the spec allows it). Approved step-test campaigns run here too, every move guarded.

Restart safety: before a value goes to the plant, a write *intent* is committed together with
marking the approval as taken, so a crash can never make the same approval be written twice;
on restart every intent without an outcome is reconciled by reading the live value back,
and is never re-sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np

from twin import api
from twin.errors import BadInput, ConnectionLost, ConnectorError, TwinError
from twin.guard import GuardDecision, check_write
from twin.paths import Home
from twin.sample import Quality, Sample
from twin.spec import PlantSpec
from twin.store import ProposalRecord, Store, inserted_id, iso, now_utc

log = logging.getLogger(__name__)

Mode = Literal["advisory", "supervised", "auto"]
MODES: tuple[str, ...] = ("advisory", "supervised", "auto")
ACTOR = "runtime"


@dataclass(frozen=True)
class RuntimeConfig:
    """How `twin serve` runs."""

    mode: Mode = "supervised"
    """advisory: proposals only; supervised: approved proposals are written; auto: self-approved."""
    source: Literal["opcua", "modbus"] = "opcua"
    """Which of the spec's sources to read from and write to."""
    steps: int | None = None
    """Stop after this many control intervals (plant clock); None runs until stopped."""
    poll_s: float = 0.2
    """How often (wall clock) approvals, aborts and expiries are picked up."""
    heartbeat_s: float = 1.0
    """How often (wall clock) the status row in the state store is refreshed."""
    flush_interval_s: float = 1.0
    """Historian buffer flush interval."""
    reconnect_s: float = 2.0
    """Wait between attempts to reach a plant that is down at start."""
    readback_rel_tol: float = 1e-5
    """Relative tolerance when reconciling an interrupted write with the live value (float32)."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise BadInput(f"--mode {self.mode!r}: use one of {', '.join(MODES)}")
        if self.source not in ("opcua", "modbus"):
            raise BadInput(f"--source {self.source!r}: use opcua or modbus")
        if self.steps is not None and self.steps < 1:
            raise BadInput(f"--steps {self.steps}: must be at least 1")


# ---- the plant clock -------------------------------------------------------------------


class PlantClock:
    """The plant's time, read from sample timestamps, running on between samples.

    Between samples the clock advances at the rate the plant's timestamps have been advancing
    against the wall clock (1 for a real plant, 20 for a simulator at --speed 20; never below
    1, so that a silent plant ages its data at least as fast as real time). A timestamp that
    goes back (a restarted simulator) resets it. Until the rate is `measured` (samples spanning
    1 s of wall time) the clock is only a lower bound: an accelerated plant that fell silent then
    would age its data at wall speed, many times slower than on its own clock, so the runtime
    neither proposes nor writes on an unmeasured clock.
    """

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self.last_ts: datetime | None = None
        self._last_mono = 0.0
        self._points: deque[tuple[float, datetime]] = deque()
        self.rate = 1.0
        self.measured = False

    def observe(self, ts: datetime, mono: float | None = None) -> None:
        mono = time.monotonic() if mono is None else mono
        if self.last_ts is not None and ts <= self.last_ts:
            return
        self.last_ts, self._last_mono = ts, mono
        self._points.append((mono, ts))
        if len(self._points) == 1:
            return
        while len(self._points) > 2 and mono - self._points[0][0] > self.window_s:
            self._points.popleft()
        m0, t0 = self._points[0]
        if mono - m0 >= 1.0:
            self.rate = max(1.0, (ts - t0).total_seconds() / (mono - m0))
            self.measured = True

    def mark_gap(self) -> None:
        """An outage: re-estimate the rate from fresh points once data flows again."""
        self._points.clear()

    def reset(self) -> None:
        self.last_ts = None
        self._points.clear()
        self.rate = 1.0
        self.measured = False

    def now(self, mono: float | None = None) -> datetime | None:
        if self.last_ts is None:
            return None
        mono = time.monotonic() if mono is None else mono
        return self.last_ts + timedelta(seconds=(mono - self._last_mono) * self.rate)


# ---- the twin that proposes ------------------------------------------------------------

# A proposer turns (window rows by sample instant, data_ts, now, operator limits) into a
# planner Proposal or NoProposal. The default wraps the active twin and the planner.
Proposer = Callable[[np.ndarray, datetime, datetime, Mapping[str, tuple[float, float]]], Any]


class TwinProposer:
    """The active model version and a planning controller; reloads when a version is promoted."""

    def __init__(self, home: Home, spec: PlantSpec) -> None:
        self.home, self.spec = home, spec
        self.version: str | None = None
        self.window = 1
        self.tag_names: list[str] = spec.tag_names
        self._controller: Any = None

    def refresh(self) -> None:
        from twin import registry  # the model stack (torch) loads only when serving proposals
        from twin.plan.controller import PlanningController

        active = registry.active_version(self.home, self.spec)
        if active is None or active == self.version:
            if active is None:
                self.version, self._controller = None, None
            return
        model = registry.load_version(self.home, self.spec, active)
        model.eval()
        self._controller = PlanningController(model, self.spec)
        self.version = active
        self.window = int(model.window)
        self.tag_names = list(model.tag_names)
        log.info("serving with model version %s", active)

    def reset(self) -> None:
        """Forget the warm start and disturbance estimate (the plant restarted)."""
        if self._controller is not None:
            self._controller.reset()

    def __call__(
        self,
        window: np.ndarray,
        data_ts: datetime,
        now: datetime,
        operating: Mapping[str, tuple[float, float]],
    ) -> Any:
        from twin.plan.proposal import NoProposal

        if self._controller is None:
            return NoProposal(self.spec.name, "no_model",
                              f"no active twin for plant {self.spec.name!r} (train one with `twin train`)", data_ts)  # fmt: skip
        return self._controller.decide(window, data_ts, now, operating=dict(operating))


# ---- connections -----------------------------------------------------------------------


def open_connections(spec: PlantSpec, home: Home, kind: str) -> tuple[Any, Any]:
    """The Source and Sink of the chosen protocol (not yet entered)."""
    if kind == "opcua":
        from connectors.opcua import OpcuaSink, OpcuaSource
        from connectors.opcua_client import OpcuaConnection

        if spec.source.opcua is None:
            raise BadInput(
                f"plant {spec.name!r} has no [source.opcua] section (try --source modbus)"
            )
        conn = OpcuaConnection.from_spec(spec, home)
        return OpcuaSource(spec, conn), OpcuaSink(spec, conn)
    from connectors.modbus import ModbusConnection, ModbusSink, ModbusSource

    if spec.source.modbus is None:
        raise BadInput(f"plant {spec.name!r} has no [source.modbus] section (try --source opcua)")
    mconn = ModbusConnection.from_spec(spec)
    return ModbusSource(spec, mconn), ModbusSink(spec, mconn)


# ---- the runtime -----------------------------------------------------------------------


@dataclass
class RunSummary:
    """What a `twin serve` run did."""

    steps: int = 0
    proposals: int = 0
    no_proposals: int = 0
    writes: int = 0
    refused: int = 0
    alarms: int = 0
    reasons: list[str] = field(default_factory=list)


class Runtime:
    """One plant's serve loop. `await Runtime(...).run()`; `stop()` ends it cleanly."""

    def __init__(
        self,
        spec: PlantSpec,
        home: Home,
        config: RuntimeConfig,
        *,
        store: Store | None = None,
        proposer: Proposer | None = None,
        connections: tuple[Any, Any] | None = None,
    ) -> None:
        if config.mode == "auto" and not spec.safety.allow_auto:
            raise BadInput(
                f"plant {spec.name!r}: --mode auto is refused: its spec does not set "
                "[safety] allow_auto = true (safety rule 1: nothing is written without an approval)"
            )
        if config.mode != "advisory" and not spec.mvs:
            raise BadInput(f"plant {spec.name!r} has no MV tags: only --mode advisory makes sense")
        self.spec, self.home, self.config = spec, home, config
        self.store = store or Store.open(home)
        self._own_store = store is None
        self.proposer = proposer if proposer is not None else TwinProposer(home, spec)
        self._connections = connections
        self.clock = PlantClock()
        self.live: dict[str, Sample] = {}
        self._held: dict[str, float] = {}
        self._rows: dict[int, np.ndarray] = {}
        self._tag_col = {n: i for i, n in enumerate(spec.tag_names)}
        self._last_tick: int | None = None
        self._tick_due = asyncio.Event()
        self._stop = asyncio.Event()
        self._sink: Any = None
        self._source: Any = None
        self._sink_lock = asyncio.Lock()
        self._apply_lock = asyncio.Lock()
        self.summary = RunSummary()
        self.alarms: deque[dict[str, Any]] = deque(maxlen=20)
        self.last_proposal_id: int | None = None
        self.last_reason = "starting"
        self.ood_ratio: float | None = None
        self.model_version: str | None = None
        self._reconcile_pending = True
        self._first_live_ts: datetime | None = None

    # ---- lifecycle ---------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> RunSummary:
        from twin.historian import Historian

        spec, cfg = self.spec, self.config
        source, sink = self._connections or open_connections(spec, self.home, cfg.source)
        self._source = source
        self.store.log_event(user=ACTOR, kind="runtime_start", plant=spec.name,
                             what={"mode": cfg.mode, "source": cfg.source, "pid": os.getpid(),
                                   "steps": cfg.steps})  # fmt: skip
        self.store.put_status(spec.name, mode=cfg.mode, source=cfg.source, pid=os.getpid(),
                              connected=False, heartbeat_at=now_utc(), steps_done=0, alarms=[],
                              last_reason="starting")  # fmt: skip
        self._expire_all_pending(
            "made before this runtime started; its plant state is not vouched for"
        )
        if hasattr(self.proposer, "refresh"):
            try:  # load the twin before the plant clock starts counting
                await asyncio.to_thread(self.proposer.refresh)
                self.model_version = getattr(self.proposer, "version", None)
            except Exception as exc:  # a broken checkpoint must not stop ingest; reported per step
                log.warning("cannot load the active twin yet: %s", exc)
        historian = Historian(
            self.home.historian_dir(spec.name), flush_interval_s=cfg.flush_interval_s
        )
        self._historian = historian
        try:
            async with contextlib.AsyncExitStack() as stack:
                stack.push_async_callback(self._close_sink)
                self._sink_obj = sink
                tasks: list[asyncio.Task[Any]] = [
                    asyncio.create_task(self._ingest(source), name="ingest"),
                    asyncio.create_task(self._control(), name="control"),
                    asyncio.create_task(self._poll(), name="poll"),
                    asyncio.create_task(self._heartbeat(), name="heartbeat"),
                ]
                stopper: asyncio.Task[Any] = asyncio.create_task(self._stop.wait(), name="stop")
                done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
                for t in tasks:
                    t.cancel()
                stopper.cancel()
                # Bounded: a connection that hangs while closing must not keep the process alive.
                _, stuck = await asyncio.wait(tasks, timeout=10.0)
                if stuck:
                    log.warning(
                        "did not stop cleanly within 10 s: %s", [t.get_name() for t in stuck]
                    )
                for t in done:
                    if t is not stopper and not t.cancelled() and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
        finally:
            historian.close()
            self._write_status(final=True)
            self.store.log_event(user=ACTOR, kind="runtime_stop", plant=spec.name,
                                 what={"steps": self.summary.steps, "proposals": self.summary.proposals,
                                       "writes": self.summary.writes, "refused": self.summary.refused})  # fmt: skip
            if self._own_store:
                self.store.close()
        return self.summary

    # ---- ingest ------------------------------------------------------------------------

    async def _ingest(self, source: Any) -> None:
        """Source -> historian and live values; never gives up on a plant that is down."""
        while not self._stop.is_set():
            try:
                async with source:
                    log.info("connected to %s over %s", self.spec.name, self.config.source)
                    async for batch in source.batches():
                        self._on_batch(batch)
            except ConnectionLost as exc:
                self.last_reason = f"plant unreachable: {exc}"
                log.warning("%s; retrying in %.0f s", exc, self.config.reconnect_s)
                await asyncio.sleep(self.config.reconnect_s)
            except BadInput:
                raise  # a wrong node id or register: the user must fix the spec
            except Exception as exc:  # whatever else the connection does, the runtime stays up
                self.last_reason = f"plant connection failed: {type(exc).__name__}: {exc}"
                log.exception(
                    "plant connection failed; retrying in %.0f s", self.config.reconnect_s
                )
                await asyncio.sleep(self.config.reconnect_s)

    def _on_batch(self, batch: list[Sample]) -> None:
        if not batch:
            return
        self._historian.append(batch)
        real = [s for s in batch if s.quality != Quality.GAP]
        gaps = {s.tag for s in batch if s.quality == Quality.GAP}
        if gaps:
            self.clock.mark_gap()
        for tag in gaps:
            # An outage: stop carrying the tag's value forward; its last sample ages into staleness.
            self._held.pop(tag, None)
        if not real:
            return
        newest = max(s.ts for s in real)
        period = self.spec.plant.sample_period_s
        if self.clock.last_ts is not None and newest < self.clock.last_ts - timedelta(
            seconds=2 * period
        ):
            # The plant's clock went back (a restarted simulator): what we hold is another timeline.
            log.warning(
                "plant clock went back from %s to %s: resetting live state",
                self.clock.last_ts,
                newest,
            )
            self.store.log_event(user=ACTOR, kind="clock_reset", plant=self.spec.name,
                                 what={"from": iso(self.clock.last_ts), "to": iso(newest)})  # fmt: skip
            self.clock.reset()
            self._expire_all_pending("the plant clock went back (plant restarted)")
            if hasattr(self.proposer, "reset"):
                self.proposer.reset()
            self.live.clear()
            self._held.clear()
            self._rows.clear()
            self._last_tick = None
        by_instant: dict[int, list[Sample]] = {}
        for s in real:
            by_instant.setdefault(round(s.ts.timestamp() / period), []).append(s)
        for k in sorted(by_instant):
            self._on_instant(k, by_instant[k])
        self.clock.observe(newest)
        if self._first_live_ts is None:
            self._first_live_ts = newest
        keep = (
            max(4 * getattr(self.proposer, "window", 1), 64)
            + 2 * self.spec.plant.samples_per_interval
        )
        if len(self._rows) > keep:
            for k in sorted(self._rows)[: len(self._rows) - keep]:
                del self._rows[k]
        tick = math.floor(newest.timestamp() / self.spec.plant.control_interval_s + 1e-9)
        if self._last_tick is None:
            self._last_tick = tick  # the first interval starts with the first data we see
        elif tick > self._last_tick:
            self._last_tick = tick
            self._tick_due.set()

    def _on_instant(self, k: int, samples: list[Sample]) -> None:
        row = self._rows.get(k)
        if row is None:
            row = self._rows[k] = np.full(len(self._tag_col), np.nan)
        seen = set()
        for s in samples:
            col = self._tag_col.get(s.tag)
            if col is None:
                continue
            seen.add(s.tag)
            row[col] = s.value if s.usable else np.nan
            if s.usable:
                prev = self.live.get(s.tag)
                if prev is None or s.ts >= prev.ts:
                    self.live[s.tag] = s
                self._held[s.tag] = s.value
            else:
                self._held.pop(s.tag, None)  # a bad value is not held over
        # OPC-UA reports by exception: a tag not reported at this instant still holds its value.
        ts = max(s.ts for s in samples)
        for tag, value in self._held.items():
            if tag in seen:
                continue
            col = self._tag_col[tag]
            if math.isnan(row[col]):
                row[col] = value
            prev = self.live.get(tag)
            if prev is not None and prev.ts < ts:
                self.live[tag] = Sample(ts, tag, value, Quality.GOOD)

    # ---- control intervals -------------------------------------------------------------

    async def _control(self) -> None:
        while not self._stop.is_set():
            await self._tick_due.wait()
            self._tick_due.clear()
            await self._control_step()
            self.summary.steps += 1
            self._write_status()
            if self.config.steps is not None and self.summary.steps >= self.config.steps:
                log.info("%d control intervals done: stopping", self.summary.steps)
                self.stop()
                return

    async def _control_step(self) -> None:
        spec = self.spec
        running = self.store.list_steptests(spec.name, status="running")
        if running:
            self._no_proposal("steptest", f"step test {running[0].id} is running")
            return
        if hasattr(self.proposer, "refresh"):
            try:
                await asyncio.to_thread(self.proposer.refresh)
            except Exception as exc:  # a broken checkpoint: keep serving data, make no proposal
                log.exception("cannot load the active twin")
                self._no_proposal("no_model", f"cannot load the active twin: {exc}")
                return
            self.model_version = getattr(self.proposer, "version", None)
        now = self.clock.now()  # after loading a model, which may take a while of plant time
        data_ts = max((s.ts for s in self.live.values()), default=None)
        if now is None or data_ts is None:
            self._no_proposal("no_data", "no live data yet")
            return
        if not self.clock.measured:
            # Proposing now would invite an approval that the guard (and the staleness watch)
            # could only time at wall speed if the plant went silent: measure the rate first.
            self._no_proposal("no_data", "still measuring how fast the plant's clock runs")
            return
        age = (now - data_ts).total_seconds()
        if age > spec.safety.max_staleness_s:
            self._no_proposal(
                "stale",
                f"newest data is {age:.0f} s old (max_staleness_s={spec.safety.max_staleness_s:g})",
            )
            return
        window = self._window(data_ts)
        operating = api.operator_limits(self.store, spec)
        try:
            result = await asyncio.to_thread(self.proposer, window, data_ts, now, operating)
        except Exception as exc:  # the plant side must keep running whatever the planner does
            log.exception("planning failed")
            self._no_proposal("error", f"planning failed: {type(exc).__name__}: {exc}")
            return
        if not hasattr(result, "proposed"):
            self.ood_ratio = math.inf if getattr(result, "code", "") == "ood" else self.ood_ratio
            self._no_proposal(
                getattr(result, "code", "none"), getattr(result, "reason", str(result))
            )
            return
        # Planning takes a while of plant time: a plant that went silent meanwhile gets nothing.
        newest = max((s.ts for s in self.live.values()), default=data_ts)
        after = self.clock.now() or now
        if (after - newest).total_seconds() > spec.safety.max_staleness_s:
            self._no_proposal("stale", "the data went stale while planning")
            return
        await self._store_proposal(result)

    def _window(self, data_ts: datetime) -> np.ndarray:
        """The last W sample instants up to data_ts as rows in the model's tag order (NaN: missing)."""
        period = self.spec.plant.sample_period_s
        w = max(1, int(getattr(self.proposer, "window", 1)))
        end = round(data_ts.timestamp() / period)
        names = list(getattr(self.proposer, "tag_names", self.spec.tag_names))
        cols = [self._tag_col[n] for n in names]
        out = np.full((w, len(names)), np.nan)
        for i, k in enumerate(range(end - w + 1, end + 1)):
            row = self._rows.get(k)
            if row is not None:
                out[i] = row[cols]
        return out

    def _no_proposal(self, code: str, reason: str) -> None:
        self.summary.no_proposals += 1
        self.last_reason = f"no proposal ({code}): {reason}"
        if not self.summary.reasons or self.summary.reasons[-1] != code:
            self.summary.reasons.append(code)
        log.info(self.last_reason)

    async def _store_proposal(self, proposal: Any) -> None:
        spec, mode = self.spec, self.config.mode
        payload = proposal.to_dict() if hasattr(proposal, "to_dict") else dict(vars(proposal))
        payload["spec_path"] = str(spec.path) if spec.path is not None else spec.name
        payload["mv_live"] = {
            t.name: self.live[t.name].value for t in spec.mvs if t.name in self.live
        }
        payload.setdefault("summary", ", ".join(f"{k} {payload['mv_live'].get(k, float('nan')):.4g} -> {v:.4g}"
                                                for k, v in proposal.proposed.items()))  # fmt: skip
        pid = self.store.add_proposal(
            plant=spec.name, mv_values=dict(proposal.proposed), payload=payload,
            data_ts=proposal.data_ts, expires_at=proposal.expires_at,
            model_version=str(proposal.model_version), mode=mode,
            status="advisory" if mode == "advisory" else "pending", actor=ACTOR,
        )  # fmt: skip
        self.summary.proposals += 1
        self.last_proposal_id = pid
        self.ood_ratio = float(getattr(proposal, "ood_score", math.nan))
        self.model_version = str(proposal.model_version)
        self.last_reason = f"proposal {pid} made"
        if mode == "auto":
            api.auto_approve(self.store, pid)
            await self._apply_approvals()

    # ---- approvals -> guarded writes ---------------------------------------------------

    async def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                if self._reconcile_pending:
                    self._reconcile()
                await self._apply_approvals()
                await self._steptests()
                self._expire()
            except ConnectorError as exc:  # a write that failed is recorded; keep serving
                log.warning("write path: %s", exc)
            await asyncio.sleep(self.config.poll_s)

    def _now(self) -> datetime | None:
        return self.clock.now()

    async def _apply_approvals(self) -> None:
        # One pass at a time: the poll loop and an auto-mode control step may both get here.
        async with self._apply_lock:
            for decision, proposal in self.store.unapplied_approvals(self.spec.name):
                await self._apply(decision, proposal)

    async def _apply(self, decision: Any, proposal: ProposalRecord) -> None:
        spec = self.spec
        values = decision.mv_values or {}
        reasons: list[str] = []
        if self.config.mode == "advisory":
            reasons.append("the runtime is in advisory mode: nothing is ever written")
        now = self._now()
        if self.config.mode != "advisory" and (
            self._reconcile_pending or now is None or not self.clock.measured
        ):
            return  # decided once the plant clock is known and interrupted writes are settled
        if self.store.list_steptests(spec.name, status="running"):
            reasons.append("a step test is running")
        if now is None:
            reasons.append("no live data from the plant")
        elif proposal.data_ts > now:
            reasons.append("the proposal was made on another plant timeline (the plant restarted)")
        if reasons or now is None:
            decision_g = GuardDecision({}, tuple(reasons))
        else:
            decision_g = check_write(
                spec, approved=values, proposed=proposal.mv_values, live=self.live, now=now,
                expires_at=proposal.expires_at, operator_limits=self.store.operator_limits(spec.name),
                modification=values if decision.kind == "modify" else None,
                ood_score=self.ood_ratio, ood_threshold=1.0 if self.ood_ratio is not None else None,
            )  # fmt: skip
        if not decision_g.allowed:
            self._refuse(decision.id, proposal, values, decision_g.reasons)
            return
        write_ids = self._record_intent(decision.id, proposal, decision_g.values)
        outcome = await self._write(write_ids, decision_g.values, proposal_id=proposal.id)
        with self.store.write() as c:
            self.store.mark_applied(c, decision.id, outcome)
            self.store.set_proposal_status(proposal.id, "written" if outcome == "written" else "failed",
                                           actor=ACTOR, why=outcome, c=c)  # fmt: skip

    def _refuse(self, decision_id: int, proposal: ProposalRecord, values: Mapping[str, float],
                reasons: tuple[str, ...]) -> None:  # fmt: skip
        at = iso(now_utc())
        why = "; ".join(reasons)
        with self.store.write() as c:
            for tag, v in values.items():
                c.execute(
                    "INSERT INTO writes (plant, proposal_id, decision_id, tag, requested, status, reason, at, completed_at) "
                    "VALUES (?, ?, ?, ?, ?, 'refused', ?, ?, ?)",
                    (self.spec.name, proposal.id, decision_id, tag, _num(v), why, at, at),
                )
            self.store.mark_applied(c, decision_id, "refused")
            self.store.set_proposal_status(proposal.id, "refused", actor=ACTOR, why=why, c=c)
            self.store.audit(c, user=ACTOR, kind="write_refused", plant=self.spec.name,
                             subject=f"proposal:{proposal.id}", what={"values": dict(values),
                             "decision_id": decision_id, "reasons": list(reasons)}, why=why)  # fmt: skip
        self.summary.refused += 1
        log.warning("write for proposal %d refused: %s", proposal.id, why)

    def _record_intent(
        self, decision_id: int | None, proposal: ProposalRecord | None, values: Mapping[str, float],
        campaign: tuple[int, int] | None = None,
    ) -> dict[str, int]:  # fmt: skip
        """Commit the intent to write (and, for an approval, that it is taken) before any I/O."""
        ids: dict[str, int] = {}
        cid, step = campaign if campaign else (None, None)
        with self.store.write() as c:
            for tag, v in values.items():
                cur = c.execute(
                    "INSERT INTO writes (plant, proposal_id, decision_id, campaign_id, step, tag, requested, status, at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, 'intent', ?)",
                    (
                        self.spec.name,
                        proposal.id if proposal else None,
                        decision_id,
                        cid,
                        step,
                        tag,
                        v,
                        iso(now_utc()),
                    ),
                )
                ids[tag] = inserted_id(cur)
            if decision_id is not None:
                taken = c.execute(
                    "UPDATE decisions SET applied = 'writing' WHERE id = ? AND applied IS NULL",
                    (decision_id,),
                ).rowcount
                if not taken:  # another runtime took it: never write an approval twice
                    raise TwinError(f"decision {decision_id} was already taken")
            if cid is not None and step is not None:
                c.execute("UPDATE steptests SET next_step = ? WHERE id = ?", (step + 1, cid))
            live = {t: self.live[t].value for t in values if t in self.live}
            self.store.audit(c, user=ACTOR, kind="write_intent", plant=self.spec.name,
                             subject=f"proposal:{proposal.id}" if proposal else f"steptest:{cid}",
                             what={"values": dict(values), "live": live, "decision_id": decision_id,
                                   "campaign_id": cid, "step": step}, why="guard passed")  # fmt: skip
        return ids

    async def _ensure_sink(self) -> Any:
        if self._sink is None:
            await self._sink_obj.__aenter__()
            self._sink = self._sink_obj
        return self._sink

    async def _close_sink(self) -> None:
        sink, self._sink = self._sink, None
        if sink is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sink.__aexit__(None, None, None), timeout=5.0)

    async def _write(self, write_ids: Mapping[str, int], values: Mapping[str, float], *, proposal_id: int | None = None,
                     campaign_id: int | None = None) -> str:  # fmt: skip
        """Write tag by tag (so a partial failure is known exactly), read back, record, alarm."""
        from connectors.errors import ReadBackMismatch

        outcome = "written"
        subject = (
            f"proposal:{proposal_id}" if proposal_id is not None else f"steptest:{campaign_id}"
        )
        async with self._sink_lock:
            for tag, value in values.items():
                wid = write_ids[tag]
                try:
                    sink = await self._ensure_sink()
                    (res,) = await sink.write({tag: value})
                    self._complete(wid, "done", res.written, res.read_back, None)
                    self.summary.writes += 1
                    self.store.log_event(user=ACTOR, kind="write", plant=self.spec.name, subject=subject,
                                         what={"tag": tag, "requested": res.requested, "written": res.written,
                                               "read_back": res.read_back, "write_id": wid})  # fmt: skip
                except ReadBackMismatch as exc:
                    r = exc.result
                    self._complete(wid, "mismatch", r.written, r.read_back, str(exc))
                    self._alarm("readback_mismatch", tag, str(exc), subject)
                    outcome = "failed"
                except (TimeoutError, ConnectorError, OSError) as exc:
                    if isinstance(exc, ConnectionLost | OSError | asyncio.TimeoutError):
                        await self._close_sink()  # reopen on the next write
                    self._complete(wid, "failed", None, None, str(exc))
                    self._alarm("write_failed", tag, str(exc), subject)
                    outcome = "failed"
                    # The remaining tags of this write are not attempted: all or as little as possible.
                    for later in list(values)[list(values).index(tag) + 1 :]:
                        self._complete(
                            write_ids[later], "failed", None, None, f"not attempted: {tag} failed"
                        )
                    break
        return outcome

    def _complete(
        self,
        wid: int,
        status: str,
        written: float | None,
        read_back: float | None,
        reason: str | None,
    ) -> None:
        with self.store.write() as c:
            c.execute("UPDATE writes SET status = ?, written = ?, read_back = ?, reason = ?, completed_at = ? WHERE id = ?",
                      (status, _num(written), _num(read_back), reason, iso(now_utc()), wid))  # fmt: skip

    def _alarm(self, kind: str, tag: str | None, message: str, subject: str | None = None) -> None:
        alarm = {"at": iso(now_utc()), "kind": kind, "tag": tag, "message": message}
        self.alarms.append(alarm)
        self.summary.alarms += 1
        log.error("ALARM %s: %s", kind, message)
        self.store.log_event(
            user=ACTOR, kind="alarm", plant=self.spec.name, subject=subject, what=alarm, why=message
        )
        self._write_status()

    def _reconcile(self) -> None:
        """Settle writes a crash interrupted: compare each with the live value; never re-send."""
        intents = self.store.open_write_intents(self.spec.name)
        if not intents:
            self._reconcile_pending = False
            return
        # Wait for live values the plant produced after this process started.
        if self._first_live_ts is None or self.clock.last_ts is None:
            return
        if (
            self.clock.last_ts - self._first_live_ts
        ).total_seconds() < 2 * self.spec.plant.sample_period_s:
            return
        for w in intents:
            s = self.live.get(w.tag)
            if s is None:
                return
        with self.store.write() as c:
            for w in intents:
                s = self.live[w.tag]
                applied = w.requested is not None and math.isclose(
                    s.value, w.requested, rel_tol=self.config.readback_rel_tol, abs_tol=1e-9)  # fmt: skip
                status = "done" if applied else "failed"
                reason = (f"interrupted by a restart; the plant holds {s.value:g}: "
                          + ("the write had gone through" if applied else "not applied, and not re-sent"))  # fmt: skip
                c.execute("UPDATE writes SET status = ?, read_back = ?, reason = ?, completed_at = ? WHERE id = ?",
                          (status, s.value, reason, iso(now_utc()), w.id))  # fmt: skip
                if w.decision_id is not None:
                    self.store.mark_applied(c, w.decision_id, "written" if applied else "failed")
                if w.proposal_id is not None:
                    c.execute("UPDATE proposals SET status = ?, status_reason = ? WHERE id = ? AND status IN ('approved', 'modified')",
                              ("written" if applied else "failed", reason, w.proposal_id))  # fmt: skip
                self.store.audit(c, user=ACTOR, kind="write_reconciled", plant=self.spec.name,
                                 subject=f"write:{w.id}", what={"tag": w.tag, "requested": w.requested,
                                 "live": s.value, "applied": applied}, why=reason)  # fmt: skip
        self._reconcile_pending = False

    def _expire_all_pending(self, why: str) -> None:
        for p in self.store.list_proposals(self.spec.name, status="pending"):
            self.store.set_proposal_status(p.id, "expired", actor=ACTOR, only_if="pending", why=why)

    def _expire(self) -> None:
        now = self._now()
        p = self.store.pending_proposal(self.spec.name)
        if p is not None and now is not None and now > p.expires_at:
            self.store.set_proposal_status(p.id, "expired", actor=ACTOR, only_if="pending",
                                           why=f"not decided before {iso(p.expires_at)} (plant clock)")  # fmt: skip

    # ---- step tests --------------------------------------------------------------------

    async def _steptests(self) -> None:
        if self.config.mode == "advisory":
            return  # advisory writes nothing, step tests included; they wait for a writing mode
        spec = self.spec
        running = self.store.list_steptests(spec.name, status="running")
        if not running:
            approved = self.store.list_steptests(spec.name, status="approved")
            now = self._now()
            if not approved or now is None or self._reconcile_pending or not self.clock.measured:
                return
            cid = approved[0].id
            with self.store.write() as c:
                c.execute("UPDATE steptests SET status = 'running', started_at = ? WHERE id = ? AND status = 'approved'",
                          (iso(now), cid))  # fmt: skip
                self.store.audit(c, user=ACTOR, kind="steptest_start", plant=spec.name,
                                 subject=f"steptest:{cid}", what={"started_at": iso(now)})  # fmt: skip
            running = [self.store.get_steptest(cid)]
        await self._steptest_step(running[0])

    async def _steptest_step(self, camp: Any) -> None:
        spec = self.spec
        now = self._now()
        moves = camp.design["moves"]
        if now is None or camp.started_at is None:
            return
        if camp.next_step >= len(moves):
            self._finish_campaign(camp, "done", "all moves written")
            return
        move = moves[camp.next_step]
        if now < camp.started_at + timedelta(seconds=float(move["at_s"])):
            return
        values = {k: float(v) for k, v in move["values"].items()}
        g = check_write(spec, approved=values, proposed=values, live=self.live, now=now, expires_at=None,
                        operator_limits=self.store.operator_limits(spec.name))  # fmt: skip
        if not g.allowed:
            why = "; ".join(g.reasons)
            self.store.log_event(user=ACTOR, kind="write_refused", plant=spec.name, subject=f"steptest:{camp.id}",
                                 what={"step": camp.next_step, "values": values, "reasons": list(g.reasons)}, why=why)  # fmt: skip
            self._finish_campaign(
                camp, "failed", f"move {camp.next_step} refused by the guard: {why}"
            )
            return
        ids = self._record_intent(None, None, g.values, campaign=(camp.id, camp.next_step))
        outcome = await self._write(ids, g.values, campaign_id=camp.id)
        if outcome != "written":
            self._finish_campaign(camp, "failed", f"move {camp.next_step} failed to write")

    def _finish_campaign(self, camp: Any, status: str, why: str) -> None:
        now = self._now()
        with self.store.write() as c:
            n = c.execute("UPDATE steptests SET status = ?, finished_at = ? WHERE id = ? AND status = 'running'",
                          (status, iso(now) if now else None, camp.id)).rowcount  # fmt: skip
            if n:
                self.store.audit(c, user=ACTOR, kind=f"steptest_{status}", plant=self.spec.name,
                                 subject=f"steptest:{camp.id}", what={"steps": camp.next_step}, why=why)  # fmt: skip
        if n and camp.started_at is not None and now is not None:
            with contextlib.suppress(Exception):  # the annotation is a convenience for training
                self._historian.annotate(camp.started_at, now, "campaign", f"steptest {camp.id}",
                                         {"campaign_id": camp.id, "status": status})  # fmt: skip

    # ---- status ------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        while not self._stop.is_set():
            self._write_status()
            await asyncio.sleep(self.config.heartbeat_s)

    def _write_status(self, final: bool = False) -> None:
        now = self._now()
        newest = max((s.ts for s in self.live.values()), default=None)
        age = (now - newest).total_seconds() if now is not None and newest is not None else None
        connected = (
            bool(getattr(getattr(self._source, "status", None), "connected", False)) and not final
        )
        if age is not None and age > self.spec.safety.max_staleness_s:
            reason = f"data stale: newest sample {age:.0f} s old"
        else:
            reason = self.last_reason
        self.store.put_status(
            self.spec.name, heartbeat_at=now_utc(), connected=connected,
            last_sample_ts=self.clock.last_ts, last_sample_age_s=age, model_version=self.model_version,
            ood_score=self.ood_ratio, last_proposal_id=self.last_proposal_id,
            last_reason="stopped" if final else reason, steps_done=self.summary.steps,
            alarms=list(self.alarms), mode=self.config.mode, source=self.config.source, pid=os.getpid(),
        )  # fmt: skip


def _num(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def serve(spec: PlantSpec, home: Home, config: RuntimeConfig) -> RunSummary:
    """Run the serve loop until --steps are done or SIGINT/SIGTERM."""
    runtime = Runtime(spec, home, config)

    async def main() -> RunSummary:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, runtime.stop)
        return await runtime.run()

    return asyncio.run(main())
