"""Live ingest over each protocol into a real historian matches what the simulator published."""

from __future__ import annotations

import asyncio
import os
import re
import struct
from datetime import timedelta
from pathlib import Path

import pytest
from conn_helpers import served_plant, spec_at, twin_cmd

from connectors.modbus import ModbusConnection, ModbusSource
from connectors.modbus_server import ModbusServeConfig
from connectors.opcua import OpcuaSource
from connectors.opcua_client import OpcuaConnection
from connectors.opcua_server import OpcuaServeConfig
from twin.historian import Historian
from twin.ingest import ingest
from twin.paths import Home
from twin.sample import Quality

pytestmark = pytest.mark.timeout(120)


def f32(x: float) -> float:
    return struct.unpack(">f", struct.pack(">f", x))[0]


async def _ingest_while_running(server, source, historian: Historian, steps: int) -> None:  # noqa: ANN001
    stop = asyncio.Event()
    runner = asyncio.create_task(server.run(stop, steps=steps))
    async with source:
        task = asyncio.create_task(ingest(source, historian, stop=stop, status_every_s=0.2))
        await runner
        await asyncio.sleep(1.0)  # the last publish reaches the client
        stop.set()
        stats = await task
    assert stats.samples > 0 and stats.gaps == 0


@pytest.mark.parametrize("protocol", ["opcua", "modbus"])
async def test_ingest_matches_the_simulator(tmp_path: Path, protocol: str) -> None:
    spec, o, m = spec_at(tmp_path)
    async with served_plant(
        spec, speed=20, opcua=OpcuaServeConfig(port=o), modbus=ModbusServeConfig(port=m)
    ) as server:
        if protocol == "opcua":
            source = OpcuaSource(spec, OpcuaConnection.from_spec(spec))
        else:
            source = ModbusSource(spec, ModbusConnection.from_spec(spec))
        with Historian(tmp_path / "hist") as historian:
            await _ingest_while_running(server, source, historian, steps=40)
        published = {(p.ts, name): v for p in server.published for name, v in p.values.items()}
        last_step_ts = server.published[-1].ts

    with Historian(tmp_path / "hist") as historian:
        stored = historian.read_long(
            server.published[0].ts - timedelta(seconds=1), last_step_ts + timedelta(seconds=1)
        )
    assert len(stored) >= 30 * len(spec.tags)
    assert set(stored["tag"]) == set(spec.tag_names)
    assert (stored["quality"] == Quality.GOOD).all()
    for row in stored.itertuples():
        ts = row.ts.to_pydatetime()
        expected = published.get((ts, row.tag))
        assert expected is not None, f"{row.tag} at {ts} was never published"
        # OPC-UA carries doubles; Modbus float32 registers.
        assert row.value == (expected if protocol == "opcua" else f32(expected)), row
    # No published sample instant inside the stored window was lost.
    first, last = stored["ts"].min().to_pydatetime(), stored["ts"].max().to_pydatetime()
    expected_keys = {k for k in published if first <= k[0] <= last}
    stored_keys = {(r.ts.to_pydatetime(), r.tag) for r in stored.itertuples()}
    assert expected_keys <= stored_keys


async def test_twin_ingest_command_streams_for_a_duration(tmp_path: Path) -> None:
    spec, o, m = spec_at(tmp_path)
    home = tmp_path / "home"
    async with served_plant(spec, speed=10, modbus=ModbusServeConfig(port=m)) as server:
        stop = asyncio.Event()
        runner = asyncio.create_task(server.run(stop))
        proc = await asyncio.create_subprocess_exec(
            *twin_cmd(
                "ingest",
                str(spec.path),
                "--source",
                "modbus",
                "--duration",
                "3",
                "--home",
                str(home),
            ),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200"},
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
        stop.set()
        await runner
    text = out.decode()
    assert proc.returncode == 0, text
    stored = int(re.search(r"stored ([\d,]+) samples", text).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert "samples/s" in text and stored >= 6 * 10  # the status line, and ~30 steps of 6 tags
    with Historian(Home.at(home).historian_dir(spec.name)) as historian:
        assert (
            len(
                historian.read_long(
                    server.published[0].ts, server.published[-1].ts + timedelta(seconds=1)
                )
            )
            == stored
        )


async def test_a_closed_source_can_be_entered_again(tmp_path: Path) -> None:
    """The runtime re-enters its source after a failed connect; each entry streams again."""
    spec, o, m = spec_at(tmp_path)
    async with served_plant(
        spec, speed=20, opcua=OpcuaServeConfig(port=o), modbus=ModbusServeConfig(port=m)
    ) as server:
        stop = asyncio.Event()
        runner = asyncio.create_task(server.run(stop))
        for source in (
            OpcuaSource(spec, OpcuaConnection.from_spec(spec)),
            ModbusSource(spec, ModbusConnection.from_spec(spec)),
        ):
            for _ in range(2):
                async with source:  # type: ignore[attr-defined]
                    batch = await asyncio.wait_for(anext(aiter(source.batches())), timeout=10)
                    assert batch and all(s.quality == Quality.GOOD for s in batch)
        stop.set()
        await runner
