"""Offline generation speed: simulated seconds per wall second, per plant.

`twin generate` for 6 simulated hours of PRBS excitation (the figure the issue asks for), and,
as the baseline measured in the same run, the same plant stepped with scipy's Radau
(`solve_ivp`, tight tolerances) instead of our adaptive Dormand-Prince integrator. Medians of
several runs.

    python benchmarks/generate_speed.py [--repeats N] [--hours H]

Prints a table and writes benchmarks/results/generate_speed.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plants.base import Simulation  # noqa: E402
from twin.excitation import ExcitationConfig, design  # noqa: E402
from twin.generate import generate  # noqa: E402
from twin.spec import load_spec  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=UTC)


def _generate_wall_s(plant: str, hours: float, seed: int = 0) -> tuple[float, dict[str, float]]:
    """Wall time of one `generate` run, and how much of the CV space its data cover."""
    spec = load_spec(plant)
    t0 = time.perf_counter()
    frame = generate(spec, hours, "prbs", seed=seed, start=START, progress=False)
    wall = time.perf_counter() - t0
    wide = frame.pivot(index="ts", columns="tag", values="value")
    coverage: dict[str, float] = {}
    for tag in spec.cvs:
        lo, hi = tag.operating_limits
        values = wide[tag.name]
        coverage[f"{tag.name}_p1"] = float(values.quantile(0.01))
        coverage[f"{tag.name}_p99"] = float(values.quantile(0.99))
        coverage[f"{tag.name}_frac_outside_operating"] = float(
            ((values < lo) | (values > hi)).mean()
        )
        coverage[f"{tag.name}_frac_outside_limits"] = float(
            ((values < tag.limits[0]) | (values > tag.limits[1])).mean()
        )
    if plant == "cstr":
        coverage["T_frac_340_360_near_middle"] = float(wide["T"].between(340.0, 360.0).mean())
    return wall, coverage


def _stepping_wall_s(plant: str, integrator: str, n_samples: int) -> float:
    """Wall time of n_samples steps under the same PRBS schedule, without the frame building."""
    spec = load_spec(plant)
    sim = Simulation(spec, seed=0, start=START, integrator=integrator)  # type: ignore[arg-type]
    per = spec.plant.samples_per_interval
    config = ExcitationConfig(time_constant_s=sim.model.time_constant_s)
    schedule = design(
        spec, n_samples // per + 1, "prbs", np.random.default_rng(0), start=sim.u, config=config
    )
    names = [t.name for t in spec.mvs]
    t0 = time.perf_counter()
    for k in range(n_samples):
        if k % per == 0:
            sim.set_mvs(dict(zip(names, schedule[k // per].tolist(), strict=True)))
        sim.step()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="Runs per figure (median).")
    parser.add_argument(
        "--hours", type=float, default=6.0, help="Simulated hours per generate run."
    )
    parser.add_argument(
        "--baseline-samples", type=int, default=600, help="Samples stepped for the ratio."
    )
    args = parser.parse_args()

    rows = []
    for plant in ("cstr", "four_tank"):
        spec = load_spec(plant)
        sim_s = args.hours * 3600.0
        runs = [_generate_wall_s(plant, args.hours, seed) for seed in range(args.repeats)]
        gen = statistics.median(w for w, _ in runs)
        coverage = {k: statistics.median(c[k] for _, c in runs) for k in runs[0][1]}
        n = args.baseline_samples
        ours = statistics.median(_stepping_wall_s(plant, "rk45", n) for _ in range(args.repeats))
        radau = statistics.median(
            _stepping_wall_s(plant, "solve_ivp", n) for _ in range(args.repeats)
        )
        rows.append(
            {
                "plant": plant,
                "simulated_h": args.hours,
                "samples": round(sim_s / spec.plant.sample_period_s),
                "generate_wall_s": gen,
                "sim_s_per_wall_s": sim_s / gen,
                "step_us_rk45": 1e6 * ours / n,
                "step_us_radau_baseline": 1e6 * radau / n,
                "speedup_vs_radau": radau / ours,
                "coverage_median_over_seeds": coverage,
            }
        )

    table = Table(
        title=f"twin generate: {args.hours:g} simulated hours, PRBS (median of {args.repeats})"
    )
    for col in (
        "plant",
        "samples",
        "wall s",
        "sim s / wall s",
        "step µs (ours)",
        "step µs (Radau)",
        "speed-up",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["plant"],
            f"{r['samples']:,}",
            f"{r['generate_wall_s']:.2f}",
            f"{r['sim_s_per_wall_s']:,.0f}",
            f"{r['step_us_rk45']:.0f}",
            f"{r['step_us_radau_baseline']:.0f}",
            f"{r['speedup_vs_radau']:.1f}x",
        )
    console = Console()
    console.print(table)
    cov = Table(title="What the PRBS data cover (median over seeds)")
    for col in ("plant", "CV", "p1", "p99", "outside operating", "outside eng. limits"):
        cov.add_column(col, justify="right")
    for r in rows:
        c = r["coverage_median_over_seeds"]
        for tag in load_spec(r["plant"]).cvs:
            n = tag.name
            cov.add_row(
                r["plant"],
                n,
                f"{c[n + '_p1']:.3g}",
                f"{c[n + '_p99']:.4g}",
                f"{100 * c[n + '_frac_outside_operating']:.1f}%",
                f"{100 * c[n + '_frac_outside_limits']:.1f}%",
            )
    console.print(cov)
    out = ROOT / "benchmarks" / "results" / "generate_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"repeats": args.repeats, "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
