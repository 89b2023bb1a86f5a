"""Planning latency: wall time per decision of the JEPA planner, scipy refinement included.

Uses the twins cached by benchmarks/control.py (trained there if absent), with the disturbance
observer's gains saved with each twin. States come from the plant simulator running an
unmeasured-disturbance scenario (the observer at work) under the planner's own moves. A
decision is timed whole: the encoding, the OOD gate, the observer's filter step and the
planning. For scale, the same run times one batched rollout of the twin (the unit of work) and
the sampling stage alone (CEM, no refinement); timings are medians and 95th percentiles over the
decisions, as wall time and as the thread's CPU time (what a decision costs on an otherwise idle
core: the machine this runs on is shared, and the 1-minute load average is recorded beside the
figures).

    python benchmarks/plan.py [--json] [--decisions N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from control import START, BenchConfig, prepare_twin  # noqa: E402

from plants.base import Simulation  # noqa: E402
from twin.plan.controller import PlanningController  # noqa: E402
from twin.plan.proposal import Proposal  # noqa: E402
from twin.plan.settings import PlannerConfig  # noqa: E402
from twin.spec import load_spec  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CASES = {"cstr": "fouling", "four_tank": "leak"}
"""The scenario each plant is timed on: an unmeasured disturbance, so the observer works."""
TARGET_MS_P95 = 60.0


def time_plant(plant: str, scenario: str, decisions: int) -> dict[str, float]:
    """Latency of `decisions` planning decisions along a closed-loop run."""
    spec = load_spec(plant)
    tw = prepare_twin(spec, BenchConfig(), 0, {})
    assert tw is not None
    twin = tw.model
    full = PlanningController(twin, spec, observer_gains=tw.gains)  # type: ignore[arg-type]
    sampling = PlanningController(  # type: ignore[arg-type]
        twin, spec, PlannerConfig(refine_iterations=0), observer_gains=tw.gains
    )
    sim = Simulation(spec, seed=3, scenario=scenario, start=START)
    spi = spec.plant.samples_per_interval
    rows = [sim.step() for _ in range(twin.window)]
    full_ms, cem_ms, rollout_ms, cpu_ms = [], [], [], []
    horizon = full.config.horizon
    for _ in range(decisions):
        window = np.array([[r[n] for n in twin.tag_names] for r in rows[-twin.window :]])
        start, cpu0 = time.perf_counter(), time.thread_time()
        out = full.decide(window, sim.time, setpoints=sim.setpoints)
        wall = 1000.0 * (time.perf_counter() - start)
        cpu = 1000.0 * (time.thread_time() - cpu0)
        start = time.perf_counter()
        cem = sampling.decide(window, sim.time, setpoints=sim.setpoints)
        cem_wall = 1000.0 * (time.perf_counter() - start)
        if isinstance(out, Proposal) and isinstance(cem, Proposal):
            full_ms.append(wall)
            cpu_ms.append(cpu)
            cem_ms.append(cem_wall)
            sim.set_mvs(out.proposed)
        with torch.inference_mode():
            x = torch.as_tensor(window, dtype=torch.float32)[None]
            z = twin.encode(torch.nan_to_num(x), torch.isfinite(x))
            u = torch.as_tensor([list(sim.mv.values())], dtype=torch.float32)
            start = time.perf_counter()
            twin.readout(
                twin.rollout(
                    z.expand(full.config.population, -1),
                    u[:, None].expand(full.config.population, horizon, -1),
                )
            )
            rollout_ms.append(1000.0 * (time.perf_counter() - start))
        rows += [sim.step() for _ in range(spi)]
    full_a, cem_a = np.array(full_ms), np.array(cem_ms)
    return {
        "horizon_intervals": horizon,
        "decisions": len(full_a),
        "plan_ms_p50": float(np.percentile(full_a, 50)),
        "plan_ms_p95": float(np.percentile(full_a, 95)),
        "plan_cpu_ms_p50": float(np.percentile(cpu_ms, 50)),
        "plan_cpu_ms_p95": float(np.percentile(cpu_ms, 95)),
        "load_average_1min": os.getloadavg()[0],
        "cem_only_ms_p50": float(np.percentile(cem_a, 50)),
        "batched_rollout_ms_p50": float(np.median(rollout_ms)),
        "plan_over_rollout": float(np.percentile(full_a, 50) / np.median(rollout_ms)),
        "plan_p95_over_rollout": float(np.percentile(full_a, 95) / np.median(rollout_ms)),
        "target_ms_p95": TARGET_MS_P95,
        "scenario": scenario,
        "observer_gains": tw.gains.source,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--decisions", type=int, default=40)
    parser.add_argument("--plants", default=",".join(CASES), help="plants to time")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    console = Console(stderr=args.json, width=150)
    results: dict = {"plants": {}}
    for plant in args.plants.split(","):
        results["plants"][plant] = time_plant(plant, CASES[plant], args.decisions)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "plan.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    table = Table(title="planning time per decision (ms)")
    for col in (
        "plant",
        "horizon",
        "p50",
        "p95",
        "CPU p50",
        "CPU p95",
        "CEM only p50",
        "one batched rollout",
        "p50 / rollout",
        "load",
    ):
        table.add_column(col, justify="left" if col == "plant" else "right")
    for plant, r in results["plants"].items():
        table.add_row(
            plant,
            str(r["horizon_intervals"]),
            f"{r['plan_ms_p50']:.1f}",
            f"{r['plan_ms_p95']:.1f}",
            f"{r['plan_cpu_ms_p50']:.1f}",
            f"{r['plan_cpu_ms_p95']:.1f}",
            f"{r['cem_only_ms_p50']:.1f}",
            f"{r['batched_rollout_ms_p50']:.2f}",
            f"{r['plan_over_rollout']:.1f}",
            f"{r['load_average_1min']:.1f}",
        )
    console.print(table)
    console.print(f"saved {RESULTS / 'plan.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
