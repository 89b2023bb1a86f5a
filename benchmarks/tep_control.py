"""Tennessee Eastman (tep) closed loop: the twin's planner as the supervisory layer.

The JEPA planner moves the regulatory layer's 9 setpoints every control interval (0.1 h) to cut
the operating cost (the spec's `economic` term) while tracking G in product and the production
rate, against the base-case setpoints held (the plant without APC: Ricker's layer alone). The
twins are the ones benchmarks/tep_predict.py trained on 48 h of PRBS history (read from its
JSON and the benchmark home); the planner uses the observer gains saved with each. Optionally
the linear MPC on the ARX model identified on the same data (same planner, limits and cost).

Per run: operating cost $/h (mean over the run while the plant runs, and over its last half),
cost per m3 of product, G-in-product mean absolute deviation from its target, production,
shutdowns (and when), engineering-limit and operating-limit crossings of the CVs (true values),
MV moves outside operating limits or max_move, planning time per decision (wall and CPU,
p50/p95) and the planner's refusals by code. Means over twin seeds x scenario seeds with a
95 % t-interval; the ratio to hold is paired (same scenario seed).

No oracle here: the control benchmark's oracle NMPC steps its plant model's physics, and the
tep model is a sampled-data loop around one C kernel that the simulation itself is stepping.

    python benchmarks/tep_control.py [--scenarios base idv1 idv8 idv6] [--hours 12]
        [--twin-seeds 0] [--scenario-seeds 7 8 9] [--controllers hold jepa]

Prints a table; writes benchmarks/results/tep_control.json (after every scenario).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _control_report import Run, mean_ci, score  # noqa: E402
from _machine import machine_info  # noqa: E402
from control import Twin, _Decider, decide_and_apply, record_sample  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from tep_predict import HOME  # noqa: E402
from tep_predict import RESULTS as PREDICT_RESULTS  # noqa: E402

from plants.base import Simulation  # noqa: E402
from twin import registry  # noqa: E402
from twin.plan.observer import ObserverGains  # noqa: E402
from twin.plan.settings import PlannerConfig  # noqa: E402
from twin.plan.threads import limit_planning_threads  # noqa: E402
from twin.spec import PlantSpec, load_spec  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "tep_control.json"
START = datetime(2026, 1, 1, tzinfo=UTC)
HOUR_S = 3600.0


def twin_home(predicted: dict) -> Path:
    """The home tep_predict.py saved its twins in: its JSON's, else its default."""
    return Path(predicted.get("config", {}).get("home", HOME))


def load_twins(seeds: list[int]) -> tuple[Path, list[Twin]]:
    """The twins tep_predict.py trained (by training seed), with their ARX and observer gains."""
    spec = load_spec("tep")
    predicted = json.loads(PREDICT_RESULTS.read_text(encoding="utf-8"))
    home = twin_home(predicted)
    trained = predicted["runs"]
    by_seed = {r["seed"]: r for r in trained}
    missing = [s for s in seeds if s not in by_seed]
    if missing:
        raise SystemExit(f"no tep twin for seeds {missing}: run benchmarks/tep_predict.py first")
    twins = []
    for s in seeds:
        version = by_seed[s]["version"]
        model, gains = registry.load_for_planning(home, spec, version)
        arx, _ = registry.load_baselines(registry.load_checkpoint(home, spec, version))
        gains = gains or ObserverGains.constant(
            PlannerConfig().observer_latent_gain, PlannerConfig().observer_output_gain
        )
        info = {"seed": s, "version": version, "stopped": by_seed[s]["stopped"]}
        twins.append(Twin(model, arx, gains, info))
    return home, twins


class Decides(Protocol):
    """A controller behind one call: measured rows -> the MV values it wants (control.py)."""

    def decide(self, rows: list[dict[str, float]], run: Run) -> dict[str, float]: ...


def run_case(
    spec: PlantSpec, scenario: str, seed: int, hours: float, controller: str, twin: Twin | None
) -> dict:
    """One closed-loop run: the controller decides every control interval."""
    run, trip_s = simulate(
        spec,
        scenario,
        seed,
        hours,
        lambda sim: _Decider(controller, spec, sim, twin),
        int(twin.model.window) if twin is not None else 30,  # type: ignore[attr-defined]
    )
    return summarise_run(spec, run, trip_s)


