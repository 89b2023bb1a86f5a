"""Fleet benchmark: twins per hour trained one after another vs as Ray tasks on this machine,
and a sizing for 1,000 plants from the measured per-twin cost.

Run: nice -n 10 python benchmarks/fleet.py [--runs 3] [--seeds 2] [--epochs 15] [--full]
Prints tables and writes benchmarks/results/fleet.json.

Each run trains the same twins (cstr and four_tank, --seeds seeds each, `twin train --quick
--epochs E` through twin.fleet.jobs.run_job, torch threads 1 per twin) twice, in fresh homes
holding the same history: sequentially in this process, then as Ray tasks (one CPU each) on a
local Ray of --cpus CPUs started once before the runs (its start-up is reported apart).
Figures are medians over --runs runs; the ratio is Ray over sequential in the same run.
--full also trains one four_tank twin with twin train's default config on --full-hours of
history (the production cost) for the sizing; without it the sizing uses the quick twins' cost
and says so. The ratio is saved before the --full run starts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from twin.fleet.cluster import connected
from twin.fleet.jobs import JobResult, TrainOptions, TwinJob, run_job
from twin.fleet.train import train_on_ray, train_sequentially
from twin.generate import generate_into
from twin.paths import Home
from twin.spec import load_spec

RESULTS = Path(__file__).resolve().parent / "results" / "fleet.json"
PLANTS = ("cstr", "four_tank")
START = datetime(2026, 2, 1, tzinfo=UTC)
FLEET = 1000
CLUSTER_CORES = (16, 64, 256)


def _history(root: Path, hours: float) -> Path:
    home = Home.at(root / "source")
    for i, plant in enumerate(PLANTS):
        generate_into(home, load_spec(plant), hours, seed=i, start=START, progress=False)
    return home.root


def _fresh(source: Path, dest: Path) -> Home:
    shutil.copytree(source / "historian", dest / "historian")
    return Home.at(dest)


def _jobs(home: Home, seeds: int, options: TrainOptions) -> list[TwinJob]:
    return [TwinJob(p, s, str(home.root), options) for p in PLANTS for s in range(seeds)]


def _check(results: list[JobResult]) -> None:
    bad = [f"{r.plant}/{r.seed}: {r.error}" for r in results if not r.ok]
    if bad:
        sys.exit(f"fleet benchmark: twins failed: {bad}")


def measure(args: argparse.Namespace, work: Path) -> dict:
    source = _history(work, args.hours)
    options = TrainOptions(quick=True, epochs=args.epochs, max_seconds=600)
    _check([run_job(_jobs(_fresh(source, work / "warm"), 1, options)[0])])  # imports, caches
    t0 = time.perf_counter()
    with connected(None, args.cpus) as ray:
        _check(
            train_on_ray(
                ray, _jobs(_fresh(source, work / "warm-ray"), 1, options)[:1], progress=False
            )
        )
        startup = time.perf_counter() - t0  # start + first task (worker imports)
        runs = []
        for i in range(args.runs):
            seq_jobs = _jobs(_fresh(source, work / f"seq{i}"), args.seeds, options)
            t = time.perf_counter()
            seq = train_sequentially(seq_jobs, progress=False)
            seq_s = time.perf_counter() - t
            ray_jobs = _jobs(_fresh(source, work / f"ray{i}"), args.seeds, options)
            t = time.perf_counter()
            par = train_on_ray(ray, ray_jobs, progress=False)
            ray_s = time.perf_counter() - t
            _check(seq + par)
            n = len(seq_jobs)
            runs.append(
                {
                    "twins": n,
                    "sequential_s": seq_s,
                    "ray_s": ray_s,
                    "sequential_twins_per_hour": n / seq_s * 3600,
                    "ray_twins_per_hour": n / ray_s * 3600,
                    "ratio": seq_s / ray_s,
                    "cpu_s_per_twin": statistics.median(r.cpu_seconds for r in seq),
                    "wall_s_per_twin": statistics.median(r.seconds for r in seq),
                    "ray_worker_max_rss_mb": max(r.max_rss_mb for r in par),
                }
            )
            print(f"run {i + 1}/{args.runs}: ratio {runs[-1]['ratio']:.2f}", file=sys.stderr)
    full = None
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "twins"}
    return {"runs": runs, "median": med, "ray_startup_s": startup, "full_twin": full}


def measure_full(work: Path, hours: float) -> dict:
    """One four_tank twin with twin train's default config (the production cost per twin)."""
    home = Home.at(work / "full")
    generate_into(home, load_spec("four_tank"), hours, seed=0, start=START, progress=False)
    [res] = train_sequentially(
        [TwinJob("four_tank", 0, str(home.root), TrainOptions())], progress=False
    )
    _check([res])
    return {
        "plant": "four_tank",
        "hours_of_history": hours,
        "wall_s": res.seconds,
        "cpu_s": res.cpu_seconds,
        "max_rss_mb": res.max_rss_mb,
    }


