"""Fleet benchmark: twins per hour trained one after another vs as Ray tasks on this machine,
and a sizing for 1,000 plants from the measured per-twin cost.

Run: nice -n 10 python benchmarks/fleet.py [--runs 3] [--seeds 2] [--epochs 15]
     python benchmarks/fleet.py --sizing-only [--sizing-jobs 2]   (only the per-twin cost and sizing)
Prints tables and writes benchmarks/results/fleet.json (each part keeps the other's figures).

Each run trains the same twins (cstr and four_tank, --seeds seeds each, `twin train --quick
--epochs E` through twin.fleet.jobs.run_job, torch threads 1 per twin) twice, in fresh homes
holding the same history: sequentially in this process, then as Ray tasks (one CPU each) on a
local Ray of --cpus CPUs started once before the runs (its start-up is reported apart).
Figures are medians over --runs runs; the ratio is Ray over sequential in the same run.

Sizing (--sizing-only runs only this part): one twin per plant with `twin train PLANT --seed 0`, no other
option (the default recipe, twin/train_presets.py), each in its own child process on
--sizing-hours of history, measuring wall time, CPU-seconds (user + system of the child) and peak
RSS, and reading from the model card how each fit ended (early stop, all epochs or the
wall-clock safety net). CPU-seconds per twin is the figure that does not depend on the load of
this shared machine; the 1,000-plant sizing is computed from it. The ratio is saved first.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _machine import machine_info
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
ROUND_HOURS = (8, 24)
MEMORY_MARGIN = 1.5


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
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "twins"}
    return {"runs": runs, "median": med, "ray_startup_s": startup}


def _train_child(home: Path, plant: str, log: Path) -> subprocess.Popen:
    """`twin train PLANT --seed 0` with no other option, in its own process."""
    argv = ["train", plant, "--seed", "0", "--home", str(home)]
    code = "import sys; from twin.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "TQDM_DISABLE": "1"}
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code, *argv], stdout=out, stderr=out, env=env
        )


def _reap(proc: subprocess.Popen, t0: float) -> dict:
    """Wait for one child and take its own resource usage (os.wait4: this child only)."""
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "exit_code": proc.returncode,
        "wall_s": time.perf_counter() - t0,
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "user_s": ru.ru_utime,
        "sys_s": ru.ru_stime,
        "max_rss_mb": ru.ru_maxrss / 1024,  # Linux reports KiB
    }


def _how_it_ended(home: Path, plant: str, log: Path) -> dict:
    """The version `twin train` printed and, from its model card, how each fit ended."""
    from twin import registry

    lines = log.read_text().split()
    spec = load_spec(plant)
    version = lines[-1] if lines else ""
    card = registry.load_checkpoint(str(home), spec, version)["card"]
    t = card["training"]
    cfg = t["train_config"]
    fits = {
        "jepa": {"stopped": t["stopped"], "steps": t["steps"], "seconds": t["seconds"]},
        "observation_model": {
            "stopped": t["obs_model_stopped"],
            "steps": t["obs_model_steps"],
            "seconds": t["obs_model_seconds"],
        },
    }
    cut = [name for name, f in fits.items() if "safety net" in f["stopped"]]
    return {
        "version": version,
        "fits": fits,
        "safety_net_bound": cut,
        "max_steps_per_fit": cfg["epochs"] * cfg["steps_per_epoch"],
        "max_seconds_per_fit": cfg["max_seconds"],
        "nrmse": {m: r["nrmse"] for m, r in card["evaluation"]["models"].items()},
    }


def measure_default_twins(args: argparse.Namespace, work: Path) -> list[dict]:
    """One default-recipe twin per plant (seed 0), --sizing-jobs children at a time."""
    source = _history(work / "sizing", args.sizing_hours)
    pending, done = list(PLANTS), []
    running: list[tuple[str, Path, Path, subprocess.Popen, float, tuple]] = []
    while pending or running:
        while pending and len(running) < args.sizing_jobs:
            plant = pending.pop(0)
            home = _fresh(source, work / f"default-{plant}").root
            log = work / f"default-{plant}.log"
            load = os.getloadavg()
            running.append(
                (plant, home, log, _train_child(home, plant, log), time.perf_counter(), load)
            )
            print(f"training default {plant} twin (load {load[0]:.1f})", file=sys.stderr)
        plant, home, log, proc, t0, load = running.pop(0)
        row = {"plant": plant, "load_average_before": load, **_reap(proc, t0)}
        row["load_average_after"] = os.getloadavg()
        if row["exit_code"] != 0:
            sys.exit(f"fleet sizing: default {plant} twin failed:\n{log.read_text()[-2000:]}")
        row.update(_how_it_ended(home, plant, log))
        print(f"{plant}: {row['cpu_s']:.0f} CPU-s, {row['wall_s']:.0f} s wall", file=sys.stderr)
        done.append(row)
    return done


def _cpu_estimate(twin: dict) -> tuple[float, float]:
    """CPU-seconds of a full default twin: (measured, upper estimate). A fit cut short by the
    wall-clock safety net (likely under heavy load) did fewer steps than the recipe allows, so
    the measured figure is then a lower bound; the upper estimate scales it to every fit running
    all its steps (the recipe's epochs x steps_per_epoch; early stopping normally ends sooner)."""
    cpu = twin["cpu_s"]
    if not twin["safety_net_bound"]:
        return cpu, cpu
    done = sum(f["steps"] for f in twin["fits"].values())
    return cpu, cpu * len(twin["fits"]) * twin["max_steps_per_fit"] / max(done, 1)


def sizing(twins: list[dict]) -> dict:
    """1,000 plants per retraining round from the dearer plant's measured CPU-seconds per twin."""
    measured = max(_cpu_estimate(t)[0] for t in twins)
    upper = max(_cpu_estimate(t)[1] for t in twins)
    rss = max(t["max_rss_mb"] for t in twins)
    worker_mb = math.ceil(rss * MEMORY_MARGIN / 256) * 256

    def at(cpu_s: float) -> dict:
        cpu_hours = FLEET * cpu_s / 3600
        return {
            "cpu_s_per_twin": cpu_s,
            "cpu_hours_per_round": cpu_hours,
            "cores_for_round_of_hours": {str(h): math.ceil(cpu_hours / h) for h in ROUND_HOURS},
            "hours_per_round_on_cores": {str(c): cpu_hours / c for c in CLUSTER_CORES},
        }

    return {
        "basis": "twin train PLANT --seed 0 (default recipe), one per plant, dearer plant",
        "plants": len(twins),
        "fleet": FLEET,
        "assumptions": (
            "one twin per core (torch threads 1, as the recipe sets), CPU-seconds per twin as "
            "measured here, perfect packing of twins onto cores, no Ray start-up or data-read "
            "contention; memory per worker = peak RSS x "
            f"{MEMORY_MARGIN} rounded up to 256 MB"
        ),
        "measured": at(measured),
        "upper_estimate": at(upper),
        "safety_net_bound": any(t["safety_net_bound"] for t in twins),
        "peak_rss_mb": rss,
        "memory_per_worker_mb": worker_mb,
        "memory_gb_on_cores": {str(c): c * worker_mb / 1024 for c in CLUSTER_CORES},
        "gpu_node": "not measured: this machine has no GPU",
        "twins": twins,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=2, help="Twins per plant per run.")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--hours", type=float, default=2.0, help="History per plant.")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--sizing-only", action="store_true", help="Only the default-twin cost.")
    ap.add_argument("--no-sizing", action="store_true", help="Only the Ray vs sequential part.")
    ap.add_argument("--sizing-hours", type=float, default=8.0, help="History of the sizing twins.")
    ap.add_argument("--sizing-jobs", type=int, default=1, help="Sizing twins trained at once.")
    args = ap.parse_args()
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"benchmark": "fleet"}
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        if not args.sizing_only:
            result = measure(args, Path(tmp))
            report(result, args)
            saved.update(result, settings=vars(args), machine=_machine(args), created=_now())
            save(saved)  # the ratio is kept even if the long sizing run is cut short
        if not args.no_sizing:
            load = os.getloadavg()
            twins = measure_default_twins(args, Path(tmp))
            size = sizing(twins)
            size.update(
                created=_now(),
                settings={"sizing_hours": args.sizing_hours, "sizing_jobs": args.sizing_jobs},
                machine={**machine_info(), "load_average_at_start": load},
            )
            report_sizing(size)
            saved["sizing"] = size
            for old in ("sizing_1000_plants", "full_twin"):  # the quick-twin sizing it replaces
                saved.pop(old, None)
            save(saved)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _machine(args: argparse.Namespace) -> dict:
    return {**machine_info(), "ray_cpus": args.cpus, "load_average": os.getloadavg()}


