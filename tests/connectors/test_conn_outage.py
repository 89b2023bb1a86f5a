"""Ingestion survives a killed and restarted `twin sim` and a network loss; outages are recorded."""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from conn_helpers import copy_plant, free_port, served_plant, start_sim_process, stop_process

from connectors.base import Source
from connectors.modbus import ModbusConnection, ModbusSource
from connectors.opcua import (
    SILENCE_FLOOR_S,
    SILENCE_PERIODS,
    OpcuaSource,
    default_silence_s,
)
from connectors.opcua_client import OpcuaConnection
from connectors.opcua_server import OpcuaServeConfig
from twin.historian import Historian
from twin.ingest import IngestStats, ingest
from twin.sample import Quality
from twin.spec import load_spec

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


async def _until(cond, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


class _Live:
    """Runs ingest in the background and exposes its latest stats."""

    def __init__(self, source: Source, historian: Historian) -> None:
        self.stats = IngestStats()
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(
            ingest(
                source,
                historian,
                stop=self.stop,
                status_every_s=0.1,
                on_status=self._seen,
                source_name="test",
            )
        )

    def _seen(self, stats: IngestStats, connected: bool) -> None:
        self.stats = stats

    async def finish(self) -> IngestStats:
        self.stop.set()
        return await self.task


@pytest.mark.parametrize("protocol", ["opcua", "modbus"])
async def test_sim_killed_and_restarted_mid_ingest(
    tmp_path: Path, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    o, m = free_port(), free_port()
    spec_path = copy_plant(tmp_path, "four_tank", o, m)
    spec = load_spec(spec_path)
    home = tmp_path / "home"
    sim = start_sim_process(spec_path, home, o, m, speed=1)
    try:
        if protocol == "opcua":
            conn = OpcuaConnection.from_spec(spec)
            conn.reconnect_max_delay_s = 1.0
            source: Source = OpcuaSource(spec, conn)
        else:
            source = ModbusSource(spec, ModbusConnection.from_spec(spec))
        with Historian(tmp_path / "hist") as historian:
            async with source:  # type: ignore[attr-defined]
                live = _Live(source, historian)
                await _until(lambda: live.stats.samples >= 12, 30, "first samples")
                sim.kill()  # a crash, not a clean stop
                sim.wait()
                await _until(lambda: not source.status.connected, 15, "the loss to be noticed")
                before = live.stats.samples
                await asyncio.sleep(1.0)
                sim = start_sim_process(spec_path, home, o, m, speed=1)
                await _until(lambda: live.stats.samples >= before + 12, 90, "ingestion to resume")
                await _until(lambda: live.stats.gaps >= 1, 10, "the gap to be recorded")
                stats = await live.finish()
            assert not live.task.exception()
        code, out = stop_process(sim, signal.SIGINT if protocol == "modbus" else signal.SIGTERM)
        assert code == 0 and "stopped four_tank" in out  # a clean stop on Ctrl-C and on SIGTERM
    finally:
        if sim.poll() is None:
            sim.kill()

    assert stats.gaps >= 1
    with Historian(tmp_path / "hist") as historian:
        gaps = historian.annotations(kind="gap")
        data = historian.read_long(
            gaps["start"].min() - timedelta(hours=1), gaps["end"].max() + timedelta(hours=1)
        )
    assert len(gaps) >= 1
    gap = gaps.iloc[0]
    markers = data[data["quality"] == Quality.GAP]
    assert set(markers["tag"]) == set(spec.tag_names)  # every tag marked at the outage start
    good = data[data["quality"] == Quality.GOOD]
    assert (good["ts"] < gap["start"]).any() and (good["ts"] >= gap["end"]).any()
    # The outage is reported once by the connector, not as a traceback a second by asyncua.
    tracebacks = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("asyncua") and r.levelno >= logging.ERROR
    ]
    assert not tracebacks, tracebacks


async def test_network_loss_is_back_filled_from_server_history(tmp_path: Path) -> None:
    """A dropped link (server still running): HistoryRead fills the outage, nothing is lost."""
    o, m = free_port(), free_port()
    spec = load_spec(copy_plant(tmp_path, "four_tank", free_port(), m))
    proxy = _Proxy(o)
    async with served_plant(spec, speed=10, opcua=OpcuaServeConfig(port=o)) as server:
        await proxy.start()
        stop = asyncio.Event()
        runner = asyncio.create_task(server.run(stop))
        conn = OpcuaConnection(
            endpoint=f"opc.tcp://127.0.0.1:{proxy.port}/twin/", reconnect_max_delay_s=1.0
        )
        source = OpcuaSource(spec, conn)
        with Historian(tmp_path / "hist") as historian:
            async with source:
                live = _Live(source, historian)
                await _until(lambda: live.stats.samples >= 30, 30, "first samples")
                await proxy.cut()
                await _until(lambda: not source.status.connected, 15, "the loss to be noticed")
                await asyncio.sleep(2.0)  # ~20 sample instants happen while the link is down
                await proxy.start()
                await _until(lambda: source.status.connected, 30, "the reconnect")
                await _until(lambda: live.stats.gaps >= 1, 30, "the gap to be recorded")
                await asyncio.sleep(1.0)
                stats = await live.finish()
        stop.set()
        await runner
        published = {(p.ts, name) for p in server.published for name in p.values}
    await proxy.close()

    with Historian(tmp_path / "hist") as historian:
        gap = historian.annotations(kind="gap").iloc[0]
        data = historian.read_long(
            gap["start"] - timedelta(hours=1), gap["end"] + timedelta(hours=1)
        )
    assert gap["meta"]["backfilled"] >= 0
    good = data[data["quality"] == Quality.GOOD]
    stored = {(r.ts.to_pydatetime(), r.tag) for r in good.itertuples()}
    first, last = good["ts"].min().to_pydatetime(), good["ts"].max().to_pydatetime()
    missing = {k for k in published if first <= k[0] <= last} - stored
    assert not missing, (
        f"{len(missing)} samples lost in the outage ({stats.backfilled} back-filled)"
    )
    assert stats.gaps == 1


async def _silent_then_publishing(
    tmp_path: Path, while_silent: Callable[[OpcuaSource], Awaitable[None]]
) -> tuple[OpcuaSource, IngestStats]:
    """A served plant whose server keeps answering while its simulator stops (a stuck
    publisher): ingest runs, the simulator stops, `while_silent` waits for what the source does,
    then the simulator runs again until samples have come back."""
    o = free_port()
    spec = load_spec(copy_plant(tmp_path, "four_tank", o, free_port()))
    async with served_plant(spec, speed=10, opcua=OpcuaServeConfig(port=o)) as server:
        stop = asyncio.Event()
        runner = asyncio.create_task(server.run(stop))
        conn = OpcuaConnection(endpoint=f"opc.tcp://127.0.0.1:{o}/twin/", reconnect_max_delay_s=1.0)
        source = OpcuaSource(spec, conn, silence_s=2.0)
        with Historian(tmp_path / "hist") as historian:
            async with source:
                live = _Live(source, historian)
                await _until(lambda: live.stats.samples >= 30, 30, "first samples")
                stop.set()
                await runner
                await while_silent(source)
                before = live.stats.samples
                stop = asyncio.Event()
                runner = asyncio.create_task(server.run(stop))
                await _until(lambda: live.stats.samples >= before + 30, 30, "samples to return")
                await _until(lambda: live.stats.gaps >= 1, 10, "the gap to be recorded")
                stats = await live.finish()
        stop.set()
        await runner
    return source, stats


async def test_a_session_that_reports_nothing_is_reconnected(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server keeps answering but its subscription goes silent: the source marks the
    outage, reconnects, and the samples come back."""
    noticed = math.nan

    async def notice(source: OpcuaSource) -> None:
        nonlocal noticed
        silenced = time.monotonic()
        await _until(lambda: source.status.gaps >= 1, 15, "the silence to be noticed")
        noticed = time.monotonic() - silenced

    _, stats = await _silent_then_publishing(tmp_path, notice)
    # the last sample came up to a publishing interval before the simulator stopped
    assert 1.0 <= noticed < 10.0, f"silence noticed after {noticed:.1f} s (limit 2 s)"
    assert stats.gaps == 1
    assert any("reports nothing" in r.getMessage() for r in caplog.records)


async def test_a_session_still_silent_after_the_reconnect_gets_a_new_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """asyncua's reconnect comes back to a session that still reports nothing: one silence
    later the source drops that client and connects a new one (new session, subscription and
    monitored items). The samples come back through it, and the whole is one outage."""

    async def rebuilt(source: OpcuaSource) -> None:
        rebuilds = source.status.extra
        await _until(lambda: rebuilds.get("client_rebuilds", 0) >= 1, 30, "a new client")
        await _until(lambda: source.status.connected, 15, "the new client to connect")

    source, stats = await _silent_then_publishing(tmp_path, rebuilt)
    messages = [r.getMessage() for r in caplog.records]
    assert any("reports nothing" in m for m in messages)
    assert any("connecting a new one" in m for m in messages)
    assert stats.gaps == 1 and source.status.gaps == 1, (stats.gaps, source.status.gaps)


def test_silence_limit_follows_the_sample_period_and_report_by_exception(tmp_path: Path) -> None:
    spec = load_spec(copy_plant(tmp_path, "four_tank", free_port(), free_port()))
    expected = max(SILENCE_FLOOR_S, SILENCE_PERIODS * spec.plant.sample_period_s)
    assert default_silence_s(spec) == expected
    assert spec.source.opcua is not None
    rbe = spec.model_copy(
        update={
            "source": spec.source.model_copy(
                update={"opcua": spec.source.opcua.model_copy(update={"report_by_exception": True})}
            )
        }
    )
    assert default_silence_s(rbe) is None  # a quiet plant sends nothing; silence proves nothing


class _Proxy:
    """A TCP relay that can cut every connection and refuse new ones: a network loss."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._server: asyncio.base_events.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        await self.close()
        for w in self._writers:
            w.transport.abort()
        self._writers = []

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