def simulate(
    spec: PlantSpec,
    scenario: str,
    seed: int,
    hours: float,
    decider: Callable[[Simulation], Decides],
    warmup: int = 30,
) -> tuple[Run, float]:
    """Run the scenario with the decider made for its simulation deciding every control
    interval, after a pre-roll of `warmup` samples at the base-case setpoints (a full window;
    the same for every controller). Returns the scored run and the trip time (s; NaN: none)."""
    sim = Simulation(spec, seed=seed, scenario=scenario, start=START)
    decides = decider(sim)
    spi = spec.plant.samples_per_interval
    cvs = [t.name for t in spec.cvs]
    run = Run(y={n: [] for n in cvs}, sp={n: [] for n in cvs}, u={n: [] for n in sim.mv})
    rows = [sim.measure()] + [sim.step() for _ in range(warmup)]
    trip_s = math.nan
    for k in range(round(hours * HOUR_S / spec.plant.sample_period_s)):
        if k % spi == 0:
            decide_and_apply(decides, sim, rows, run)  # type: ignore[arg-type]
        rows.append(sim.step())
        del rows[:-400]
        trip = sim.model.trip  # type: ignore[attr-defined]
        if trip is not None:
            trip_s = trip.time_s
            break
        record_sample(sim, run, cvs)
    return run, trip_s


def summarise_run(spec: PlantSpec, run: Run, trip_s: float) -> dict:
    s = score(run, spec)
    cost = np.array(run.y["operating_cost"])
    flow = np.array(run.y["product_flow"])
    half = len(cost) // 2
    g_target = spec.objective.setpoints["product_g"]
    return {
        "shutdown": int(math.isfinite(trip_s)),
        "shutdown_h": trip_s / HOUR_S if math.isfinite(trip_s) else None,
        "cost_per_h": float(cost.mean()),
        "cost_per_h_last_half": float(cost[half:].mean()),
        "cost_per_m3": float(cost.sum() / flow.sum()),
        "product_flow": float(flow.mean()),
        "product_g_mad": float(np.mean(np.abs(np.array(run.y["product_g"]) - g_target))),
        "engineering_limit_crossings": s["cv_limit_crossings"],
        "engineering_limit_crossings_by_cv": crossings_by_cv(spec, run),
        "operating_limit_samples": s["cv_violations"],
        "mv_violations": s["mv_violations"],
        "plan_ms_p50": s["plan_ms_p50"],
        "plan_ms_p95": s["plan_ms_p95"],
        "plan_cpu_ms_p95": s["plan_cpu_ms_p95"],
        "decisions": s["decisions"],
        "no_proposal": s.get("no_proposal", {}),
        "fallback_decisions": run.fallback_decisions,
        "final_setpoints": {n: v[-1] for n, v in run.u.items() if v},
    }


def crossings_by_cv(spec: PlantSpec, run: Run) -> dict[str, int]:
    """True-value samples outside each CV's engineering limits (only CVs that crossed)."""
    out = {}
    for n, ys in run.y.items():
        lo, hi = spec.tag(n).limits
        y = np.array(ys)
        count = int(np.sum((y < lo) | (y > hi)))
        if count:
            out[n] = count
    return out


NUMERIC = (
    "shutdown",
    "cost_per_h",
    "cost_per_h_last_half",
    "cost_per_m3",
    "product_flow",
    "product_g_mad",
    "engineering_limit_crossings",
    "operating_limit_samples",
    "mv_violations",
    "plan_ms_p95",
    "plan_cpu_ms_p95",
    "cost_ratio_to_hold",
    "cost_ratio_to_hold_last_half",
    "cost_per_m3_ratio_to_hold",
)


def aggregate(rows: list[dict]) -> dict:
    out: dict = {"runs": rows}
    for k in NUMERIC:
        vals = [r[k] for r in rows if r.get(k) is not None]
        if vals:
            m, h = mean_ci(vals)
            out[k] = {"mean": m, "ci95": h}
    out["shutdowns"] = int(sum(r["shutdown"] for r in rows))
    out["engineering_limit_crossings_total"] = int(
        sum(r["engineering_limit_crossings"] for r in rows)
    )
    return out


def show(results: dict, console: Console) -> None:
    t = Table(title="tep closed loop (mean ± 95 % CI over seeds)")
    for c in ("scenario", "controller", "$/h", "ratio to hold", "$/m3", "|G-tgt|", "F m3/h"):
        t.add_column(c)
    for c in ("shutdowns", "eng.", "op.", "p95 ms"):
        t.add_column(c, justify="right")

    def pm(row: dict, k: str, fmt: str = ".3g") -> str:
        v = row.get(k)
        return "-" if v is None else f"{v['mean']:{fmt}} ± {v['ci95']:{fmt}}"

    for sc, by_ctl in results["scenarios"].items():
        for ctl, row in by_ctl.items():
            t.add_row(
                sc,
                ctl,
                pm(row, "cost_per_h", ".4g"),
                pm(row, "cost_ratio_to_hold"),
                pm(row, "cost_per_m3"),
                pm(row, "product_g_mad"),
                pm(row, "product_flow", ".4g"),
                str(row["shutdowns"]),
                str(row["engineering_limit_crossings_total"]),
                pm(row, "operating_limit_samples"),
                pm(row, "plan_ms_p95", ".4g"),
            )
    console.print(t)


