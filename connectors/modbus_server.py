"""A pymodbus TCP server exposing one plant's tags at the registers of its spec.

The server keeps its own register image, updated by `publish`; every request passes through
one action hook that refuses addresses no tag occupies (Modbus exception 2, illegal data
address), copies the image into the response, and turns writes to MV registers into plant
MV changes (clipped by the plant; the registers then hold what was applied). A write that
covers only part of a 32-bit value, or touches a register that is not an MV, is refused.
The simulator clock block (see `connectors.codec`) follows the input-register tags.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from connectors import codec
from twin.spec import PlantSpec, Tag

log = logging.getLogger(__name__)

MvWriteHook = Callable[[str, float], Awaitable[float]]

_TABLE_OF_FC = {
    1: "coil",
    5: "coil",
    15: "coil",
    2: "discrete",
    3: "holding",
    6: "holding",
    16: "holding",
    23: "holding",
    4: "input",
}
_TABLES = ("coil", "discrete", "holding", "input")


@dataclass
class ModbusServeConfig:
    """How the plant is served over Modbus TCP."""

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = 502
    """TCP port."""
    device_id: int = 1
    """Unit id answered."""
    word_order: str = "big"
    """Order of 16-bit words in 32-bit values (the spec's [source.modbus] word_order)."""


class ModbusPlantServer:
    """Serves the tags of one plant; `publish` updates them, MV writes call `on_mv_write`."""

    def __init__(
        self, spec: PlantSpec, config: ModbusServeConfig, on_mv_write: MvWriteHook
    ) -> None:
        self.spec = spec
        self.config = config
        self._on_mv_write = on_mv_write
        self._tags = [t for t in spec.tags if t.modbus is not None]
        # (table, register) -> tag owning it; the clock registers map to None.
        self._owner: dict[tuple[str, int], Tag | None] = {}
        for t in self._tags:
            assert t.modbus is not None
            for r in range(t.modbus.address, t.modbus.address + t.modbus.width):
                self._owner[(t.modbus.table, r)] = t
        self.clock_address = codec.clock_address(spec)
        for r in range(self.clock_address, self.clock_address + codec.CLOCK_WIDTH):
            self._owner[("input", r)] = None
        self._image: dict[str, list[int]] = {}
        for table in _TABLES:
            used = [r for (tb, r) in self._owner if tb == table]
            self._image[table] = [0] * (max(used) + 1 if used else 1)
        self._server: ModbusTcpServer | None = None

    def _device(self) -> SimDevice:
        blocks: list[list[SimData]] = []
        for table in _TABLES:
            size = len(self._image[table])
            if table in ("coil", "discrete"):
                blocks.append([SimData(0, values=[False] * size, datatype=DataType.BITS)])
            else:
                blocks.append([SimData(0, count=size, values=0, datatype=DataType.REGISTERS)])
        return SimDevice(id=self.config.device_id, simdata=tuple(blocks), action=self._action)  # type: ignore[arg-type]

    async def start(self) -> None:
        self._server = ModbusTcpServer(self._device(), address=(self.config.host, self.config.port))
        await self._server.serve_forever(background=True)
        log.info(
            "Modbus server for %s at %s:%d", self.spec.name, self.config.host, self.config.port
        )

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()

    # ---- values ---------------------------------------------------------------------------

    def publish(self, epoch_s: float, step: int, values: Mapping[str, float]) -> None:
        """Encode every served tag in `values` into the register image, and the clock."""
        order = self.config.word_order
        for t in self._tags:
            value = values.get(t.name)
            if value is None:
                continue
            self._store(t, value, order)
        clock = codec.encode_clock(step, epoch_s)
        self._image["input"][self.clock_address : self.clock_address + codec.CLOCK_WIDTH] = clock

    def _store(self, t: Tag, value: float, order: str) -> None:
        assert t.modbus is not None
        try:
            # A failed sensor's NaN is passed on in float32 registers; integers cannot carry it.
            regs = codec.encode(value, t.modbus, order, allow_nonfinite=True)
        except codec.EncodeError as exc:
            log.warning("Modbus: %s: %s; register left unchanged", t.name, exc)
            return
        self._image[t.modbus.table][t.modbus.address : t.modbus.address + len(regs)] = regs

    def publish_mv(self, tag: str, value: float) -> None:
        """Show an MV change made through the other protocol."""
        t = next((t for t in self._tags if t.name == tag), None)
        if t is not None:
            self._store(t, value, self.config.word_order)

    def registers(self, table: str, address: int, count: int) -> list[int]:
        """A copy of the image (for tests and diagnostics)."""
        return list(self._image[table][address : address + count])

    # ---- request hook ---------------------------------------------------------------------

    async def _action(
        self,
        fc: int,
        start: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        table = _TABLE_OF_FC.get(fc)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        if table in ("coil", "discrete"):
            return await self._bits(table, address, registers, set_values)
        span = range(address, address + count)
        if any((table, r) not in self._owner for r in span):
            return ExcCodes.ILLEGAL_ADDRESS
        if set_values:
            result = await self._write_registers(address, list(set_values))  # type: ignore[arg-type]
            if isinstance(result, ExcCodes):
                return result
            set_values[:] = result  # type: ignore[index,assignment]
        off = address - start
        registers[off : off + count] = self._image[table][address : address + count]
        return None

    async def _write_registers(self, address: int, values: list[int]) -> list[int] | ExcCodes:
        image = self._image["holding"]
        end = address + len(values)
        tags: list[Tag] = []
        for r in range(address, end):
            t = self._owner.get(("holding", r))
            if t is None or t.role != "mv":
                return ExcCodes.ILLEGAL_ADDRESS
            if t not in tags:
                tags.append(t)
        for t in tags:
            assert t.modbus is not None
            if t.modbus.address < address or t.modbus.address + t.modbus.width > end:
                return ExcCodes.ILLEGAL_ADDRESS  # half of a 32-bit value
        order = self.config.word_order
        out = list(values)
        for t in tags:
            assert t.modbus is not None
            off = t.modbus.address - address
            requested = codec.decode(values[off : off + t.modbus.width], t.modbus, order)
            if not math.isfinite(requested):
                return ExcCodes.ILLEGAL_VALUE
            applied = await self._on_mv_write(t.name, requested)
            self._store(t, applied, order)
            out[off : off + t.modbus.width] = image[
                t.modbus.address : t.modbus.address + t.modbus.width
            ]
        return out

    async def _bits(
        self,
        table: str,
        address: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if (table, address) not in self._owner:
            return ExcCodes.ILLEGAL_ADDRESS
        image = self._image[table]
        if set_values:
            for i, bit in enumerate(set_values):
                t = self._owner.get((table, address + i))
                if t is None or t.role != "mv":
                    return ExcCodes.ILLEGAL_ADDRESS
                applied = await self._on_mv_write(t.name, 1.0 if bit else 0.0)
                image[address + i] = 1 if applied >= 0.5 else 0
                set_values[i] = bool(image[address + i])  # type: ignore[index]
        # Bits live packed 16 to a register in pymodbus' store: refresh them from the image.
        for word in range(len(registers)):
            bits = image[word * 16 : word * 16 + 16]
            registers[word] = sum((1 << i) for i, b in enumerate(bits) if b)
        return None
