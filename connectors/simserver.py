"""Serve any plant simulator over OPC-UA and Modbus TCP at once (`twin sim`).

The simulator advances one sample period every `sample_period_s / speed` wall seconds on an
absolute schedule (no drift); after each step every tag is published on both protocols,
stamped with the simulator's clock. MV writes from either protocol are applied to the
simulator (which clips them to the engineering limits) and shown on both protocols at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from connectors.modbus_server import ModbusPlantServer, ModbusServeConfig
from connectors.opcua_server import OpcuaPlantServer, OpcuaServeConfig
from twin.errors import ConnectorError
from twin.spec import PlantSpec

log = logging.getLogger(__name__)


class SimulationLike(Protocol):
    """The part of `plants.base.Simulation` that serving needs."""

    @property
    def time(self) -> datetime: ...

    @property
    def mv(self) -> dict[str, float]: ...

    def set_mvs(self, values: dict[str, float]) -> dict[str, float]: ...

    def step(self) -> dict[str, float]: ...

    def true_outputs(self) -> dict[str, float]: ...


@dataclass
class SimServeConfig:
    """How `twin sim` runs and serves a plant."""

    speed: float = 1.0
    """Simulated seconds per wall second."""
    opcua: OpcuaServeConfig | None = None
    """OPC-UA serving, or None for none."""
    modbus: ModbusServeConfig | None = None
    """Modbus TCP serving, or None for none."""
    keep_published: int = 1_000
    """Published sample instants kept in memory: tests compare them with what a client stored
    (and keep more); a long-running `twin sim` keeps only the recent ones."""


@dataclass
class Published:
    """One published sample instant."""

    step: int
    ts: datetime
    values: dict[str, float] = field(default_factory=dict)


class SimServer:
    """A simulator plus its OPC-UA and Modbus servers; `async with` starts and stops them."""

    def __init__(self, spec: PlantSpec, sim: SimulationLike, config: SimServeConfig) -> None:
        if config.speed <= 0:
            raise ValueError(f"speed must be positive, not {config.speed}")
        self.spec = spec
        self.sim = sim
        self.config = config
        self.step = 0
        self.published: deque[Published] = deque(maxlen=config.keep_published)
        self.opcua = OpcuaPlantServer(spec, config.opcua, self._apply_mv) if config.opcua else None
        self.modbus = (
            ModbusPlantServer(spec, config.modbus, self._apply_mv) if config.modbus else None
        )
        self._mv_lock = asyncio.Lock()

    async def __aenter__(self) -> SimServer:
        try:
            if self.opcua is not None:
                try:
                    await self.opcua.start()
                except OSError as exc:
                    raise ConnectorError(
                        f"cannot serve OPC-UA at {self.opcua.config.endpoint}: {exc}"
                    ) from None
            if self.modbus is not None:
                try:
                    await self.modbus.start()
                except (OSError, RuntimeError) as exc:
                    where = f"{self.modbus.config.host}:{self.modbus.config.port}"
                    raise ConnectorError(
                        f"cannot serve Modbus at {where}: {exc} (port in use?)"
                    ) from None
        except BaseException:
            await self.close()
            raise
        values = {**self.sim.true_outputs(), **self.sim.mv}
        await self._publish(values)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        if self.modbus is not None:
            await self.modbus.stop()
        if self.opcua is not None:
            await self.opcua.stop()

    async def _publish(self, values: dict[str, float]) -> None:
        ts = self.sim.time
        self.published.append(Published(self.step, ts, dict(values)))
        if self.modbus is not None:
            self.modbus.publish(ts.timestamp(), self.step, values)
        if self.opcua is not None:
            await self.opcua.publish(ts, self.step, values)

    async def advance(self) -> None:
        """One sample period: step the simulator and publish every tag."""
        async with self._mv_lock:
            measured = self.sim.step()
            self.step += 1
            # MVs are served as applied, not as noisy measurements: a read-back must see the write.
            values = {**measured, **self.sim.mv}
            await self._publish(values)

    async def run(self, stop: asyncio.Event | None = None, steps: int | None = None) -> None:
        """Advance on the wall-clock schedule until `stop` is set or `steps` were taken."""
        period = self.spec.plant.sample_period_s / self.config.speed
        start = time.monotonic()
        taken = 0
        behind_logged = False
        stop = stop or asyncio.Event()
        while not stop.is_set() and (steps is None or taken < steps):
            due = start + (taken + 1) * period
            delay = due - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                    break
                except TimeoutError:
                    pass
            elif -delay > period and not behind_logged:
                log.warning(
                    "simulator is falling behind %.1fx real time; it runs as fast as it can",
                    self.config.speed,
                )
                behind_logged = True
            await self.advance()
            taken += 1

    async def _apply_mv(self, tag: str, value: float) -> float:
        """An MV written over either protocol: apply it, show it on both, return what was applied."""
        async with self._mv_lock:
            applied = float(self.sim.set_mvs({tag: value})[tag])
            if applied != value:
                log.info(
                    "MV %s: requested %s, applied %s (engineering limits)", tag, value, applied
                )
            if self.opcua is not None:
                await self.opcua.set_mv(tag, applied)
            if self.modbus is not None:
                self.modbus.publish_mv(tag, applied)
            return applied
