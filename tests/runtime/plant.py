"""Helpers of the end-to-end tests: a tiny trained twin, a spec on free ports, `twin sim` and
`twin serve` as real processes, and independent protocol clients that read the plant's MVs."""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
from pathlib import Path

from tests.support.procs import start_logged, twin_cmd, wait_for
from tests.support.procs import stop as stop  # re-exported for the runtime tests
from tests.support.specs import ports, sim_cmd, spec_copy
from tests.support.tiny import train_tiny_twin
from twin.paths import Home
from twin.spec import PlantSpec, load_spec


def write_spec(
    folder: Path, *, ttl_s: float = 600.0, staleness_s: float = 30.0, fallback: str = "hold"
) -> PlantSpec:
    """The built-in cstr spec on free ports, with the test's proposal lifetime, staleness and
    fallback."""
    safety = {"max_staleness_s": staleness_s, "proposal_ttl_s": ttl_s, "fallback": fallback}
    return load_spec(spec_copy("cstr", folder, safety=safety))


def train_tiny(home: Home) -> str:
    """A deliberately small cstr twin (seconds to train): enough for the runtime to propose
    with; the runtime's history starts empty."""
    return train_tiny_twin(
        home, "cstr", 2.0, keep_history=False, epochs=2, max_seconds=10, obs_max_seconds=3
    )


def start_sim(spec: PlantSpec, log: Path, speed: float = 20.0) -> subprocess.Popen[bytes]:
    op, mb = ports(spec)
    proc = start_logged(
        sim_cmd(spec, speed),
        log,
    )
    wait_for(lambda: _accepts(op) and _accepts(mb), 60, "the simulated plant to listen", proc, log)
    return proc


def start_serve(
    spec: PlantSpec,
    home: Path,
    log: Path,
    mode: str = "supervised",
    source: str = "opcua",
    steps: int | None = None,
) -> subprocess.Popen[bytes]:
    args = ["serve", str(spec.path), "--mode", mode, "--source", source, "--home", str(home)]
    if steps is not None:
        args += ["--steps", str(steps)]
    return start_logged(twin_cmd(*args), log)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# ---- independent clients (not our connectors) --------------------------------------------


def read_opcua(spec: PlantSpec, tag: str) -> float:
    """The tag's value on the plant, read by a plain asyncua client."""
    from asyncua import Client

    async def go() -> float:
        async with Client(spec.source.opcua.endpoint, timeout=5) as client:
            return float(await client.get_node(spec.tag(tag).opcua).read_value())

    return asyncio.run(go())


def read_modbus(spec: PlantSpec, tag: str) -> float:
    """The tag's float32 holding register(s), read by a plain pymodbus client (big word order)."""
    from pymodbus.client import AsyncModbusTcpClient

    addr = spec.tag(tag).modbus
    src = spec.source.modbus

    async def go() -> float:
        client = AsyncModbusTcpClient(src.host, port=src.port, timeout=5)
        await client.connect()
        try:
            rr = await client.read_holding_registers(addr.address, count=2, device_id=src.device_id)
            assert not rr.isError(), rr
            return struct.unpack(">f", struct.pack(">HH", *rr.registers))[0]
        finally:
            client.close()

    return asyncio.run(go())
