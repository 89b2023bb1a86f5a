"""`twin serve`: the process that runs beside a plant.

Ingest from the plant's Source into the historian (the same code as `twin ingest`, gaps
recorded); every control interval, counted on the plant's own sample clock, a proposal from the
active twin; in supervised mode approvals are picked up, guarded against the live plant and
written as one move through the write path; advisory mode never writes; auto mode approves its
own proposals (only where the spec allows it). Approved step-test campaigns run here too.

No proposal and no write while any tag's newest sample is missing, bad, out of range or too old
by its own timestamp (safety rule 3): an alarm names the tag instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Any

from twin.errors import BadInput, ConnectionLost
from twin.health.monitor import DriftMonitor
from twin.historian import Historian
from twin.ingest import ingest
from twin.paths import Home
from twin.sample import Sample
from twin.serve.alarms import Alarms
from twin.serve.approvals import Approvals
from twin.serve.campaigns import Campaigns
from twin.serve.config import ACTOR, RunSummary, RuntimeConfig
from twin.serve.connections import open_connections
from twin.serve.control import ControlStep
from twin.serve.fallback import Fallback
from twin.serve.live import LiveState
from twin.serve.lock import PlantLock
from twin.serve.proposer import Proposer, TwinProposer
from twin.serve.retrainer import Retrainer
from twin.serve.shadow import Shadow
from twin.serve.status import StatusReporter
from twin.serve.writepath import WritePath
from twin.spec import PlantSpec
from twin.state import Store, iso

log = logging.getLogger(__name__)


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
        self.proposer: Proposer = (
            proposer
            if proposer is not None
            else TwinProposer(home, spec, hard_operating=config.mode == "auto")
        )
        self._connections = connections
        self.live = LiveState(spec, keep_s=self._keep_s())
        self.alarms = Alarms(self.store, spec.name)
        self.drift = DriftMonitor(home, spec, self.store, self.alarms, self.live)
        self.shadow = Shadow(home, spec, self.store, self.alarms, self.live, config.shadow)
        self.retrainer = Retrainer(
            home, spec, self.store, self.alarms, self.shadow, config.retrain_on_drift
        )
        self.summary = RunSummary()
        self.status = StatusReporter(self)
        self._tick_due = asyncio.Event()
        self._stop = asyncio.Event()
        self._apply_lock = asyncio.Lock()
        self.source: Any = None
        """The plant connection being read (its status tells whether it is connected)."""
        self._writes: WritePath | None = None
        self._campaigns: Campaigns | None = None
        self._approvals: Approvals | None = None
        self.control: ControlStep | None = None

    def _keep_s(self) -> float:
        period = self.spec.plant.sample_period_s
        return period * (
            2 * max(int(self.proposer.window), 64) + self.spec.plant.samples_per_interval
        )

    # ---- lifecycle ---------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> RunSummary:
        spec, cfg = self.spec, self.config
        with PlantLock(Path(self.home.runs_dir) / f"{spec.name}.serve.lock", spec.name):
            source, sink = self._connections or open_connections(spec, self.home, cfg.source)
            self.source = source
            self._started()
            await self._load_twin()
            historian = Historian(
                self.home.historian_dir(spec.name), flush_interval_s=cfg.flush_interval_s
            )
            writes = WritePath(
                spec, self.store, sink, self.live, self.alarms, rel_tol=cfg.readback_rel_tol
            )  # noqa: E501
            self._writes = writes
            self._campaigns = Campaigns(spec, self.store, self.live, writes, historian)
            fallback = Fallback(self.home, spec, hard_operating=cfg.mode == "auto")
            self.control = ControlStep(
                spec,
                self.store,
                self.live,
                self.proposer,
                fallback,
                self._campaigns,
                self.alarms,
                mode=cfg.mode,
                summary=self.summary,
                apply_approvals=self._apply_approvals,
            )
            self._approvals = Approvals(
                spec,
                self.store,
                self.live,
                self.proposer,
                writes,
                self._campaigns,
                self.alarms,
                mode=cfg.mode,
                summary=self.summary,
            )
            writes.load_interrupted()
            try:
                await self._run_tasks(source, historian)
            finally:
                await self.retrainer.close()
                await writes.close()
                historian.close()
                self._stopped()
        return self.summary

    def _started(self) -> None:
        self.status.started()
        self.store.expire_pending(
            self.spec.name,
            actor=ACTOR,
            why="made before this runtime started; its plant state is not vouched for",
        )

    def _stopped(self) -> None:
        self.status.stopped()
        if self._own_store:
            self.store.close()

    async def _load_twin(self) -> None:
        try:  # load the twin before the plant clock starts counting
            await asyncio.to_thread(self.proposer.refresh)
        except Exception as exc:  # a broken checkpoint must not stop ingest; reported per step
            log.warning("cannot load the active twin yet: %s", exc)

    async def _run_tasks(self, source: Any, historian: Historian) -> None:
        tasks: list[asyncio.Task[Any]] = [
            asyncio.create_task(self._ingest(source, historian), name="ingest"),
            asyncio.create_task(self._control(), name="control"),
            asyncio.create_task(self._poll(), name="poll"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
        ]
        stopper: asyncio.Task[Any] = asyncio.create_task(self._stop.wait(), name="stop")
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        self._stop.set()
        for t in tasks:
            t.cancel()
        stopper.cancel()
        # Bounded: a connection that hangs while closing must not keep the process alive.
        _, stuck = await asyncio.wait(tasks, timeout=10.0)
        if stuck:
            log.warning("did not stop cleanly within 10 s: %s", [t.get_name() for t in stuck])
        for t in done:
            if t is not stopper and not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]

    # ---- ingest ------------------------------------------------------------------------

    async def _ingest(self, source: Any, historian: Historian) -> None:
        """Source -> historian and live state; never gives up on a plant that is down."""
        while not self._stop.is_set():
            try:
                async with source:
                    log.info("connected to %s over %s", self.spec.name, self.config.source)
                    await ingest(
                        source,
                        historian,
                        stop=self._stop,
                        source_name=self.config.source,
                        on_batch=self.on_batch,
                    )
            except ConnectionLost as exc:
                self._reason(f"plant unreachable: {exc}")
                log.warning("%s; retrying in %.0f s", exc, self.config.reconnect_s)
                await asyncio.sleep(self.config.reconnect_s)
            except BadInput:
                raise  # a wrong node id or register: the user must fix the spec
            except Exception as exc:  # whatever else the connection does, the runtime stays up
                self._reason(f"plant connection failed: {type(exc).__name__}: {exc}")
                log.exception(
                    "plant connection failed; retrying in %.0f s", self.config.reconnect_s
                )
                await asyncio.sleep(self.config.reconnect_s)

    def on_batch(self, batch: list[Sample]) -> None:
        """A batch from the plant: the live state, then what it changed."""
        update = self.live.on_batch(batch)
        self.alarms.on_batch(batch)  # GAP markers: the connection dropped (one parent alarm)
        plant = self.spec.name
        if update.clock_reset is not None:
            to = self.live.newest_ts()
            self.store.log_event(
                user=ACTOR,
                kind="clock_reset",
                plant=plant,
                what={"from": iso(update.clock_reset), "to": iso(to)},
            )  # noqa: E501
            self.store.expire_pending(
                plant, actor=ACTOR, why="the plant clock went back (plant restarted)"
            )
            self.proposer.reset()
        if update.clock_jump_s is not None:
            # Data may now look fresh or stale on the wrong clock: whoever is on shift must know.
            self.alarms.raise_(
                "clock_jump",
                None,
                f"the plant's clock leapt {update.clock_jump_s:.0f} s forward; "
                "staleness and expiry are judged on the new clock",
            )
        now = self.live.clock.now()
        if self.control is not None and now is not None and self.live.clock.measured:
            # Annunciated as the samples show it, not only at the next control step, which a
            # long plan can delay past the fault; the guard checks again before any write.
            self.control.annunciate_faults(now)
        if update.tick:
            self._tick_due.set()

    # ---- control intervals -------------------------------------------------------------

    async def _control(self) -> None:
        while not self._stop.is_set():
            await self._tick_due.wait()
            self._tick_due.clear()
            try:
                assert self.control is not None
                if not await self.control.step():
                    continue  # its interval was decided already: nothing to count or score
                self.drift.check(self.proposer.version, self.control.ood_ratio)
                await self.shadow.step(self.proposer.version, self.control.last_proposal_id)
                self.retrainer.step(self.drift.recommendation)
            except Exception as exc:  # the plant side keeps running whatever a step does
                log.exception("control step failed")
                self.alarms.raise_("runtime_error", None, f"control step failed: {exc!r}")
            self.summary.steps += 1
            self.status.write()
            if self.config.steps is not None and self.summary.steps >= self.config.steps:
                log.info("%d control intervals done: stopping", self.summary.steps)
                self.stop()
                return

    # ---- approvals -> guarded writes ---------------------------------------------------

    async def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                await self.poll_once()
            except Exception as exc:  # nothing in the write path may end this loop
                log.exception("write path")
                self.alarms.raise_(
                    "runtime_error", None, f"write path: {type(exc).__name__}: {exc}"
                )
            await asyncio.sleep(self.config.poll_s)

    async def poll_once(self) -> None:
        """Settle interrupted moves, act on approvals, run step tests, expire proposals."""
        assert self._writes and self._campaigns and self._approvals
        now = self.live.clock.now()
        measured = self.live.clock.measured and now is not None
        if measured:
            await self._writes.settle(now)
        await self._apply_approvals()
        if measured and now is not None and not self._writes.unsettled:
            if self.config.mode != "advisory":  # advisory writes nothing, step tests included
                await self._campaigns.step(now)
        self._approvals.expire(now)

    async def _apply_approvals(self) -> None:
        assert self._approvals is not None
        await self._approvals.apply_all()
        self.summary.writes = self._writes.writes if self._writes else 0

    def _reason(self, text: str) -> None:
        if self.control is not None:
            self.control.last_reason = text

    async def _heartbeat(self) -> None:
        while not self._stop.is_set():
            self.status.write()
            await asyncio.sleep(self.config.heartbeat_s)


def serve(spec: PlantSpec, home: Home, config: RuntimeConfig) -> RunSummary:
    """Run the serve loop until --steps are done or SIGINT/SIGTERM."""
    from twin.plan.threads import limit_planning_threads  # loads the planners' stack

    limit_planning_threads(config.planning_threads)
    runtime = Runtime(spec, home, config)

    async def main() -> RunSummary:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, runtime.stop)
        return await runtime.run()

    return asyncio.run(main())