def save(data: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2))
    Console().print(f"wrote {RESULTS}")


def report(result: dict, args: argparse.Namespace) -> None:
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
        f"per quick twin: {med['cpu_s_per_twin']:.1f} CPU-s ({args.epochs} epochs); "
        f"local Ray start-up {result['ray_startup_s']:.1f} s"
    )


def report_sizing(size: dict) -> None:
    t = Table(title="default-recipe twin (twin train PLANT --seed 0), one per plant")
    for col in (
        "plant",
        "CPU-s",
        "wall s",
        "peak RSS MB",
        "load before/after",
        "JEPA",
        "obs model",
    ):
        t.add_column(col, justify="right")
    for tw in size["twins"]:
        t.add_row(
            tw["plant"],
            f"{tw['cpu_s']:.0f}",
            f"{tw['wall_s']:.0f}",
            f"{tw['max_rss_mb']:.0f}",
            f"{tw['load_average_before'][0]:.1f}/{tw['load_average_after'][0]:.1f}",
            tw["fits"]["jepa"]["stopped"].split(" (")[0],
            tw["fits"]["observation_model"]["stopped"].split(" (")[0],
        )
    Console().print(t)
    s = Table(title=f"sizing: {FLEET} plants per retraining round, one twin per core")
    keys = ("measured", "upper_estimate")
    s.add_column("")
    for key in keys:
        s.add_column(key.replace("_", " "), justify="right")
    s.add_row("CPU-s per twin", *(f"{size[k]['cpu_s_per_twin']:.0f}" for k in keys))
    s.add_row("CPU-hours per round", *(f"{size[k]['cpu_hours_per_round']:.1f}" for k in keys))
    for h in ROUND_HOURS:
        s.add_row(
            f"cores for a {h} h round",
            *(str(size[k]["cores_for_round_of_hours"][str(h)]) for k in keys),
        )
    for c in CLUSTER_CORES:
        s.add_row(
            f"hours per round on {c} cores ({size['memory_gb_on_cores'][str(c)]:.0f} GB)",
            *(f"{size[k]['hours_per_round_on_cores'][str(c)]:.2f}" for k in keys),
        )
    Console().print(s)
    Console().print(
        f"memory per concurrent worker: {size['memory_per_worker_mb']} MB "
        f"(peak RSS {size['peak_rss_mb']:.0f} MB x {MEMORY_MARGIN}); GPU node: {size['gpu_node']}"
        + (
            "; a fit hit the wall-clock safety net: measured CPU-s is a lower bound"
            if size["safety_net_bound"]
            else ""
        )
    )


if __name__ == "__main__":
    main()
