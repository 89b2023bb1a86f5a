"""Registers <-> engineering units, read planning and the simulator clock block (pure, no I/O).

Modbus holds 16-bit registers; bytes inside a register are big-endian (the protocol's rule),
and 32-bit values span two registers whose order is the device's choice ("big": high word
first). Engineering value = raw * scale + offset.

Simulated plants also publish their sample clock in input registers, because Modbus itself
carries no timestamps and an accelerated simulator's clock is not the wall clock. The clock
block sits at the first input register after every tag's registers (see `clock_address`):

    +0        magic 0x5457 ("TW"), so a reader can tell a twin simulator from a real device
    +1, +2    uint32 step counter, high word first: samples produced since the simulator started
    +3 .. +6  float64 sample time, Unix epoch seconds UTC, highest word first

All seven registers are always big-endian, whatever the plant's word order.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from twin.spec import ModbusAddress, PlantSpec

MAX_REGISTERS_PER_READ = 125
"""Modbus limit for one read of holding/input registers (function codes 3 and 4)."""
MAX_BITS_PER_READ = 2000
"""Modbus limit for one read of coils/discrete inputs (function codes 1 and 2)."""

CLOCK_MAGIC = 0x5457
CLOCK_WIDTH = 7

_RAW_RANGE = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "bool": (0, 1),
}
_FLOAT32_MAX = 3.4028234663852886e38


class EncodeError(ValueError):
    """A value that cannot be represented in the tag's register type."""


def _words(raw32: bytes, word_order: str) -> list[int]:
    hi, lo = struct.unpack(">HH", raw32)
    return [hi, lo] if word_order == "big" else [lo, hi]


def _join(regs: Sequence[int], word_order: str) -> bytes:
    a, b = regs[0], regs[1]
    hi, lo = (a, b) if word_order == "big" else (b, a)
    return struct.pack(">HH", hi, lo)


def decode(regs: Sequence[int], addr: ModbusAddress, word_order: str = "big") -> float:
    """Registers (or one bit as 0/1) of one tag -> engineering value."""
    order = addr.word_order or word_order
    kind = addr.type
    if kind == "float32":
        raw: float = struct.unpack(">f", _join(regs, order))[0]
    elif kind == "int32":
        raw = struct.unpack(">i", _join(regs, order))[0]
    elif kind == "uint32":
        raw = struct.unpack(">I", _join(regs, order))[0]
    elif kind == "int16":
        raw = struct.unpack(">h", struct.pack(">H", regs[0]))[0]
    elif kind == "uint16":
        raw = regs[0]
    else:  # bool
        raw = 1.0 if regs[0] else 0.0
    return raw * addr.scale + addr.offset


def encode(
    value: float, addr: ModbusAddress, word_order: str = "big", allow_nonfinite: bool = False
) -> list[int]:
    """Engineering value -> registers (or [0|1] for a bit); raises EncodeError when it cannot fit.

    `allow_nonfinite` lets a float32 carry NaN/inf (a server reporting a failed sensor).
    """
    order = addr.word_order or word_order
    kind = addr.type
    if not math.isfinite(value):
        if kind == "float32" and allow_nonfinite:
            return _words(struct.pack(">f", value), order)
        raise EncodeError(f"{value} is not a finite number")
    raw = (value - addr.offset) / addr.scale
    if kind == "float32":
        if abs(raw) > _FLOAT32_MAX:
            if allow_nonfinite:
                return _words(struct.pack(">f", math.copysign(math.inf, raw)), order)
            raise EncodeError(f"{value} overflows float32")
        return _words(struct.pack(">f", raw), order)
    lo, hi = _RAW_RANGE[kind]
    whole = round(raw)
    if not lo <= whole <= hi:
        raise EncodeError(f"{value} (raw {raw:g}) does not fit {kind} [{lo}, {hi}]")
    if kind == "int32":
        return _words(struct.pack(">i", whole), order)
    if kind == "uint32":
        return _words(struct.pack(">I", whole), order)
    if kind == "int16":
        return [struct.unpack(">H", struct.pack(">h", whole))[0]]
    return [int(whole)]


def wire_value(value: float, addr: ModbusAddress, word_order: str = "big") -> float:
    """The engineering value that the encoding of `value` really carries (float32 or step rounding)."""
    return decode(encode(value, addr, word_order), addr, word_order)


# ---- read planning -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One Modbus read request: `count` registers (or bits) of `table` from `start`."""

    table: str
    start: int
    count: int


def plan_reads(spans: Iterable[tuple[str, int, int]]) -> list[ReadBlock]:
    """Merge (table, address, width) spans into as few requests as the protocol allows.

    Only touching or overlapping spans are merged: reading registers between tags could hit
    addresses a strict device does not implement. A span is never split across two requests,
    so a 32-bit value is always read atomically.
    """
    blocks: list[ReadBlock] = []
    by_table: dict[str, list[tuple[int, int]]] = {}
    for table, address, width in spans:
        by_table.setdefault(table, []).append((address, address + width))
    for table in sorted(by_table):
        limit = MAX_BITS_PER_READ if table in ("coil", "discrete") else MAX_REGISTERS_PER_READ
        start = end = -1
        for lo, hi in sorted(by_table[table]):
            if start >= 0 and lo <= end and max(end, hi) - start <= limit:
                end = max(end, hi)
                continue
            if start >= 0:
                blocks.append(ReadBlock(table, start, end - start))
            start, end = lo, hi
        if start >= 0:
            blocks.append(ReadBlock(table, start, end - start))
    return blocks


# ---- simulator clock block ---------------------------------------------------------------


def clock_address(spec: PlantSpec) -> int:
    """First input register after all of the plant's input-register tags."""
    ends = [
        t.modbus.address + t.modbus.width
        for t in spec.tags
        if t.modbus is not None and t.modbus.table == "input"
    ]
    address = max(ends, default=0)
    if address + CLOCK_WIDTH > 65536:
        raise ValueError(
            f"plant {spec.name!r}: no room for the clock block after input register {address}"
        )
    return address


def encode_clock(step: int, epoch_s: float) -> list[int]:
    """The seven clock registers for sample number `step` taken at `epoch_s`."""
    return [CLOCK_MAGIC, *struct.unpack(">HH", struct.pack(">I", step % 2**32))] + list(
        struct.unpack(">HHHH", struct.pack(">d", epoch_s))
    )


def decode_clock(regs: Sequence[int]) -> tuple[int, float] | None:
    """(step, epoch seconds) from the clock registers, or None when they are not a twin clock."""
    if len(regs) < CLOCK_WIDTH or regs[0] != CLOCK_MAGIC:
        return None
    step = struct.unpack(">I", struct.pack(">HH", regs[1], regs[2]))[0]
    epoch_s = struct.unpack(">d", struct.pack(">HHHH", *regs[3:7]))[0]
    if not math.isfinite(epoch_s):
        return None
    return step, epoch_s
