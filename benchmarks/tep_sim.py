"""Tennessee Eastman (tep): simulator speed and what the plant does with its setpoints held.

1. Speed: `twin generate tep` (6 simulated hours, PRBS on the 9 setpoints) in simulated
   seconds per wall second, median of repeats.
2. Every scenario with the base-case setpoints held (the plant without APC, regulatory layer
   only), per seed: shutdowns, time to shutdown, operating cost ($/h, mean over the last half
   of the run), G in product (mean absolute deviation from the objective's target) and CV
   samples outside their operating limits. The base case runs 48 h (steady-state cost over
   its second day).
3. IDV(6) baseline without the regulatory layer: every valve held at its base position.

Means over seeds with a 95 % t-interval.

    python benchmarks/tep_sim.py [--seeds 3] [--hours 24] [--repeats 3]

Prints the tables and writes benchmarks/results/tep_sim.json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy import stats

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plants import load_plant_model  # noqa: E402
from plants.base import Simulation  # noqa: E402
from twin.generate import generate  # noqa: E402
from twin.spec import PlantSpec, load_spec  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=UTC)
HOUR_S = 3600.0


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % t-interval (nan for fewer than two values)."""
    arr = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if len(arr) == 0:
        return math.nan, math.nan
    if len(arr) < 2:
        return float(arr.mean()), math.nan
    half = stats.t.ppf(0.975, len(arr) - 1) * arr.std(ddof=1) / math.sqrt(len(arr))
    return float(arr.mean()), float(half)


def generate_speed(spec: PlantSpec, repeats: int) -> dict[str, float]:
    walls = []
    for seed in range(repeats):
        t0 = time.perf_counter()
        generate(spec, 6.0, "prbs", seed=seed, start=START, progress=False)
        walls.append(time.perf_counter() - t0)
    wall = statistics.median(walls)
    return {"hours": 6.0, "wall_s_median": wall, "sim_s_per_wall_s": 6 * HOUR_S / wall}


def held_run(spec: PlantSpec, scenario: str, seed: int, hours: float) -> dict[str, float]:
    """The scenario with the base-case setpoints held: what the regulatory layer alone does."""
    sim = Simulation(spec, seed=seed, scenario=scenario, start=START)
    cvs = [t for t in spec.cvs]
    n = round(hours * HOUR_S / spec.plant.sample_period_s)
    rows = [sim.step() for _ in range(n)]
    trip = sim.model.trip  # type: ignore[attr-defined]
    end = len(rows) if trip is None else int(trip.time_s / spec.plant.sample_period_s)
    live = rows[:end]
    second_half = live[len(live) // 2 :]
    target_g = spec.objective.setpoints["product_g"]
    outside = sum(
        not (t.operating_limits[0] <= r[t.name] <= t.operating_limits[1]) for r in live for t in cvs
    )
    return {
        "shutdown": float(trip is not None),
        "shutdown_h": trip.time_s / HOUR_S if trip is not None else math.nan,
        "shutdown_reason": trip.reason if trip is not None else "",
        "cost_per_h": float(np.mean([r["operating_cost"] for r in second_half])),
        "g_abs_dev": float(np.mean([abs(r["product_g"] - target_g) for r in live])),
        "cv_samples_outside_operating": float(outside),
    }


def open_loop_idv6(seed: int, horizon_h: float = 24.0) -> float:
    """Hours from the A-feed loss to the trip with every valve held at its base position."""
    from tep_studio import TennesseeEastmanProcess

    process = TennesseeEastmanProcess()
    process.reset(seed=float(seed + 1))
    valves = process.state[38:50].copy()
    idv = np.zeros(28)
    idv[5] = 1.0
    while process.time < horizon_h:
        result = process.advance(valves, control_interval=0.0005, disturbances=idv)
        if result.shutdown_status["terminated"]:
            return float(process.time)
    return math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--hours", type=float, default=24.0, help="per fault scenario")
    parser.add_argument("--repeats", type=int, default=3, help="generate timing runs")
    args = parser.parse_args()
    spec = load_spec("tep")
    console = Console()

    speed = generate_speed(spec, args.repeats)
    console.print(
        f"twin generate tep --hours 6: {speed['wall_s_median']:.1f} s wall, "
        f"{speed['sim_s_per_wall_s']:.0f} simulated s per wall s (median of {args.repeats})"
    )

    scenarios = sorted(load_plant_model(spec).scenarios)
    results: dict[str, dict[str, object]] = {}
    table = Table(title=f"tep, base-case setpoints held ({args.seeds} seeds, mean ± 95 % CI)")
    for col in (
        "scenario",
        "hours",
        "shutdowns",
        "time to shutdown h",
        "cost $/h",
        "|G - target| mol%",
        "CV samples outside op.",
    ):
        table.add_column(col, justify="right" if col != "scenario" else "left")
    for name in scenarios:
        hours = 48.0 if name == "base" else args.hours
        runs = [held_run(spec, name, seed, hours) for seed in range(args.seeds)]
        summary: dict[str, object] = {"hours": hours, "runs": runs}
        for key in ("shutdown_h", "cost_per_h", "g_abs_dev", "cv_samples_outside_operating"):
            summary[key] = mean_ci([float(r[key]) for r in runs])  # type: ignore[arg-type]
        summary["shutdowns"] = int(sum(float(r["shutdown"]) for r in runs))  # type: ignore[arg-type]
        results[name] = summary
        fmt = lambda mc: "-" if math.isnan(mc[0]) else f"{mc[0]:.2f} ± {mc[1]:.2f}"  # noqa: E731
        table.add_row(
            name,
            f"{hours:g}",
            f"{summary['shutdowns']}/{args.seeds}",
            fmt(summary["shutdown_h"]),
            fmt(summary["cost_per_h"]),
            fmt(summary["g_abs_dev"]),
            fmt(summary["cv_samples_outside_operating"]),
        )
    console.print(table)

    open_loop = [open_loop_idv6(seed) for seed in range(args.seeds)]
    ol = mean_ci(open_loop)
    layer = results["idv6"]["shutdown_h"]
    console.print(
        f"IDV(6) time to shutdown after onset: valves held {ol[0]:.2f} ± {ol[1]:.2f} h; "
        f"regulatory layer alone {layer[0] - 1.0:.2f} ± {layer[1]:.2f} h"  # type: ignore[index]
    )
    out = {
        "generate": speed,
        "held_setpoints": results,
        "idv6_open_loop_shutdown_h": {"runs": open_loop, "mean_ci": ol},
        "seeds": args.seeds,
        "fault_hours": args.hours,
    }
    path = ROOT / "benchmarks" / "results" / "tep_sim.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    console.print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
