"""Closed loop over OPC-UA vs in-process: `twin serve --mode auto` against `twin sim --speed 20`.

One twin, trained on generated history (cached under the benchmark home), drives the cstr
through a disturbance scenario whose setpoints stay at the spec's (the runtime plans toward the
spec's setpoints) twice: (a) in-process, the planner on the Simulation, the plant clock
stopped while it thinks; (b) as real processes, `twin sim` serving OPC-UA at --speed X and
`twin serve --mode auto --steps N+1`, scored from the runtime's historian. Both are scored by
the same function on measured CVs over the same N control intervals of plant time, from the
runtime's first decision on; the in-process loop decides at the runtime's decision instants.

    python benchmarks/serve_loop.py [--intervals 48] [--speed 20] [--scenario feed_temp_step]
                                    [--warmup 8] [--repeats 3]

Each repeat is a fresh served run (new processes, same seed) and its own in-process twin run;
the median ratio is the headline. Prints a table, writes benchmarks/results/serve_loop.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _serveloop_core import (  # noqa: E402
    START,
    move_delays_s,
    run_inprocess,
    run_served,
    tracking_cost,
)
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from twin.paths import Home  # noqa: E402
from twin.spec import PlantSpec, load_spec  # noqa: E402

log = logging.getLogger("benchmarks.serve_loop")
RESULTS = ROOT / "benchmarks" / "results"
TOLERANCE = 0.10
SPARE = 4


@dataclass(frozen=True)
class ServeLoopConfig:
    """The served-loop comparison: scenario, length, speed and the twin it uses."""

    scenario: str = "feed_temp_step"
    """cstr scenario; its setpoints must stay at the spec's (the runtime has no setpoint channel)."""
    seed: int = 7
    """Simulator seed of both loops (noise and scenario), as in benchmarks/control.py."""
    intervals: int = 48
    """Control intervals scored (30 s each on the cstr: 24 plant minutes)."""
    speed: float = 20.0
    """`twin sim --speed`: simulated seconds per wall second."""
    warmup: int = 8
    """Served control intervals before scoring starts (the runtime's cold start: first torch
    calls take seconds of wall time, i.e. minutes of plant time at --speed 20); the in-process
    plant replays the served MVs over them, so both loops start scoring from the same state."""
    home: Path = Path(
        os.environ.get("TWIN_SERVELOOP_HOME", Path(tempfile.gettempdir()) / "twin-serveloop")
    )
    """Benchmark home: the generated history's twin (reused across runs) and the run folders."""
    hours: float = 4.0
    """Hours of generated PRBS history the twin is trained on."""
    data_seed: int = 11
    """Seed of the generated history."""
    train_seconds: float = 90.0
    """Wall-clock budget of the JEPA fit."""


def prepare_twin(spec: PlantSpec, config: ServeLoopConfig) -> Path:
    """The cached twin's models folder (trained if absent)."""
    from twin import registry
    from twin.generate import generate
    from twin.train import TrainConfig, train_plant

    home = Home.at(config.home / "twin")
    if registry.active_version(home, spec) is None:
        long = generate(
            spec,
            config.hours,
            "prbs",
            scenario="feed_temp_step",
            seed=config.data_seed,
            start=START - timedelta(hours=config.hours + 1),
        )
        frame = long.pivot_table(index="ts", columns="tag", values="value", aggfunc="last")
        train = TrainConfig(
            max_seconds=config.train_seconds, obs_max_seconds=config.train_seconds / 3
        )
        train_plant(home, spec, cfg=train, frame=frame)
    return home.models_dir(spec.name)


