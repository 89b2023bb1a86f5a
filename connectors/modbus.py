"""Modbus TCP Source (polling) and Sink (verified register writes) on pymodbus 3.x.

The source reads every tag in as few requests as the protocol allows (125 registers each,
a 32-bit value never split), decodes with the spec's type, word order and scaling, and
stamps samples with the plant's clock when the device publishes the twin clock block (a
simulator: see `connectors.codec`), else with the poll time. With a clock it polls twice per
sample period of the plant's clock (so an accelerated simulator is followed) and yields each
sample instant once; a step it missed is counted, not invented.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self

from connectors import codec
from connectors.base import (
    Outage,
    QualityLog,
    SourceStatus,
    WriteResult,
    check_writable,
    classify,
    gap_markers,
    protocol_tags,
)
from connectors.errors import ReadBackMismatch, TagConfigError
from connectors.modbus_device import (
    Device,
    DeviceError,
    ModbusConnection,
    honour_swallowed_cancel,
)
from twin.errors import ConnectionLost, WriteRejected
from twin.sample import Quality, Sample
from twin.spec import PlantSpec, Tag

log = logging.getLogger(__name__)


def _describe(tag: Tag) -> str:
    assert tag.modbus is not None
    m = tag.modbus
    return f"{m.table} {'bit' if m.type == 'bool' else 'register'} {m.address} ({m.type})"


class ModbusSource:
    """Live samples polled from a Modbus TCP device; see the module docstring."""

    def __init__(
        self,
        spec: PlantSpec,
        conn: ModbusConnection,
        tags: list[str] | None = None,
        use_clock: bool = True,
    ) -> None:
        self.spec = spec
        self.conn = conn
        self.tags = protocol_tags(spec, tags, "modbus")
        self.status = SourceStatus()
        self._use_clock = use_clock
        self._period_s = spec.plant.sample_period_s
        self._device: Device | None = None
        self._clock_at = codec.clock_address(spec)
        self._has_clock = False
        self._blocks: list[codec.ReadBlock] = []
        self._last_step: int | None = None
        self._last_epoch: float | None = None
        self._last_wall: float | None = None
        self._ratio = 1.0  # plant seconds per wall second, measured from the clock block
        self._ratio_known = False
        self._outage: Outage | None = None
        self._closed: list[Outage] = []
        self._closing = False
        self._qlog = QualityLog(log, conn.where)

    async def __aenter__(self) -> Self:
        self._closing = False  # a closed source may be entered again
        self._last_step = None
        self._device = Device(self.conn)  # created here: pymodbus binds to the running loop
        await self._device.connect()
        try:
            await self._check_tags()
            self._has_clock = self._use_clock and await self._probe_clock()
        except BaseException:
            self.dev.close()
            raise
        spans = [(t.modbus.table, t.modbus.address, t.modbus.width) for t in self.tags if t.modbus]
        if self._has_clock:
            spans.append(("input", self._clock_at, codec.CLOCK_WIDTH))
        self._blocks = codec.plan_reads(spans)
        self.status.connected = True
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closing = True
        self.dev.close()
        self.status.connected = False

    @property
    def dev(self) -> Device:
        if self._device is None:
            raise ConnectionLost(f"{self.conn.where}: the source is not open (use `async with`)")
        return self._device

    @property
    def has_clock(self) -> bool:
        """The device publishes the twin clock block (samples carry the plant's clock)."""
        return self._has_clock

    async def _check_tags(self) -> None:
        """Read every block once; on a refusal find the tag whose registers do not exist."""
        spans = [(t.modbus.table, t.modbus.address, t.modbus.width) for t in self.tags if t.modbus]
        for block in codec.plan_reads(spans):
            try:
                await self.dev.read(block.table, block.start, block.count)
                continue
            except DeviceError:
                pass
            for t in self.tags:
                assert t.modbus is not None
                if (
                    t.modbus.table != block.table
                    or not block.start <= t.modbus.address < block.start + block.count
                ):
                    continue
                try:
                    await self.dev.read(t.modbus.table, t.modbus.address, t.modbus.width)
                except DeviceError as exc:
                    raise TagConfigError(
                        t.name, f"{_describe(t)} does not exist on {self.conn.where} ({exc})"
                    ) from None

    async def _probe_clock(self) -> bool:
        try:
            regs = await self.dev.read("input", self._clock_at, codec.CLOCK_WIDTH)
        except DeviceError:
            return False
        return codec.decode_clock(regs) is not None

    def closed_outages(self) -> list[Outage]:
        out, self._closed = self._closed, []
        return out

    # ---- polling --------------------------------------------------------------------------

    def _next_delay(self) -> float:
        if not self._has_clock:
            return self.conn.poll_interval_s or self._period_s
        if not self._ratio_known:
            return 0.02  # poll briskly until two clock readings tell how fast the plant runs
        # Twice per plant sample period in wall time, so no sample instant is skipped.
        return max(0.001, self._period_s / max(self._ratio, 1e-6) / 2)

    async def batches(self) -> AsyncIterator[list[Sample]]:
        next_at = time.monotonic()
        while not self._closing:
            honour_swallowed_cancel()
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            next_at = max(next_at + self._next_delay(), time.monotonic())
            try:
                if not self.status.connected:
                    await self._reconnect()
                batch = await self.poll()
            except ConnectionLost as exc:
                gap = self._on_lost(str(exc))
                if gap:
                    yield gap
                next_at = time.monotonic() + min(2.0, max(0.2, self._period_s))
                continue
            except DeviceError as exc:
                log.warning("%s refused a poll: %s", self.conn.where, exc)
                continue
            if batch:
                yield batch

    async def _reconnect(self) -> None:
        self.dev.close()
        self._device = Device(self.conn)
        await self._device.connect()
        self.status.connected = True
        self._last_step = None  # a restarted simulator counts from 0 again
        log.info("%s: reconnected", self.conn.where)

    def _on_lost(self, reason: str) -> list[Sample]:
        first = self.status.connected
        self.status.connected = False
        self.status.last_error = reason
        if not first:
            return []
        log.warning("%s: connection lost (%s); retrying", self.conn.where, reason)
        self.status.gaps += 1
        last = self.status.last_ts
        start = last + timedelta(seconds=self._period_s) if last else datetime.now(UTC)
        self._outage = Outage(start=start, reason=reason)
        return gap_markers(self.tags, start)

    async def poll(self) -> list[Sample]:
        """One read of every tag; [] when the plant's clock has not advanced since the last poll."""
        wall = time.time()
        regs: dict[tuple[str, int], int] = {}
        for block in self._blocks:
            values = await self.dev.read(block.table, block.start, block.count)
            for i, v in enumerate(values):
                regs[(block.table, block.start + i)] = v
        self.status.extra["polls"] = self.status.extra.get("polls", 0) + 1
        self.status.extra["requests"] = self.dev.requests
        ts = self._stamp(regs, wall)
        if ts is None:
            return []
        samples = [self._decode(t, regs, ts) for t in self.tags]
        self._account(samples)
        return samples

    def _stamp(self, regs: dict[tuple[str, int], int], wall: float) -> datetime | None:
        if not self._has_clock:
            return datetime.fromtimestamp(wall, UTC)
        clock = codec.decode_clock(
            [regs[("input", self._clock_at + i)] for i in range(codec.CLOCK_WIDTH)]
        )
        if clock is None:
            return datetime.fromtimestamp(wall, UTC)
        step, epoch = clock
        if self._last_step is not None and step == self._last_step:
            return None
        if self._last_step is not None and step > self._last_step + 1:
            self.status.extra["missed_steps"] = (
                self.status.extra.get("missed_steps", 0) + step - self._last_step - 1
            )
        if (
            self._last_epoch is not None
            and self._last_wall is not None
            and epoch > self._last_epoch
        ):
            measured = (epoch - self._last_epoch) / max(wall - self._last_wall, 1e-6)
            self._ratio = 0.7 * self._ratio + 0.3 * measured if self._ratio_known else measured
            self._ratio_known = True
        self._last_step, self._last_epoch, self._last_wall = step, epoch, wall
        return datetime.fromtimestamp(epoch, UTC)

    def _decode(self, t: Tag, regs: dict[tuple[str, int], int], ts: datetime) -> Sample:
        m = t.modbus
        assert m is not None
        value = codec.decode(
            [regs[(m.table, m.address + i)] for i in range(m.width)], m, self.conn.word_order
        )
        return Sample(ts, t.name, value, classify(t, value))

    def _account(self, samples: list[Sample]) -> None:
        st = self.status
        st.samples += len(samples)
        st.bad_samples += sum(1 for s in samples if s.quality != Quality.GOOD)
        for s in samples:
            self._qlog.see(s)
        st.last_ts = samples[0].ts
        if self._outage is not None:
            self._outage.end = samples[0].ts
            self._closed.append(self._outage)
            self._outage = None


class ModbusSink:
    """Writes MV registers with the tag's encoding and reads each one back."""

    def __init__(self, spec: PlantSpec, conn: ModbusConnection) -> None:
        self.spec = spec
        self.conn = conn
        self._device: Device | None = None

    async def __aenter__(self) -> Self:
        self._device = Device(self.conn)
        await self._device.connect()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._device is not None:
            self._device.close()

    async def write(self, values: Mapping[str, float]) -> list[WriteResult]:
        results = []
        for name, value in values.items():
            tag = self.spec.tag(name)
            m = tag.modbus
            if m is None:
                raise WriteRejected(f"tag {name!r} has no Modbus address")
            check_writable(tag, value)
            try:
                regs = codec.encode(float(value), m, self.conn.word_order)
            except codec.EncodeError as exc:
                raise WriteRejected(f"tag {name!r}: type mismatch: {exc}") from None
            written = codec.decode(regs, m, self.conn.word_order)
            try:
                if self._device is None:
                    raise ConnectionLost(
                        f"{self.conn.where}: the sink is not open (use `async with`)"
                    )
                await self._device.write(m.table, m.address, regs)
                back = await self._device.read(m.table, m.address, m.width)
            except DeviceError as exc:
                raise WriteRejected(
                    f"tag {name!r}: {self.conn.where} refused writing {_describe(tag)}: {exc}"
                ) from None
            read_back = codec.decode(back, m, self.conn.word_order)
            result = WriteResult(
                name,
                float(value),
                written,
                read_back if math.isfinite(read_back) else math.nan,
                datetime.now(UTC),
            )
            if not result.ok:
                raise ReadBackMismatch(result)
            results.append(result)
        return results
