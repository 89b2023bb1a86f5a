"""Register encoding, read planning and the clock block: pure functions, no I/O."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors import codec
from twin.spec import ModbusAddress, load_spec


def addr(type_: str, **kw: object) -> ModbusAddress:
    table = "coil" if type_ == "bool" else "holding"
    return ModbusAddress(table=table, address=10, type=type_, **kw)  # type: ignore[arg-type]


def test_float32_word_orders_are_mirror_images() -> None:
    big = codec.encode(12.5, addr("float32"), "big")
    little = codec.encode(12.5, addr("float32"), "little")
    assert big == list(struct.unpack(">HH", struct.pack(">f", 12.5)))
    assert little == big[::-1]
    assert codec.decode(little, addr("float32"), "little") == 12.5
    # A tag's own word order overrides the device's.
    assert codec.encode(12.5, addr("float32", word_order="little"), "big") == little


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_float32_round_trip_within_float32_precision(value: float) -> None:
    back = codec.decode(codec.encode(value, addr("float32")), addr("float32"))
    assert back == struct.unpack(">f", struct.pack(">f", value))[0]


@pytest.mark.parametrize(
    ("type_", "value", "regs"),
    [
        ("int16", -2.0, [0xFFFE]),
        ("uint16", 65535.0, [0xFFFF]),
        ("int32", -70000.0, [0xFFFE, 0xEE90]),
        ("uint32", 70000.0, [0x0001, 0x1170]),
        ("bool", 1.0, [1]),
    ],
)
def test_integer_types(type_: str, value: float, regs: list[int]) -> None:
    assert codec.encode(value, addr(type_)) == regs
    assert codec.decode(regs, addr(type_)) == value


def test_scaling_and_offset() -> None:
    a = addr("int16", scale=0.1, offset=-50.0)
    regs = codec.encode(12.3, a)
    assert regs == [623]  # (12.3 + 50) / 0.1
    assert codec.decode(regs, a) == pytest.approx(12.3)
    assert codec.wire_value(12.34, a) == pytest.approx(12.3)  # quantised to the register's step


@pytest.mark.parametrize(
    ("type_", "value", "reason"),
    [
        ("int16", 40000.0, "does not fit int16"),
        ("uint16", -1.0, "does not fit uint16"),
        ("float32", math.nan, "not a finite"),
        ("float32", 1e39, "overflows float32"),
    ],
)
def test_values_that_do_not_fit_are_refused(type_: str, value: float, reason: str) -> None:
    with pytest.raises(codec.EncodeError, match=reason):
        codec.encode(value, addr(type_))


def test_a_server_may_publish_nan_in_float32() -> None:
    regs = codec.encode(math.nan, addr("float32"), allow_nonfinite=True)
    assert math.isnan(codec.decode(regs, addr("float32")))
    assert (
        codec.decode(codec.encode(1e39, addr("float32"), allow_nonfinite=True), addr("float32"))
        == math.inf
    )


def test_reads_are_split_at_125_registers_and_never_split_a_value() -> None:
    spans = [("input", 2 * i, 2) for i in range(100)]  # 200 contiguous registers
    blocks = codec.plan_reads(spans)
    assert [b.count for b in blocks] == [124, 76]
    assert all(b.start % 2 == 0 for b in blocks)
    assert sum(b.count for b in blocks) == 200


def test_reads_do_not_bridge_unmapped_registers_or_tables() -> None:
    blocks = codec.plan_reads(
        [("input", 0, 2), ("input", 10, 2), ("holding", 0, 1), ("holding", 1, 2)]
    )
    assert blocks == [
        codec.ReadBlock("holding", 0, 3),
        codec.ReadBlock("input", 0, 2),
        codec.ReadBlock("input", 10, 2),
    ]


def test_clock_block_round_trip_and_position() -> None:
    spec = load_spec("four_tank")
    assert codec.clock_address(spec) == 8  # h1..h4 are float32 in input registers 0..7
    regs = codec.encode_clock(123456, 1767225600.25)
    assert len(regs) == codec.CLOCK_WIDTH and regs[0] == codec.CLOCK_MAGIC
    assert codec.decode_clock(regs) == (123456, 1767225600.25)
    assert codec.decode_clock([0] * 7) is None  # a real device's registers are not a clock
