"""Helpers for the connector tests: free ports, plant copies outside the repo, real servers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from connectors.modbus_server import ModbusServeConfig
from connectors.opcua_server import OpcuaServeConfig
from connectors.simserver import SimServeConfig, SimServer
from plants.base import Simulation
from tests.support.procs import free_port, twin_cmd
from tests.support.specs import spec_copy
from twin.spec import PLANTS_DIR, PlantSpec, load_spec

START = datetime(2026, 1, 1, tzinfo=UTC)


def copy_plant(
    tmp: Path, name: str, opcua_port: int, modbus_port: int, security: str = "None"
) -> Path:
    """A built-in plant copied outside the repository, on the given ports."""
    folder = tmp / f"{name}_copy"
    path = spec_copy(
        name,
        folder,
        opcua_port=opcua_port,
        modbus_port=modbus_port,
        opcua_security=security,
        simulator=False,
    )
    shutil.copy(PLANTS_DIR / name / "simulator.py", folder / "simulator.py")
    return path


def start_sim_process(
    spec_path: Path,
    home: Path,
    opcua_port: int,
    modbus_port: int,
    speed: float = 1.0,
    extra: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """`twin sim` as a subprocess; returns once it prints that it is serving."""
    cmd = twin_cmd(
        "sim",
        str(spec_path),
        "--opcua-port",
        str(opcua_port),
        "--modbus-port",
        str(modbus_port),
        "--speed",
        str(speed),
        "--home",
        str(home),
        *extra,
    )
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {}), "COLUMNS": "200"},
    )
    deadline = time.monotonic() + 90
    assert proc.stdout is not None
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith("serving"):
            return proc
    proc.kill()
    raise AssertionError(f"twin sim did not start: {''.join(seen)}")


def stop_process(
    proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 20
) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"process did not stop on signal {sig}: {out}") from None
    return proc.returncode, out


@asynccontextmanager
async def served_plant(
    spec: PlantSpec,
    speed: float = 20.0,
    opcua: OpcuaServeConfig | None = None,
    modbus: ModbusServeConfig | None = None,
    seed: int = 0,
) -> AsyncIterator[SimServer]:
    """A real Simulation served in-process over OPC-UA and Modbus."""
    sim = Simulation(spec, seed=seed, start=START)
    config = SimServeConfig(speed=speed, opcua=opcua, modbus=modbus, keep_published=100_000)
    async with SimServer(spec, sim, config) as server:
        yield server


def spec_at(
    tmp: Path, name: str = "four_tank", security: str = "None"
) -> tuple[PlantSpec, int, int]:
    o, m = free_port(), free_port()
    return load_spec(copy_plant(tmp, name, o, m, security)), o, m
