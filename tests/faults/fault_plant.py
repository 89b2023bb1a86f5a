"""A plant we control: the mixer's simulator behind a real asyncua server, with faults on demand.

It is not the project's `twin sim`: the faults suite needs to change what is served (values,
status, source timestamps, whether a tag is sent at all) and to act at the exact moment an MV
write arrives, and it keeps the plant's own record of every MV write, stamped with the plant
clock. In report-by-exception mode a variable is written only when its value changes, so an
unchanged MV sends nothing and keeps its old timestamp, as many field servers do.

Everything runs on one event loop in a background thread (`PlantThread`), so a synchronous
test can drive it while `twin serve` runs as a real process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncua import Server, ua
from asyncua.common.callback import CallbackType, ServerItemCallback

from plants.base import Simulation
from twin.spec import PlantSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MvWrite:
    """One MV write as the plant saw it."""

    plant_ts: datetime
    tag: str
    requested: float
    applied: float
    before: float


@dataclass
class Faults:
    """What is wrong with the served values right now; read at every publish."""

    override: dict[str, float] = field(default_factory=dict)
    """Tag -> value served instead of the measurement (out of range, NaN, inf)."""
    silent: set[str] = field(default_factory=set)
    """Tags not published at all (a frozen sensor: no samples)."""
    bad: set[str] = field(default_factory=set)
    """Tags published with a Bad status code."""
    ts_offset: dict[str, timedelta] = field(default_factory=dict)
    """Tag -> shift of its source timestamps (a device clock that is off)."""
    clock_offset: timedelta = timedelta(0)
    """Shift of every source timestamp (a clock jump)."""
    no_source_ts: set[str] = field(default_factory=set)
    """Tags published without a source timestamp."""

    def clear(self) -> None:
        self.override.clear()
        self.silent.clear()
        self.bad.clear()
        self.ts_offset.clear()
        self.no_source_ts.clear()
        self.clock_offset = timedelta(0)


WriteHook = Callable[[MvWrite], bool]
"""Called after each applied MV write; True stops the server before the rest of the request."""


class FaultPlant:
    """The mixer served over OPC-UA on 127.0.0.1:port, faults and a write log included."""

    def __init__(
        self, spec: PlantSpec, port: int, *, speed: float, report_by_exception: bool = False
    ) -> None:
        self.spec = spec
        self.port = port
        self.speed = speed
        self.report_by_exception = report_by_exception
        self.sim = Simulation(spec, seed=0, start=datetime.now(UTC).replace(microsecond=0))
        self.faults = Faults()
        self.writes: list[MvWrite] = []
        self.published: dict[tuple[str, datetime], float] = {}
        """(tag, source timestamp as served) -> value, for every sample sent with a timestamp
        while a client monitored its node: what a runtime could have received (the server
        keeps no history, so a sample sent before anyone subscribed is nobody's loss)."""
        self.on_write: WriteHook | None = None
        self.serving = False
        self.errors: list[str] = []
        """What failed in the plant's own background calls (a restart that did not start)."""
        self._server: Server | None = None
        self._stopping: asyncio.Future[None] | None = None
        self._nodes: dict[str, ua.NodeId] = {}
        self._last_sent: dict[str, tuple[float, bool]] = {}
        self._stop = asyncio.Event()
        self._served_ts = self.sim.time

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/twin/"

    @property
    def time(self) -> datetime:
        return self.sim.time

    # ---- serving -------------------------------------------------------------------------

    async def start_server(self) -> None:
        """Serve (again); a restart first waits until the killed server has let go of its port."""
        if self._stopping is not None:
            await self._stopping
            self._stopping = None
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        ns = await server.register_namespace(f"urn:faults:{self.spec.name}")
        assert ns == 2, "the mixer's node ids use namespace 2"
        folder = await server.nodes.objects.add_object(
            ua.NodeId(self.spec.name, ns), self.spec.name
        )
        self._nodes = {}
        for tag in self.spec.tags:
            node = await folder.add_variable(
                ua.NodeId(f"{self.spec.name}.{tag.name}", ns),
                tag.name,
                ua.Variant(0.0, ua.VariantType.Double),
            )
            if tag.role == "mv":
                await node.set_writable()
            self._nodes[tag.name] = node.nodeid
        server.subscribe_server_callback(CallbackType.PreWrite, self._pre_write)
        self._last_sent = {}
        self._server = server
        await self._publish(self._values(), force=True)
        await server.start()
        self.serving = True

    async def stop_server(self) -> None:
        server, self._server = self._server, None
        self.serving = False
        if server is not None:
            with contextlib.suppress(Exception):
                await server.stop()

    async def run(self) -> None:
        """Advance one sample period every sample_period_s / speed wall seconds, and publish."""
        period = self.spec.plant.sample_period_s / self.speed
        start, taken = time.monotonic(), 0
        while not self._stop.is_set():
            taken += 1
            delay = start + taken * period - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                if self._stop.is_set():
                    break
            measured = self.sim.step()
            await self._publish({**measured, **self.sim.mv})

    def _values(self) -> dict[str, float]:
        return {**self.sim.true_outputs(), **self.sim.mv}

    async def _publish(self, values: dict[str, float], force: bool = False) -> None:
        server = self._server
        if server is None or not (self.serving or force):
            return
        f = self.faults
        now = datetime.now(UTC)
        watched = _watched(server)
        self._served_ts = self.sim.time + f.clock_offset
        for name, nodeid in self._nodes.items():
            if name in f.silent:
                continue
            value = f.override.get(name, values[name])
            good = name not in f.bad
            if self.report_by_exception and not force and self._unchanged(name, value, good):
                continue
            self._last_sent[name] = (value, good)
            ts = self._served_ts + f.ts_offset.get(name, timedelta(0))
            source_ts = None if name in f.no_source_ts else ts
            dv = ua.DataValue(
                ua.Variant(float(value), ua.VariantType.Double),
                StatusCode=ua.StatusCode(
                    ua.StatusCodes.Good if good else ua.StatusCodes.BadSensorFailure
                ),
                SourceTimestamp=source_ts,
                ServerTimestamp=now,
            )
            await server.write_attribute_value(nodeid, dv)
            if source_ts is not None and nodeid in watched:
                self.published[(name, source_ts)] = value

    def _unchanged(self, name: str, value: float, good: bool) -> bool:
        last = self._last_sent.get(name)
        if last is None:
            return False
        same = last[0] == value or (math.isnan(last[0]) and math.isnan(value))
        return same and last[1] == good

    async def _pre_write(self, event: ServerItemCallback, _service: object) -> None:
        """Apply client writes to the simulator; the node then holds what was applied."""
        mv_nodes = {self._nodes[t.name]: t.name for t in self.spec.mvs}
        stopping = False
        for wv in event.request_params.NodesToWrite:
            tag = mv_nodes.get(wv.NodeId)
            if tag is None or wv.AttributeId != ua.AttributeIds.Value or wv.Value.Value is None:
                continue
            server = self._server
            if stopping or server is None:
                if server is not None:
                    wv.Value = server.read_attribute_value(wv.NodeId)
                continue
            raw = wv.Value.Value.Value
            if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
                wv.Value = server.read_attribute_value(wv.NodeId)
                continue
            before = self.sim.mv[tag]
            applied = float(self.sim.set_mvs({tag: float(raw)})[tag])
            entry = MvWrite(self.sim.time, tag, float(raw), applied, before)
            self.writes.append(entry)
            if self.report_by_exception and applied == before:
                # Unchanged: the node keeps its old value and timestamp, so nothing is notified.
                wv.Value = server.read_attribute_value(wv.NodeId)
            else:
                wv.Value = ua.DataValue(
                    ua.Variant(applied, ua.VariantType.Double),
                    SourceTimestamp=self._served_ts,
                    ServerTimestamp=datetime.now(UTC),
                )
            self._last_sent[tag] = (applied, True)
            if self.on_write is not None and self.on_write(entry):
                stopping = True
        if stopping:
            # Killed mid-request: this write may or may not be answered; later ones never land.
            asyncio.get_running_loop().call_soon(self._kill)

    def _kill(self) -> None:
        self._stopping = asyncio.ensure_future(self.stop_server())

    def stop(self) -> None:
        self._stop.set()


def _watched(server: Server) -> set[ua.NodeId]:
    """Nodes a client monitors right now: what a runtime can receive. asyncua's server keeps
    this only in its subscription service (no public call): a reconnecting client's
    subscription exists a moment before its monitored items, and a sample sent in between
    reaches no one."""
    out = set()
    for sub in server.iserver.subscription_service.subscriptions.values():
        for item in sub.monitored_item_srv._monitored_items.values():
            if item.read_value_id is not None:
                out.add(item.read_value_id.NodeId)
    return out


class PlantThread:
    """Runs a FaultPlant (and helpers such as a proxy) on an event loop in a background thread."""

    def __init__(self, plant: FaultPlant) -> None:
        self.plant = plant
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._runner: asyncio.Future[None] | None = None

    def __enter__(self) -> PlantThread:
        self._thread.start()
        self.call(self.plant.start_server())
        self._runner = asyncio.run_coroutine_threadsafe(self.plant.run(), self.loop)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.plant.stop)
        if self._runner is not None:
            with contextlib.suppress(Exception):
                self._runner.result(10)
        with contextlib.suppress(Exception):
            self.call(self.plant.stop_server())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def later(self, fn: Callable[[], Any], delay_s: float) -> None:
        """Run fn on the plant's loop after delay_s wall seconds (fn may return a coroutine)."""

        def fire() -> None:
            out = fn()
            if asyncio.iscoroutine(out):
                asyncio.ensure_future(out).add_done_callback(failed)

        def failed(task: asyncio.Future[Any]) -> None:
            if not task.cancelled() and task.exception() is not None:
                self.plant.errors.append(f"{fn!r}: {task.exception()!r}")

        self.loop.call_soon_threadsafe(lambda: self.loop.call_later(delay_s, fire))
