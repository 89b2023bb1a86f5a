"""Independent peers: a node-opcua server read and written by our OPC-UA connectors, and
Debian's mbpoll reading our simulated plant's registers and writing an MV."""

from __future__ import annotations

import asyncio
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest
from conn_helpers import served_plant, spec_at

from connectors import codec
from connectors.errors import TagConfigError
from connectors.modbus_server import ModbusServeConfig
from connectors.opcua import OpcuaSource
from connectors.opcua_client import OpcuaConnection
from connectors.opcua_server import OpcuaServeConfig
from connectors.opcua_sink import OpcuaSink
from twin.spec import load_spec

pytestmark = pytest.mark.timeout(120)

PEERS = Path(__file__).resolve().parent.parent / "peers"


def f32(x: float) -> float:
    return struct.unpack(">f", struct.pack(">f", x))[0]


PEER_SPEC = """
[plant]
name = "peer"
sample_period_s = 0.1
control_interval_s = 1.0

[source.opcua]
endpoint = "opc.tcp://127.0.0.1:{port}/peer"

[[tags]]
name = "counter"
role = "cv"
opcua = "ns=1;s=peer.counter"
limits = [0.0, 1000000.0]

[[tags]]
name = "temp"
role = "dv"
opcua = "ns=1;s=peer.temp"
limits = [0.0, 100000.0]

[[tags]]
name = "valve"
role = "mv"
opcua = "ns=1;s=peer.valve"
limits = [0.0, 100.0]
max_move = 10.0

[[tags]]
name = "label"
role = "dv"
opcua = "ns=1;s=peer.label"
limits = [0.0, 1.0]
"""


@pytest.fixture
def node_peer(tmp_path: Path):  # noqa: ANN201
    if shutil.which("node") is None or not (PEERS / "node_modules" / "node-opcua").is_dir():
        pytest.fail(
            "node-opcua not installed: run `npm install` in tests/peers (scripts/setup.sh --test does)"
        )
    from conn_helpers import free_port

    port = free_port()
    proc = subprocess.Popen(
        ["node", str(PEERS / "opcua_peer.js"), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=PEERS,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("ready"):
            break
        if not line and proc.poll() is not None:
            raise AssertionError("node-opcua peer exited")
    (tmp_path / "peer").mkdir()
    (tmp_path / "peer" / "plant.toml").write_text(PEER_SPEC.format(port=port))
    yield load_spec(tmp_path / "peer" / "plant.toml"), proc
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


async def test_node_opcua_server_read_and_write(node_peer) -> None:  # noqa: ANN001
    spec, proc = node_peer
    conn = OpcuaConnection.from_spec(spec)
    samples = []
    async with OpcuaSource(spec, conn, tags=["counter", "temp"]) as source:
        async for batch in source.batches():
            samples += batch
            if len({s.ts for s in samples if s.tag == "counter"}) >= 8:
                break
    counter = {s.ts: s.value for s in samples if s.tag == "counter"}
    temp = {s.ts: s.value for s in samples if s.tag == "temp"}
    values = [counter[t] for t in sorted(counter)]
    assert (
        all(v % 0.5 == 0 for v in values)
        and values == sorted(values)
        and len(set(values)) == len(values)
    )
    both = set(counter) & set(temp)
    assert both and all(
        temp[t] == f32(20 + counter[t] / 10) for t in both
    )  # a Float node, float32 precision

    async with OpcuaSink(spec, conn, tags=["valve"]) as sink:
        (res,) = await sink.write({"valve": 42.5})
    assert (res.requested, res.written, res.read_back) == (42.5, 42.5, 42.5)
    with pytest.raises(TagConfigError, match="tag 'label': type mismatch: .* holds String"):
        async with OpcuaSource(spec, conn, tags=["label"]):
            pass
    proc.terminate()
    out, _ = proc.communicate(timeout=10)
    assert "valve=42.5" in out  # the peer itself saw the write


async def _mbpoll(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "mbpoll", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, out.decode()
    return out.decode()


@pytest.mark.skipif(
    shutil.which("mbpoll") is None, reason="mbpoll not installed (apt-get install mbpoll)"
)
async def test_mbpoll_reads_our_registers_and_writes_an_mv(tmp_path: Path) -> None:
    spec, o, m = spec_at(tmp_path)
    async with served_plant(
        spec, opcua=OpcuaServeConfig(port=o), modbus=ModbusServeConfig(port=m)
    ) as server:
        await server.advance()
        common = ["-m", "tcp", "-a", "1", "-p", str(m), "-B", "-0", "-1"]
        out = await _mbpoll(*common, "-t", "3:float", "-r", "0", "-c", "4", "127.0.0.1")
        read = {int(k): float(v) for k, v in re.findall(r"\[(\d+)\]:\s+(\S+)", out)}
        last = server.published[-1].values
        assert set(read) == {0, 2, 4, 6}
        for address, tag in zip((0, 2, 4, 6), ("h1", "h2", "h3", "h4"), strict=True):
            assert read[address] == pytest.approx(f32(last[tag]), rel=1e-5)

        await _mbpoll(*common, "-t", "4:float", "-r", "2", "127.0.0.1", "6.5")
        assert server.sim.mv["v2"] == 6.5  # the write drives the simulator
        assert server.opcua is not None
        assert (
            server.opcua._server.read_attribute_value(server.opcua.node_id("v2")).Value.Value == 6.5
        )
        assert server.modbus is not None
        assert codec.decode(server.modbus.registers("holding", 2, 2), spec.tag("v2").modbus) == 6.5

        # A write to a CV's register is refused by the device (Modbus exception 2).
        proc = await asyncio.create_subprocess_exec(
            "mbpoll",
            *common,
            "-t",
            "3:float",
            "-r",
            "0",
            "127.0.0.1",
            "1.0",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        await proc.communicate()
        assert proc.returncode != 0
