"""Live ingest throughput and latency over OPC-UA and Modbus TCP, with baselines from the same run.

OPC-UA: synthetic plant servers (our asyncua plant server, sharded across processes so that
the server side is not the bottleneck) publish every tag at a fixed rate with wall-clock
SourceTimestamps. Measured in this process:
  - ingest: OpcuaSource (one per shard) -> Historian.append, flushed every flush interval;
    sustained value changes/s, sample-to-historian latency (flush completed - SourceTimestamp),
    CPU seconds per second per 1,000 changes/s (this process, and the servers);
  - baseline: a plain asyncua subscription that only counts notifications (no samples, no
    historian), on the same servers.
Modbus: one server process with float32 input-register tags; ModbusSource.poll() (read +
decode + quality) in a loop vs the same register reads with raw pymodbus (no decode).
Each figure is the median of several alternating runs.

    python benchmarks/ingest.py [--seconds S] [--repeats N] [--shards K] [--tags N] [--rate-hz R]

Prints a table and writes benchmarks/results/ingest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asyncua import Client, ua  # noqa: E402
from asyncua.common.subscription import OverflowPolicy  # noqa: E402
from pymodbus.client import AsyncModbusTcpClient  # noqa: E402

from connectors import codec  # noqa: E402
from connectors.modbus import ModbusConnection, ModbusSource  # noqa: E402
from connectors.opcua import OpcuaSource  # noqa: E402
from connectors.opcua_client import OpcuaConnection  # noqa: E402
from twin.historian import Historian  # noqa: E402
from twin.spec import PlantSpec, load_spec  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
console = Console()


# ---- synthetic plants and their servers (child processes) ------------------------------------


def write_spec(folder: Path, name: str, tags: list[str], opcua_port: int, modbus_port: int) -> Path:
    lines = [
        "[plant]",
        f'name = "{name}"',
        "sample_period_s = 0.1",
        "control_interval_s = 1.0",
        "",
        "[source.opcua]",
        f'endpoint = "opc.tcp://127.0.0.1:{opcua_port}/twin/"',
        "",
        "[source.modbus]",
        'host = "127.0.0.1"',
        f"port = {modbus_port}",
        "",
    ]
    for i, tag in enumerate(tags):
        lines += [
            "[[tags]]",
            f'name = "{tag}"',
            'role = "cv"',
            f'opcua = "ns=2;s=bench.{tag}"',
            f'modbus = {{ table = "input", address = {2 * i}, type = "float32" }}',
            "limits = [-1000000.0, 1000000.0]",
            "",
        ]
    path = folder / name / "plant.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(spec_path: str, protocol: str, rate_hz: float, ready: Any, stop: Any) -> None:
    """Child process: serve the plant and publish every tag at rate_hz with wall-clock timestamps."""
    from connectors.modbus_server import ModbusPlantServer, ModbusServeConfig
    from connectors.opcua_server import OpcuaPlantServer, OpcuaServeConfig

    logging.basicConfig(level=logging.ERROR)
    # The baseline's clients hang up abruptly; the server would log each as an error.
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    spec = load_spec(spec_path)
    if protocol == "opcua":
        _cheap_monitored_items()

    async def hook(tag: str, value: float) -> float:
        return value

    async def main() -> None:
        if protocol == "opcua":
            assert spec.source.opcua is not None
            port = int(spec.source.opcua.endpoint.rsplit(":", 1)[1].split("/")[0])
            server: Any = OpcuaPlantServer(spec, OpcuaServeConfig(port=port, history_count=0), hook)
        else:
            assert spec.source.modbus is not None
            server = ModbusPlantServer(spec, ModbusServeConfig(port=spec.source.modbus.port), hook)
        await server.start()
        names = spec.tag_names
        k = 0
        t0 = time.monotonic()
        ready.set()
        while not stop.is_set():
            k += 1
            values = {n: k + i * 1e-3 for i, n in enumerate(names)}
            now = datetime.now(UTC)
            if protocol == "opcua":
                await server.publish(now, k, values)
            else:
                server.publish(now.timestamp(), k, values)
            await asyncio.sleep(max(0.0, t0 + k / rate_hz - time.monotonic()))
        await server.stop()

    asyncio.run(main())


def _cheap_monitored_items() -> None:
    """Load generator only: skip asyncua's deep copy of every monitored value.

    asyncua's server deep-copies each DataValue it hands to a monitored item (about 100 us a
    change), which makes the server, not the ingest client under test, the bottleneck. Our
    plant server writes a fresh DataValue per publish and never mutates it, so keeping a
    reference is safe here. The baseline client runs against the same servers.
    """
    from asyncua.server import monitored_item_service as mis

    def keep_reference(self: Any, cur_val: ua.DataValue) -> None:
        self.old_dvalue = self.current_dvalue
        self.current_dvalue = cur_val

    mis.MonitoredItemValues.set_current_datavalue = keep_reference  # type: ignore[method-assign]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- OPC-UA -----------------------------------------------------------------------------------


async def opcua_ingest(
    specs: list[PlantSpec], hist_dir: Path, seconds: float, warmup: float, flush_interval: float
) -> dict[str, float]:
    """Sources -> one historian; changes/s, latency, CPU of this process over the window."""
    sources = [OpcuaSource(s, OpcuaConnection.from_spec(s)) for s in specs]
    count = 0
    latencies: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    measuring = False
    with Historian(hist_dir, flush_interval_s=flush_interval) as historian:
        for src in sources:
            await src.__aenter__()

        async def consume(src: OpcuaSource) -> None:
            nonlocal count
            async for batch in src.batches():
                historian.append(batch)
                if measuring:
                    count += len(batch)
                    # Every 10th sample's timestamp, for the latency distribution.
                    pending.append(np.array([s.ts.timestamp() for s in batch[::10]]))

        async def flusher() -> None:
            while True:
                await asyncio.sleep(flush_interval)
                batch, pending[:] = list(pending), []
                await asyncio.to_thread(historian.flush)
                done = time.time()
                if batch:
                    latencies.append(done - np.concatenate(batch))

        tasks = [asyncio.create_task(consume(s)) for s in sources] + [
            asyncio.create_task(flusher())
        ]
        await asyncio.sleep(warmup)
        measuring = True
        cpu0, t0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        measuring = False
        cpu, elapsed, total = time.process_time() - cpu0, time.monotonic() - t0, count
        await asyncio.sleep(flush_interval * 1.5)  # the last measured samples get flushed
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for src in sources:
            await src.__aexit__(None, None, None)
    lat = np.concatenate(latencies) if latencies else np.array([np.nan])
    return {
        "changes_per_s": total / elapsed,
        "cpu_s_per_s": cpu / elapsed,
        "latency_p50_s": float(np.median(lat)),
        "latency_p95_s": float(np.percentile(lat, 95)),
    }


async def opcua_raw(specs: list[PlantSpec], seconds: float, warmup: float) -> dict[str, float]:
    """Baseline: plain asyncua subscriptions that only count notifications."""
    clients, count, measuring = [], 0, False
    subs = []
    for spec in specs:
        assert spec.source.opcua is not None
        client = Client(spec.source.opcua.endpoint)
        await client.connect()
        sub = await client.create_subscription(
            50, None, queue_maxsize=1_000_000, overflow=OverflowPolicy.WARN
        )
        nodes = [client.get_node(ua.NodeId(f"bench.{t}", 2)) for t in spec.tag_names]
        await sub.subscribe_data_change(nodes, queuesize=1000, sampling_interval=0)
        clients.append(client)
        subs.append(sub)

    async def consume(sub: Any) -> None:
        nonlocal count
        async for _ev in sub:
            if measuring:
                count += 1

    tasks = [asyncio.create_task(consume(s)) for s in subs]
    await asyncio.sleep(warmup)
    measuring = True
    cpu0, t0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    measuring = False
    cpu, elapsed = time.process_time() - cpu0, time.monotonic() - t0
    for t in tasks:
        t.cancel()
    for c in clients:
        await c.disconnect()
    return {"changes_per_s": count / elapsed, "cpu_s_per_s": cpu / elapsed}


# ---- Modbus -----------------------------------------------------------------------------------


async def modbus_source(spec: PlantSpec, seconds: float) -> dict[str, float]:
    source = ModbusSource(spec, ModbusConnection.from_spec(spec), use_clock=False)
    async with source:
        polls, t0, cpu0 = 0, time.monotonic(), time.process_time()
        while time.monotonic() - t0 < seconds:
            samples = await source.poll()
            polls += 1
        elapsed = time.monotonic() - t0
        assert len(samples) == len(spec.tags)
        return {
            "tags_per_s": polls * len(spec.tags) / elapsed,
            "cpu_s_per_s": (time.process_time() - cpu0) / elapsed,
        }


async def modbus_raw(spec: PlantSpec, seconds: float) -> dict[str, float]:
    """Baseline: the same register reads with raw pymodbus, no decode."""
    assert spec.source.modbus is not None
    blocks = codec.plan_reads(
        [("input", t.modbus.address, t.modbus.width) for t in spec.tags if t.modbus]
    )
    client = AsyncModbusTcpClient("127.0.0.1", port=spec.source.modbus.port)
    await client.connect()
    polls, t0, cpu0 = 0, time.monotonic(), time.process_time()
    while time.monotonic() - t0 < seconds:
        for b in blocks:
            await client.read_input_registers(b.start, count=b.count, device_id=1)
        polls += 1
    elapsed = time.monotonic() - t0
    client.close()
    return {
        "tags_per_s": polls * len(spec.tags) / elapsed,
        "cpu_s_per_s": (time.process_time() - cpu0) / elapsed,
    }


# ---- driver -----------------------------------------------------------------------------------


def _start(spec_path: Path, protocol: str, rate_hz: float) -> tuple[Any, Any]:
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    proc = ctx.Process(
        target=_serve, args=(str(spec_path), protocol, rate_hz, ready, stop), daemon=True
    )
    proc.start()
    if not ready.wait(120):
        raise RuntimeError(f"{protocol} bench server did not start")
    return proc, stop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=6.0, help="measurement window per run")
    ap.add_argument("--repeats", type=int, default=3, help="runs per measurement (median)")
    ap.add_argument("--shards", type=int, default=2, help="OPC-UA server processes")
    ap.add_argument(
        "--tags", type=int, default=1200, help="OPC-UA tags in all (split over the shards)"
    )
    ap.add_argument("--rate-hz", type=float, default=10.0, help="OPC-UA publish rate of every tag")
    ap.add_argument(
        "--latency-rate-hz",
        type=float,
        default=2.5,
        help="publish rate of the latency run: a load the machine sustains",
    )
    ap.add_argument("--flush", type=float, default=1.0, help="historian flush interval, s")
    ap.add_argument(
        "--modbus-tags", type=int, default=250, help="float32 tags on the Modbus server"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("asyncua").setLevel(
        logging.CRITICAL
    )  # disconnect chatter of the baseline client
    offered = args.tags * args.rate_hz
    tmp = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    per = args.tags // args.shards
    specs = [
        load_spec(
            write_spec(
                tmp, f"shard{k}", [f"s{k}t{i}" for i in range(per)], _free_port(), _free_port()
            )
        )
        for k in range(args.shards)
    ]
    mb_spec = load_spec(
        write_spec(
            tmp, "modbus", [f"m{i}" for i in range(args.modbus_tags)], _free_port(), _free_port()
        )
    )

    runs: dict[str, list[dict[str, float]]] = {"ingest": [], "raw": [], "latency": []}
    for label, rate_hz in (("throughput", args.rate_hz), ("latency", args.latency_rate_hz)):
        console.print(
            f"{label}: {args.shards} OPC-UA server processes, {per} tags each at {rate_hz:g} Hz ..."
        )
        servers = [_start(s.path, "opcua", rate_hz) for s in specs if s.path is not None]
        modes = ("raw", "ingest") if label == "throughput" else ("latency",)
        try:
            for r in range(args.repeats):
                for mode in modes:
                    pids = [p.pid for p, _ in servers]
                    scpu0 = sum(_cpu_seconds(p) for p in pids)
                    t0 = time.monotonic()
                    if mode == "raw":
                        res = asyncio.run(opcua_raw(specs, args.seconds, 2.0))
                    else:
                        res = asyncio.run(
                            opcua_ingest(
                                specs, tmp / f"hist-{mode}{r}", args.seconds, 2.0, args.flush
                            )
                        )
                    elapsed = time.monotonic() - t0
                    res["server_cpu_s_per_s"] = (
                        sum(_cpu_seconds(p) for p in pids) - scpu0
                    ) / elapsed
                    runs[mode].append(res)
                    console.print(
                        f"  run {r + 1} {mode}: {res['changes_per_s']:,.0f} changes/s"
                        + (
                            f", p95 latency {res['latency_p95_s']:.2f} s"
                            if "latency_p95_s" in res
                            else ""
                        ),
                        highlight=False,
                    )
        finally:
            for proc, stop in servers:
                stop.set()
                proc.join(10)

    console.print("starting the Modbus server process ...")
    mb_server = _start(mb_spec.path, "modbus", 10.0) if mb_spec.path is not None else None
    mruns: dict[str, list[dict[str, float]]] = {"source": [], "raw": []}
    try:
        for _ in range(args.repeats):
            mruns["raw"].append(asyncio.run(modbus_raw(mb_spec, args.seconds / 2)))
            mruns["source"].append(asyncio.run(modbus_source(mb_spec, args.seconds / 2)))
    finally:
        if mb_server is not None:
            mb_server[1].set()
            mb_server[0].join(10)

    def med(rows: list[dict[str, float]], key: str) -> float:
        return float(statistics.median(r[key] for r in rows))

    ing, raw, lat = runs["ingest"], runs["raw"], runs["latency"]
    rate = med(ing, "changes_per_s")
    result = {
        "machine": {"cpus": os.cpu_count(), "loadavg_1min": os.getloadavg()[0]},
        "settings": vars(args)
        | {
            "offered_changes_per_s": offered,
            "load_generator": "asyncua plant servers without the per-change deep copy",
        },
        "opcua": {
            "changes_per_s": rate,
            "baseline_raw_subscription_changes_per_s": med(raw, "changes_per_s"),
            "ratio_vs_baseline": rate / max(med(raw, "changes_per_s"), 1e-9),
            "latency_p50_s": med(lat, "latency_p50_s"),
            "latency_p95_s": med(lat, "latency_p95_s"),
            "latency_run_changes_per_s": med(lat, "changes_per_s"),
            "latency_at_full_load_p50_s": med(ing, "latency_p50_s"),
            "latency_at_full_load_p95_s": med(ing, "latency_p95_s"),
            "client_cpu_s_per_s_per_1k_changes": med(ing, "cpu_s_per_s") / (rate / 1000),
            "baseline_client_cpu_s_per_s_per_1k_changes": med(raw, "cpu_s_per_s")
            / (med(raw, "changes_per_s") / 1000),
            "server_cpu_s_per_s_per_1k_changes": med(ing, "server_cpu_s_per_s") / (rate / 1000),
            "target_changes_per_s": 10_000,
            "target_latency_p95_s": 1.0 + args.flush,
            "runs": runs,
        },
        "modbus": {
            "float32_tags_per_s": med(mruns["source"], "tags_per_s"),
            "baseline_raw_register_reads_tags_per_s": med(mruns["raw"], "tags_per_s"),
            "ratio_vs_baseline": med(mruns["source"], "tags_per_s")
            / med(mruns["raw"], "tags_per_s"),
            "client_cpu_s_per_s": med(mruns["source"], "cpu_s_per_s"),
            "target_tags_per_s": 5_000,
            "runs": mruns,
        },
    }
    o, m = result["opcua"], result["modbus"]
    table = Table(
        title=f"ingest (medians of {args.repeats}; load avg {result['machine']['loadavg_1min']:.1f} "
        f"on {result['machine']['cpus']} CPUs)"
    )
    for col in ("measure", "ours", "baseline", "ratio", "target"):
        table.add_column(col)
    table.add_row(
        "OPC-UA value changes/s into historian",
        f"{o['changes_per_s']:,.0f}",
        f"{o['baseline_raw_subscription_changes_per_s']:,.0f} (raw asyncua subscription)",
        f"{o['ratio_vs_baseline']:.2f}",
        f">= 10,000 (offered {offered:,.0f})",
    )
    table.add_row(
        f"latency p50 / p95 at {o['latency_run_changes_per_s']:,.0f} changes/s",
        f"{o['latency_p50_s']:.2f} s / {o['latency_p95_s']:.2f} s",
        "",
        "",
        f"p95 < {1.0 + args.flush:.1f} s",
    )
    table.add_row(
        "latency p50 / p95 at full load",
        f"{o['latency_at_full_load_p50_s']:.2f} s / {o['latency_at_full_load_p95_s']:.2f} s",
        "",
        "",
        "",
    )
    table.add_row(
        "client CPU s/s per 1,000 changes/s",
        f"{o['client_cpu_s_per_s_per_1k_changes']:.3f}",
        f"{o['baseline_client_cpu_s_per_s_per_1k_changes']:.3f}",
        f"{o['client_cpu_s_per_s_per_1k_changes'] / max(o['baseline_client_cpu_s_per_s_per_1k_changes'], 1e-9):.2f}",
        "",
    )
    table.add_row(
        "server CPU s/s per 1,000 changes/s",
        f"{o['server_cpu_s_per_s_per_1k_changes']:.3f}",
        "",
        "",
        f"({args.shards} processes)",
    )
    table.add_row(
        "Modbus float32 tags read/s (poll+decode)",
        f"{m['float32_tags_per_s']:,.0f}",
        f"{m['baseline_raw_register_reads_tags_per_s']:,.0f} (raw pymodbus reads)",
        f"{m['ratio_vs_baseline']:.2f}",
        ">= 5,000",
    )
    console.print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(result, indent=2))
    console.print(f"wrote {RESULTS / 'ingest.json'}")


if __name__ == "__main__":
    main()