def sizing(result: dict, cpus: int) -> dict:
    """1,000 plants from the measured cost: CPU-hours per round, hours on a few cluster sizes."""
    med, full = result["median"], result["full_twin"]
    cpu_s = full["cpu_s"] if full else med["cpu_s_per_twin"]
    rss = max(full["max_rss_mb"] if full else 0.0, med["ray_worker_max_rss_mb"])
    efficiency = med["ratio"] / cpus  # measured speed-up per core on this machine
    cpu_hours = FLEET * cpu_s / 3600
    return {
        "basis": "twin train default config (--full)" if full else "quick twins (no --full run)",
        "cpu_s_per_twin": cpu_s,
        "cpu_hours_per_round": cpu_hours,
        "parallel_efficiency": efficiency,
        "memory_per_worker_mb": rss,
        "clusters": [
            {
                "cores": c,
                "hours_per_round": cpu_hours / (c * min(efficiency, 1.0)),
                "memory_gb": c * rss / 1024,
            }
            for c in CLUSTER_CORES
        ],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=2, help="Twins per plant per run.")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--hours", type=float, default=2.0, help="History per plant.")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--full-hours", type=float, default=8.0, help="History of the --full twin.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        result = measure(args, Path(tmp))
        save(result, args)  # the ratio is kept even if the long --full run is cut short
        if args.full:
            result["full_twin"] = measure_full(Path(tmp), args.full_hours)
            save(result, args)


def save(result: dict, args: argparse.Namespace) -> None:
    size = sizing(result, args.cpus)
    report(result, size, args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "fleet",
                "created": datetime.now(UTC).isoformat(),
                "machine": {
                    "cpus": os.cpu_count(),
                    "ray_cpus": args.cpus,
                    "python": platform.python_version(),
                    "load_average": os.getloadavg(),
                },
                "settings": vars(args),
                **result,
                "sizing_1000_plants": size,
            },
            indent=2,
        )
    )
    Console().print(f"wrote {RESULTS}")


def report(result: dict, size: dict, args: argparse.Namespace) -> None:
    med = result["median"]
    t = Table(
        title=f"fleet training, {len(PLANTS) * args.seeds} twins per run, median of {args.runs}"
    )
    for col in ("mode", "twins/hour", "wall s", "ratio"):
        t.add_column(col, justify="right")
    t.add_row(
        "sequential",
        f"{med['sequential_twins_per_hour']:.0f}",
        f"{med['sequential_s']:.1f}",
        "1.00",
    )
    t.add_row(
        f"Ray ({args.cpus} CPUs)",
        f"{med['ray_twins_per_hour']:.0f}",
        f"{med['ray_s']:.1f}",
        f"{med['ratio']:.2f}",
    )
    Console().print(t)
    Console().print(
        f"per twin: {med['cpu_s_per_twin']:.1f} CPU-s (quick, {args.epochs} epochs); "
        f"local Ray start-up {result['ray_startup_s']:.1f} s"
        + (
            f"; default-config twin {result['full_twin']['cpu_s']:.0f} CPU-s"
            if result["full_twin"]
            else ""
        )
    )
    s = Table(title=f"sizing: {FLEET} plants per retraining round ({size['basis']})")
    for col in ("cores", "hours per round", "memory GB"):
        s.add_column(col, justify="right")
    for c in size["clusters"]:
        s.add_row(str(c["cores"]), f"{c['hours_per_round']:.2f}", f"{c['memory_gb']:.0f}")
    Console().print(s)


if __name__ == "__main__":
    main()
