"""Errors a user can act on: each names the tag (or endpoint) and the reason; bad values never pass as good."""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import timedelta
from pathlib import Path

import pytest
from conn_helpers import START, served_plant, spec_at

from connectors.errors import TagConfigError
from connectors.modbus import ModbusConnection, ModbusSource
from connectors.modbus_server import ModbusServeConfig
from connectors.opcua import OpcuaSource
from connectors.opcua_client import OpcuaConnection
from connectors.opcua_server import OpcuaServeConfig
from twin.cli import main
from twin.errors import BadInput, ConnectionLost
from twin.historian import Historian
from twin.ingest import ingest
from twin.sample import Quality
from twin.spec import PlantSpec, load_spec

pytestmark = pytest.mark.timeout(120)


def _variant(spec: PlantSpec, tmp: Path, old: str, new: str) -> PlantSpec:
    assert spec.path is not None
    text = spec.path.read_text()
    assert old in text
    p = tmp / f"variant{abs(hash(new))}" / "plant.toml"
    p.parent.mkdir()
    p.write_text(text.replace(old, new, 1))
    return load_spec(p)


async def test_missing_node_and_type_mismatch_name_the_tag(tmp_path: Path) -> None:
    spec, o, _ = spec_at(tmp_path)
    missing = _variant(
        spec, tmp_path, 'opcua = "ns=2;s=four_tank.h2"', 'opcua = "ns=2;s=four_tank.nope"'
    )
    wrong_type = _variant(
        spec, tmp_path, 'opcua = "ns=2;s=four_tank.h3"', 'opcua = "ns=2;s=four_tank._sim_time"'
    )
    async with served_plant(spec, opcua=OpcuaServeConfig(port=o)):
        with pytest.raises(
            TagConfigError, match=r"tag 'h2': node ns=2;s=four_tank.nope on .* does not exist"
        ) as info:
            async with OpcuaSource(missing, OpcuaConnection.from_spec(missing)):
                pass
        assert isinstance(info.value, BadInput)
        with pytest.raises(
            TagConfigError, match=r"tag 'h3': type mismatch: node .* holds DateTime, not a number"
        ):
            async with OpcuaSource(wrong_type, OpcuaConnection.from_spec(wrong_type)):
                pass


async def test_missing_register_names_the_tag(tmp_path: Path) -> None:
    spec, _, m = spec_at(tmp_path)
    missing = _variant(
        spec,
        tmp_path,
        '{ table = "input", address = 4, type = "float32" }',
        '{ table = "input", address = 40, type = "float32" }',
    )
    async with served_plant(spec, modbus=ModbusServeConfig(port=m)):
        with pytest.raises(
            TagConfigError,
            match=r"tag 'h3': input register 40 \(float32\) does not exist on "
            r"modbus://127.0.0.1:\d+ device 1 \(Modbus exception 2: illegal data address\)",
        ):
            async with ModbusSource(missing, ModbusConnection.from_spec(missing)):
                pass


async def test_unreachable_endpoints_at_start(tmp_path: Path) -> None:
    spec, o, m = spec_at(tmp_path)  # nothing listens on these ports
    with pytest.raises(ConnectionLost, match=f"cannot reach opc.tcp://127.0.0.1:{o}/twin/"):
        async with OpcuaSource(spec, OpcuaConnection.from_spec(spec)):
            pass
    with pytest.raises(ConnectionLost, match=f"cannot reach modbus://127.0.0.1:{m} device 1"):
        async with ModbusSource(spec, ModbusConnection.from_spec(spec)):
            pass


def test_cli_exit_codes_name_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, o, _ = spec_at(tmp_path)
    assert main(["ingest", str(spec.path), "--source", "opcua", "--home", str(tmp_path / "h")]) == 1
    assert f"cannot reach opc.tcp://127.0.0.1:{o}/twin/" in capsys.readouterr().err
    assert main(["ingest", "no_such_plant", "--home", str(tmp_path / "h")]) == 2
    assert main(["sim", str(spec.path), "--scenario", "nope", "--home", str(tmp_path / "h")]) == 2
    assert "has no scenario 'nope'" in capsys.readouterr().err
    assert main(["sim", str(spec.path), "--start", "yesterday", "--home", str(tmp_path / "h")]) == 2
    assert "--start 'yesterday' is not an ISO 8601 time" in capsys.readouterr().err


@pytest.mark.parametrize("protocol", ["opcua", "modbus"])
async def test_nan_inf_and_out_of_range_are_flagged_never_good(
    tmp_path: Path, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    spec, o, m = spec_at(tmp_path)
    bad = {"h1": math.nan, "h2": math.inf, "h3": 25.0, "h4": -1.0, "v1": 3.0, "v2": 3.0}
    expected = {
        "h1": Quality.BAD,
        "h2": Quality.BAD,
        "h3": Quality.OUT_OF_RANGE,
        "h4": Quality.OUT_OF_RANGE,
        "v1": Quality.GOOD,
        "v2": Quality.GOOD,
    }
    caplog.set_level(logging.WARNING)
    async with served_plant(
        spec, opcua=OpcuaServeConfig(port=o), modbus=ModbusServeConfig(port=m)
    ) as server:
        assert server.opcua is not None and server.modbus is not None
        ts = START + timedelta(seconds=100)
        source = (
            OpcuaSource(spec, OpcuaConnection.from_spec(spec))
            if protocol == "opcua"
            else ModbusSource(spec, ModbusConnection.from_spec(spec))
        )
        with Historian(tmp_path / "hist") as historian:
            async with source:  # type: ignore[attr-defined]
                stop = asyncio.Event()
                task = asyncio.create_task(ingest(source, historian, stop=stop, status_every_s=0.1))
                await asyncio.sleep(0.5)
                await server.opcua.publish(ts, 100, bad)
                server.modbus.publish(ts.timestamp(), 100, bad)
                # Until all six samples are stored (a loaded machine delivers late), 30 s at most.
                deadline = asyncio.get_running_loop().time() + 30.0
                while asyncio.get_running_loop().time() < deadline:
                    await asyncio.sleep(0.25)
                    historian.flush()
                    if len(historian.read_long(ts, ts + timedelta(seconds=1))) >= len(bad):
                        break
                stop.set()
                await task
            long = historian.read_long(ts, ts + timedelta(seconds=1))
            wide = historian.read(ts, ts + timedelta(seconds=1), good_only=True)
    got = {r.tag: Quality(r.quality) for r in long.itertuples()}
    assert got == expected
    assert wide[["h1", "h2", "h3", "h4"]].isna().all().all()  # never served as good data
    messages = " ".join(r.getMessage() for r in caplog.records)
    # The source names the tag and the reason, once per tag.
    assert "tag 'h1': BAD value nan" in messages and "tag 'h3': OUT_OF_RANGE value 25.0" in messages