def save(results: dict) -> None:
    """Merge this run's scenarios into tep_control.json (runs per scenario may go in parallel)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        merged = {"config": {}, "scenarios": {}}
        if RESULTS.is_file():
            merged = json.loads(RESULTS.read_text(encoding="utf-8"))
        merged["scenarios"].update(results["scenarios"])
        merged.setdefault("config_by_scenario", {}).update(
            {sc: results["config"] for sc in results["scenarios"]}
        )
        merged["config"] = results["config"]
        RESULTS.write_text(json.dumps(merged, indent=2), encoding="utf-8")


def combine(suffixes: list[str]) -> dict:
    """Pool the scenarios saved under name+suffix (one process per scenario seed) into name."""
    with open(RESULTS.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        merged = json.loads(RESULTS.read_text(encoding="utf-8"))
        parts: dict[str, dict[str, list[dict]]] = {}
        configs: dict[str, list[dict]] = {}
        for key in [k for k in merged["scenarios"] if any(k.endswith(x) for x in suffixes)]:
            name = key[: -len(next(x for x in suffixes if key.endswith(x)))]
            for ctl, agg in merged["scenarios"].pop(key).items():
                parts.setdefault(name, {}).setdefault(ctl, []).extend(agg["runs"])
            configs.setdefault(name, []).append(merged["config_by_scenario"].pop(key))
        for name, by_ctl in parts.items():
            rows = {c: sorted(r, key=lambda r: r["scenario_seed"]) for c, r in by_ctl.items()}
            merged["scenarios"][name] = {c: aggregate(r) for c, r in rows.items()}
            cfg = dict(configs[name][0])
            cfg["scenario_seeds"] = sorted({r["scenario_seed"] for r in next(iter(rows.values()))})
            cfg["load_average_per_process"] = [
                [c["load_average_at_start"], c["machine_at_end"]["load_average_1m"]]
                for c in configs[name]
            ]
            merged["config_by_scenario"][name] = cfg
        RESULTS.write_text(json.dumps(merged, indent=2), encoding="utf-8")
    return merged


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", nargs="+", default=["base", "idv1", "idv8", "idv6"])
    ap.add_argument("--hours", type=float, default=12.0)
    ap.add_argument("--twin-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--scenario-seeds", type=int, nargs="+", default=[7, 8, 9])
    ap.add_argument("--controllers", nargs="+", default=["hold", "jepa"])
    ap.add_argument("--key-suffix", default="", help="store the scenarios under name+suffix")
    ap.add_argument(
        "--combine", nargs="+", metavar="SUFFIX", help="pool name+SUFFIX scenarios into name"
    )
    args = ap.parse_args()
    if args.combine:
        show(combine(args.combine), Console(width=170))
        return 0
    limit_planning_threads(1)
    console = Console(width=170)
    spec = load_spec("tep")
    home, twins = load_twins(args.twin_seeds)
    results: dict = {
        "config": {
            "hours": args.hours,
            "twin_seeds": args.twin_seeds,
            "twin_home": str(home),
            "twins": [t.training for t in twins],
            "scenario_seeds": args.scenario_seeds,
            "planner": {
                "horizon_intervals": PlannerConfig().for_interval(360.0).horizon,
                "control_interval_s": spec.plant.control_interval_s,
            },
            "load_average_at_start": os.getloadavg()[0],
            "oracle": "not run (see the module docstring)",
        },
        "scenarios": {},
    }
    for scenario in args.scenarios:
        per: dict[str, list[dict]] = {c: [] for c in args.controllers}
        for ss in args.scenario_seeds:
            hold = None
            if "hold" in args.controllers:
                hold = run_case(spec, scenario, ss, args.hours, "hold", None)
                per["hold"].append({"scenario_seed": ss, **hold})
            for ctl in (c for c in args.controllers if c != "hold"):
                for twin in twins:
                    r = run_case(spec, scenario, ss, args.hours, ctl, twin)
                    if hold is not None:
                        r["cost_ratio_to_hold"] = r["cost_per_h"] / hold["cost_per_h"]
                        r["cost_per_m3_ratio_to_hold"] = r["cost_per_m3"] / hold["cost_per_m3"]
                        r["cost_ratio_to_hold_last_half"] = (
                            r["cost_per_h_last_half"] / hold["cost_per_h_last_half"]
                        )
                    per[ctl].append({"scenario_seed": ss, "twin_seed": twin.training["seed"], **r})
                    console.print(
                        f"{scenario} seed {ss} {ctl} twin {twin.training['seed']}: "
                        f"{r['cost_per_h']:.1f} $/h (hold {hold and hold['cost_per_h']:.1f}), "
                        f"shutdown {r['shutdown_h']}, p95 {r['plan_ms_p95']:.0f} ms, "
                        f"refusals {r['no_proposal']}"
                    )
        key = scenario + args.key_suffix
        results["scenarios"][key] = {c: aggregate(rows) for c, rows in per.items()}
        results["config"]["machine_at_end"] = machine_info()
        save(results)
    show(results, console)
    console.print(f"saved {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