def compare(config: ServeLoopConfig, console: Console) -> dict:
    """Run both loops and score them; the result dict saved as JSON."""
    from twin import registry

    spec = load_spec("cstr")
    models = prepare_twin(spec, config)
    twin = registry.load_active(models.parent.parent, spec)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=config.home))
    console.print(
        f"served loop: {config.warmup + config.intervals + SPARE + 1} intervals at --speed {config.speed:g} ({run_dir})"
    )
    # Spare intervals: the runtime stops right after its last decision, its first ticks may
    # pass without a proposal (a window still filling: ood), and the scored window must be
    # covered by its historian to the end.
    served = run_served(
        models,
        run_dir,
        scenario=config.scenario,
        seed=config.seed,
        speed=config.speed,
        intervals=config.warmup + config.intervals + SPARE,
    )
    if not served.decisions:
        raise RuntimeError(f"the runtime made no proposal; see {run_dir / 'serve.log'}")
    ci = spec.plant.control_interval_s
    # Scoring starts `warmup` control intervals (plant clock) after the runtime's first
    # decision, whatever it did meanwhile (a tick without a proposal counts as an interval).
    t0 = served.decisions[0] + timedelta(seconds=config.warmup * ci)
    t1 = t0 + timedelta(seconds=config.intervals * ci)
    own = [t0 + timedelta(seconds=k * ci) for k in range(config.intervals)]
    console.print("in-process loop from the same plant state, deciding every interval")
    inproc = run_inprocess(
        spec,
        twin,
        scenario=config.scenario,
        seed=config.seed,
        decisions=[t for t in served.decisions if t < t0] + own,
        first_data=served.first_data,
        end=t1,
        replay=served.frame,
        own_from=t0,
    )
    # The served loop's record over the scored window only.
    scored = [i for i, t in enumerate(served.decisions) if t0 <= t < t1]
    served.statuses = _count([served.status_list[i] for i in scored])
    served.decisions = [served.decisions[i] for i in scored]
    served.proposed = [served.proposed[i] for i in scored]
    served.plan_ms = [served.plan_ms[i] for i in scored]
    a = tracking_cost(inproc.frame, spec, t0, t1)
    b = tracking_cost(served.frame, spec, t0, t1)
    # What the served loop differs by: when its moves reached the plant (plant seconds).
    mv = spec.mvs[0].name
    delays_b, delays_a = move_delays_s(served, mv), move_delays_s(inproc, mv)
    ratio = b["cost"] / a["cost"] if a["cost"] > 0 else float("nan")
    return {
        "config": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
            "twin": twin.version,
            "run_dir": str(run_dir),
        },
        "window": {
            "t0": t0.isoformat(),
            "t1": t1.isoformat(),
            "t0_elapsed_s": (t0 - START).total_seconds(),
            "first_data_elapsed_s": (served.first_data - START).total_seconds()
            if served.first_data
            else None,
        },
        "in_process": _row(a, inproc, delays_a),
        "served_opcua": {**_row(b, served, delays_b), "wall_s": served.wall_s},
        "ratio": ratio,
        "samples_expected": config.intervals * spec.plant.samples_per_interval,
        "within_tolerance": abs(ratio - 1.0) <= TOLERANCE,
        "tolerance": TOLERANCE,
    }


def _count(items: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out


def _row(cost: dict, run, delays: list[float]) -> dict:  # type: ignore[no-untyped-def]
    ms = [m for m in run.plan_ms if m == m]
    return {
        **cost,
        "decisions": len(run.decisions),
        "statuses": run.statuses,
        "moves_timed": len(delays),
        "moves_late": sum(1 for d in delays if d > 0),
        "delays_s": delays,
        "move_delay_s_median": statistics.median(delays) if delays else None,
        "move_delay_s_max": max(delays) if delays else None,
        "plan_ms_median": statistics.median(ms) if ms else None,
    }


def print_table(summary: dict, console: Console) -> None:
    cfg = summary["config"]
    table = Table(
        title=f"closed loop: in-process vs `twin serve --mode auto` over OPC-UA "
        f"(cstr/{cfg['scenario']}, {cfg['intervals']} intervals scored, "
        f"--speed {cfg['speed']:g})"
    )
    for col in (
        "run",
        "loop",
        "cost",
        "ratio",
        "samples",
        "decisions",
        "statuses",
        "moves late/timed",
        "move delay max s",
        "plan p50 ms",
    ):
        table.add_column(col, justify="left" if col in ("loop", "statuses") else "right")
    for i, result in enumerate(summary["runs"], start=1):
        for name, key in (("in-process", "in_process"), ("served (OPC-UA)", "served_opcua")):
            r = result[key]
            table.add_row(
                str(i),
                name,
                f"{r['cost']:.4g}",
                "1" if key == "in_process" else f"{result['ratio']:.3f}",
                f"{r['samples']:.0f}",
                str(r["decisions"]),
                ", ".join(f"{k} {v}" for k, v in r["statuses"].items()),
                f"{r['moves_late']}/{r['moves_timed']}",
                _fmt(r["move_delay_s_max"]),
                _fmt(r["plan_ms_median"]),
            )
    console.print(table)
    verdict = "within" if summary["within_tolerance"] else "OUTSIDE"
    console.print(
        f"median ratio {summary['ratio_median']:.3f} over {len(summary['runs'])} run(s): "
        f"|ratio - 1| = {abs(summary['ratio_median'] - 1):.3f}, {verdict} "
        f"{summary['tolerance']:.0%}"
    )


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=int, default=ServeLoopConfig.intervals)
    parser.add_argument("--speed", type=float, default=ServeLoopConfig.speed)
    parser.add_argument("--scenario", default=ServeLoopConfig.scenario)
    parser.add_argument("--seed", type=int, default=ServeLoopConfig.seed)
    parser.add_argument("--warmup", type=int, default=ServeLoopConfig.warmup)
    parser.add_argument("--repeats", type=int, default=3, help="served runs (the median counts)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    config = ServeLoopConfig(
        scenario=args.scenario,
        seed=args.seed,
        intervals=args.intervals,
        speed=args.speed,
        warmup=args.warmup,
    )
    config.home.mkdir(parents=True, exist_ok=True)
    console = Console(width=150)
    runs = [compare(config, console) for _ in range(args.repeats)]
    median = statistics.median(r["ratio"] for r in runs)
    summary = {
        "config": runs[0]["config"],
        "ratio_median": median,
        "ratios": [r["ratio"] for r in runs],
        "within_tolerance": abs(median - 1.0) <= TOLERANCE,
        "tolerance": TOLERANCE,
        "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "serve_loop.json"
    out.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print_table(summary, console)
    console.print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
