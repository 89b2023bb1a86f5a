"""Verified write-back over each protocol: requested, written, read back; refusals raise."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from conn_helpers import served_plant, spec_at
from pymodbus.client import AsyncModbusTcpClient

from connectors import codec
from connectors.errors import ReadBackMismatch
from connectors.modbus import ModbusConnection, ModbusSink
from connectors.modbus_server import ModbusServeConfig
from connectors.opcua_client import OpcuaConnection
from connectors.opcua_server import OpcuaServeConfig
from connectors.opcua_sink import OpcuaSink
from twin.errors import WriteRejected
from twin.spec import load_spec

pytestmark = pytest.mark.timeout(120)


def f32(x: float) -> float:
    return struct.unpack(">f", struct.pack(">f", x))[0]


async def test_write_round_trips_and_both_protocols_agree(tmp_path: Path) -> None:
    spec, o, m = spec_at(tmp_path)
    async with served_plant(
        spec, opcua=OpcuaServeConfig(port=o), modbus=ModbusServeConfig(port=m)
    ) as server:
        async with OpcuaSink(spec, OpcuaConnection.from_spec(spec)) as sink:
            (res,) = await sink.write({"v1": 3.7})
            assert (res.tag, res.requested, res.written, res.read_back) == ("v1", 3.7, 3.7, 3.7)
            assert server.sim.mv["v1"] == 3.7  # it drives the simulator
            assert server.modbus is not None
            assert codec.decode(
                server.modbus.registers("holding", 0, 2), spec.tag("v1").modbus
            ) == f32(3.7)

        async with ModbusSink(spec, ModbusConnection.from_spec(spec)) as msink:
            (res,) = await msink.write({"v2": 2.2})
            assert (res.requested, res.written, res.read_back) == (2.2, f32(2.2), f32(2.2))
            assert server.sim.mv["v2"] == f32(2.2)

        async with OpcuaSink(spec, OpcuaConnection.from_spec(spec)) as sink:
            # The OPC-UA node shows the Modbus write at once, and the next sample carries both MVs.
            assert server.opcua is not None
            node_value = server.opcua._server.read_attribute_value(
                server.opcua.node_id("v2")
            ).Value.Value
            assert node_value == f32(2.2)
            await server.advance()
            assert server.published[-1].values["v1"] == 3.7
            assert server.published[-1].values["v2"] == f32(2.2)

            with pytest.raises(WriteRejected, match="outside the engineering limits"):
                await sink.write({"v1": 11.0})
            with pytest.raises(WriteRejected, match="only MVs are written"):
                await sink.write({"h1": 5.0})
            assert server.sim.mv["v1"] == 3.7  # nothing was written


async def test_the_plant_clips_a_raw_write_and_a_mismatch_raises(tmp_path: Path) -> None:
    spec, o, m = spec_at(tmp_path)
    async with served_plant(
        spec, opcua=OpcuaServeConfig(port=o), modbus=ModbusServeConfig(port=m)
    ) as server:
        # Another Modbus master writes beyond the limits: the plant saturates it, as an actuator does.
        client = AsyncModbusTcpClient("127.0.0.1", port=m)
        await client.connect()
        rr = await client.write_registers(0, codec.encode(15.0, spec.tag("v1").modbus), device_id=1)
        assert not rr.isError()
        back = await client.read_holding_registers(0, count=2, device_id=1)
        client.close()
        assert codec.decode(back.registers, spec.tag("v1").modbus) == 10.0
        assert server.sim.mv["v1"] == 10.0

        # A client whose spec claims wider limits than the plant's gets a read-back mismatch.
        text = spec.path.read_text().replace("limits = [0.0, 10.0]", "limits = [0.0, 20.0]")  # type: ignore[union-attr]
        wide_path = tmp_path / "wide" / "plant.toml"
        wide_path.parent.mkdir()
        wide_path.write_text(text.replace("max_move = 0.5", "max_move = 0.5"))
        wide = load_spec(wide_path)
        for sink in (
            OpcuaSink(wide, OpcuaConnection.from_spec(wide)),
            ModbusSink(wide, ModbusConnection.from_spec(wide)),
        ):
            async with sink:
                with pytest.raises(
                    ReadBackMismatch, match="'v2': wrote 15.0 but read back 10.0"
                ) as info:
                    await sink.write({"v2": 15.0})
                assert info.value.result.read_back == 10.0


async def test_modbus_refuses_values_the_register_cannot_hold(tmp_path: Path) -> None:
    spec, o, m = spec_at(tmp_path)
    text = spec.path.read_text().replace(  # type: ignore[union-attr]
        'modbus = { table = "holding", address = 0, type = "float32" }',
        'modbus = { table = "holding", address = 0, type = "int16", scale = 0.0001 }',
    )
    p = tmp_path / "int16" / "plant.toml"
    p.parent.mkdir()
    p.write_text(text)
    int_spec = load_spec(p)
    async with served_plant(spec, modbus=ModbusServeConfig(port=m)):
        async with ModbusSink(int_spec, ModbusConnection.from_spec(int_spec)) as sink:
            with pytest.raises(
                WriteRejected, match=r"'v1': type mismatch: 5.0 \(raw 50000\) does not fit int16"
            ):
                await sink.write({"v1": 5.0})
