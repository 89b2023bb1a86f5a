"""State-store benchmark: proposal -> decision -> write round trips per second, SQLite vs PostgreSQL.

Run: python benchmarks/state_store.py [--runs 5] [--trips 200] [--clients 1 4] [--url URL]
Prints a table and writes benchmarks/results/state_store.json.

One round trip is what the runtime and the control room do for one approved move, through the
Store's public methods, each its own transaction with its audit entry (keyed and anchored):
the runtime stores a proposal; an operator approves it; the runtime records the move's intents
(taking the decision), completes each tag's write and closes the decision. Two MVs per move.

Backends: SQLite (a WAL file in a temporary twin home) and PostgreSQL (`--url`, else
else a throwaway cluster on 127.0.0.1 from scripts/pg_test_cluster.sh with durability like
SQLite's WAL/NORMAL: fsync on, synchronous_commit off; each run in a fresh schema). With N clients, N processes (as N hosts would) each run the round
trips of their own plant against one store at once; the rate is all their trips over the wall
time. Runs alternate between the backends, so machine load falls on both alike; figures are
medians of --runs runs and the ratio PostgreSQL / SQLite is taken run by run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _machine import machine_info
from rich.console import Console
from rich.table import Table

from twin.paths import Home
from twin.state import Store

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "state_store.json"
sys.path.insert(0, str(ROOT))


def round_trips(
    target: str, home: str, plant: str, trips: int, go: Any = None, ready: Any = None
) -> float:
    """Run `trips` round trips; returns the seconds they took."""
    store = Store(target, home=Home(Path(home)))
    if go is not None:
        ready.put(plant)
        go.wait(300)
    t0 = time.perf_counter()
    for i in range(trips):
        now = datetime.now(UTC)
        values = {"Tc": 300.0 + i % 5, "F": 1.0}
        pid = store.add_proposal(
            plant=plant,
            mv_values=values,
            payload={"summary": "bench"},
            data_ts=now,
            expires_at=now + timedelta(minutes=5),
            model_version="v1",
            mode="supervised",
        )
        did = store.decide(
            store.get_proposal(pid),
            user="operator",
            kind="approve",
            values=None,
            note="ok",
            evaluation=None,
        )
        ids = store.record_intent(
            plant=plant,
            actor="runtime",
            values=values,
            prior={"Tc": 300.0, "F": 1.0},
            decision_id=did,
            proposal_id=pid,
        )
        for tag, wid in ids.items():
            store.complete_write(wid, "done", written=values[tag], read_back=values[tag])
        store.finish_decision(did, pid, "written", actor="runtime")
    seconds = time.perf_counter() - t0
    store.close()
    return seconds


def _worker(target: str, home: str, plant: str, trips: int, go: Any, ready: Any, out: Any) -> None:
    out.put(round_trips(target, home, plant, trips, go, ready))


def measure(target: str, home: Path, trips: int, clients: int) -> float:
    """Round trips per second of `clients` processes at once against one store."""
    Store(target, home=Home(home)).close()  # migrated before the clock starts
    if clients == 1:
        return trips / round_trips(target, str(home), "p0", trips)
    ctx = mp.get_context("spawn")
    go, ready, out = ctx.Event(), ctx.Queue(), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(target, str(home), f"p{k}", trips, go, ready, out))
        for k in range(clients)
    ]
    for p in procs:
        p.start()
    for _ in procs:  # every client imported and connected before the clock starts
        ready.get(timeout=300)
    t0 = time.perf_counter()
    go.set()
    for _ in procs:
        out.get(timeout=600)
    wall = time.perf_counter() - t0
    for p in procs:
        p.join(60)
    return clients * trips / wall


# Durability like the SQLite store's (WAL, synchronous NORMAL): the log is fsync-ed, a commit
# does not wait for it (a power loss may lose the last commits, never corrupts).
PG_SETTINGS = "-c fsync=on -c synchronous_commit=off"


def postgres_url(given: str | None) -> tuple[str, Path | None]:
    """A server to measure: the given URL, or a throwaway cluster with PG_SETTINGS."""
    if given:
        return given, None
    # Its own folder under /tmp: as root the server runs as `postgres`, which must reach it.
    cluster = Path(tempfile.mkdtemp(prefix="state-bench-pg-"))
    line = subprocess.run(
        [str(ROOT / "scripts" / "pg_test_cluster.sh"), "start", str(cluster)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PG_SETTINGS": PG_SETTINGS},
    ).stdout
    return line.strip().split("=", 1)[1], cluster


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--trips", type=int, default=200, help="round trips per client per run")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    p.add_argument("--url", help="PostgreSQL server (default: a throwaway local cluster)")
    args = p.parse_args()
    from tests.state.backends import fresh_schema_url

    rates: dict[str, dict[int, list[float]]] = {
        b: {c: [] for c in args.clients} for b in ("sqlite", "postgresql")
    }
    with tempfile.TemporaryDirectory(prefix="state-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        base, cluster = postgres_url(args.url)
        try:
            for run in range(args.runs):
                for clients in args.clients:
                    order = ("sqlite", "postgresql") if run % 2 == 0 else ("postgresql", "sqlite")
                    for backend in order:
                        home = tmp / f"{backend}-{clients}-{run}"
                        home.mkdir()
                        target = (
                            str(home / "state.db")
                            if backend == "sqlite"
                            else fresh_schema_url(base)
                        )
                        rates[backend][clients].append(measure(target, home, args.trips, clients))
        finally:
            if cluster is not None:
                subprocess.run(
                    [str(ROOT / "scripts" / "pg_test_cluster.sh"), "stop", str(cluster)],
                    check=False,
                )
    rows = []
    for clients in args.clients:
        sq, pg = rates["sqlite"][clients], rates["postgresql"][clients]
        rows.append(
            {
                "clients": clients,
                "sqlite_trips_per_s_median": statistics.median(sq),
                "postgresql_trips_per_s_median": statistics.median(pg),
                "postgresql_over_sqlite": statistics.median(
                    [b / a for a, b in zip(sq, pg, strict=True)]
                ),
                "sqlite_runs": sq,
                "postgresql_runs": pg,
            }
        )
    table = Table(
        "clients",
        "SQLite trips/s",
        "PostgreSQL trips/s",
        "PG / SQLite",
        title="proposal -> decision -> write round trips (median of runs)",
    )
    for r in rows:
        table.add_row(
            str(r["clients"]),
            f"{r['sqlite_trips_per_s_median']:.0f}",
            f"{r['postgresql_trips_per_s_median']:.0f}",
            f"{r['postgresql_over_sqlite']:.2f}",
        )
    Console().print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "state_store",
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine_info(),
                "settings": {
                    "runs": args.runs,
                    "trips_per_client": args.trips,
                    "round_trip": "add_proposal, decide(approve), record_intent (2 MVs), "
                    "complete_write x2, finish_decision: 6 transactions, "
                    "each audited (keyed, anchored)",
                    "postgresql": args.url
                    and "given server"
                    or f"local cluster on 127.0.0.1, {PG_SETTINGS}",
                    "sqlite": "WAL, synchronous NORMAL",
                },
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
