"""Closed-loop control benchmark: the JEPA planner vs oracle NMPC, linear (ARX) MPC and hold.

In-process, faster than real time, no protocols. Each controller drives the plant simulator
through the same named scenarios with the same seed. The JEPA planner uses a twin trained only
on generated history (PRBS over the operating band), cached under the benchmark home; the linear
MPC plans on the ARX model identified from the same data, with the same planner, limits, cost
and offset-free correction; the oracle solves the same problem on the true physics from the true
state. Nobody sees future setpoint or disturbance changes.

    python benchmarks/control.py [--json] [--only cstr/stable] [--minutes M]

Prints a table, writes benchmarks/results/control.json and control.html (trajectories).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plants import load_plant_model  # noqa: E402
from plants.base import Simulation  # noqa: E402
from twin.baselines.arx_world import ArxWorld  # noqa: E402
from twin.baselines.hold import HoldController  # noqa: E402
from twin.baselines.oracle import OracleNMPC  # noqa: E402
from twin.baselines.pid import PidController  # noqa: E402
from twin.paths import Home  # noqa: E402
from twin.plan.controller import PlanningController  # noqa: E402
from twin.plan.proposal import Proposal  # noqa: E402
from twin.plan.settings import PlannerConfig  # noqa: E402
from twin.spec import PlantSpec, load_spec  # noqa: E402

log = logging.getLogger("benchmarks.control")
RESULTS = ROOT / "benchmarks" / "results"
START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class BenchScenario:
    """One closed-loop case: plant, simulator scenario, length and seed."""

    plant: str
    scenario: str
    minutes: float
    seed: int = 7

    @property
    def key(self) -> str:
        return f"{self.plant}/{self.scenario}"


SCENARIOS = (
    BenchScenario("cstr", "stable", 70.0),
    BenchScenario("cstr", "hard", 60.0),
    BenchScenario("four_tank", "tracking", 60.0),
)
CONTROLLERS = ("jepa", "oracle", "linear_mpc", "pid", "hold")


@dataclass(frozen=True)
class BenchConfig:
    """Where the cached twins live and how they are made."""

    home: Path = Path(os.environ.get("TWIN_BENCH_HOME", Path(tempfile.gettempdir()) / "twin-bench"))
    """Benchmark home: generated history and the trained twins (reused across runs)."""
    hours: float = 6.0
    """Hours of generated PRBS history each twin is trained on."""
    data_seed: int = 11
    """Seed of the generated history (not the scenarios' seed)."""
    training_scenarios: tuple[tuple[str, str], ...] = (
        ("cstr", "feed_temp_step"),
        ("four_tank", "inflow_step"),
    )
    """Disturbance scenario under the PRBS history per plant: the twin must have seen the DVs
    move (a feed-temperature step it never saw is, rightly, out of distribution), but never the
    benchmark's own scenarios."""


# ---- the twins -----------------------------------------------------------------------


def prepare_twin(spec: PlantSpec, config: BenchConfig):  # type: ignore[no-untyped-def]
    """The cached twin, the ARX model trained on the same generated history (both made if
    absent) and how the twin's training ended."""
    from twin import registry
    from twin.generate import generate
    from twin.train import TrainConfig, train_plant

    home = Home.at(config.home)
    # Control quality follows prediction quality: the benchmark's twin trains longer than
    # the default (a 30-epoch cstr twin with NRMSE 0.72 at 10 steps controlled poorly).
    # Epochs and early stopping end training, never the clock: a time budget that binds
    # makes the twin, and every figure after it, depend on how busy the machine was.
    cfg = TrainConfig(epochs=60, patience=12, max_seconds=3600.0, obs_max_seconds=3600.0)
    ckpt = registry.load_checkpoint(home, spec) if registry.active_version(home, spec) else {}
    trained_with = ckpt.get("card", {}).get("training", {}).get("train_config", {})
    wanted = {k: getattr(cfg, k) for k in ("epochs", "patience", "max_seconds", "seed")}
    if any(trained_with.get(k) != v for k, v in wanted.items()):  # none yet, or made otherwise
        scenario = dict(config.training_scenarios).get(spec.name)
        long = generate(
            spec, config.hours, "prbs", scenario=scenario, seed=config.data_seed, start=START
        )
        frame = long.pivot_table(index="ts", columns="tag", values="value", aggfunc="last")
        registry.promote(home, spec, train_plant(home, spec, cfg=cfg, frame=frame))
        ckpt = registry.load_checkpoint(home, spec)
    twin = registry.load_active(home, spec)
    arx, _ = registry.load_baselines(ckpt)
    training = ckpt.get("card", {}).get("training", {})
    # How the twin's training ended goes into the results: "time budget" there would mean the
    # figures depend on the machine's load, not only on the seeds.
    return twin, arx, {k: training.get(k) for k in ("stopped", "steps", "seconds", "seed")}


# ---- one closed-loop run -------------------------------------------------------------


@dataclass
class Run:
    """What one controller did on one scenario, sampled at the plant's sample period."""

    t_s: list[float] = field(default_factory=list)
    y: dict[str, list[float]] = field(default_factory=dict)
    sp: dict[str, list[float]] = field(default_factory=dict)
    u: dict[str, list[float]] = field(default_factory=dict)
    plan_ms: list[float] = field(default_factory=list)
    plan_cpu_ms: list[float] = field(default_factory=list)
    """The decision's CPU time: its cost on an idle core (this machine is shared)."""
    moves: list[dict[str, float]] = field(default_factory=list)
    """(previous, applied) MV values of every decision, to audit limits and max_move."""
    no_proposal: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class _Decider:
    """A controller behind one call: measured window and true plant state -> MV values."""

    def __init__(self, name: str, spec: PlantSpec, sim: Simulation, twin, arx) -> None:  # type: ignore[no-untyped-def]
        self.name = name
        self.spec = spec
        self.sim = sim
        self.planner: PlanningController | None = None
        self.oracle: OracleNMPC | None = None
        if name == "jepa":
            self.planner = PlanningController(twin, spec)
        elif name == "linear_mpc":
            self.planner = PlanningController(ArxWorld(arx, spec), spec)
        elif name == "oracle":
            self.oracle = OracleNMPC(spec, sim.model)
        self.pid = PidController(spec, sim.model) if name == "pid" else None
        self.hold = HoldController() if name == "hold" else None

    @property
    def window(self) -> int:
        return self.planner.model.window if self.planner is not None else 1

    def decide(self, rows: list[dict[str, float]], run: Run) -> dict[str, float]:
        sim = self.sim
        if self.oracle is not None:
            return self.oracle.decide(
                sim.x, sim.disturbances(), sim.mv, sim.setpoints, sim.elapsed_s
            )
        if self.pid is not None:
            return self.pid.decide(rows[-1], sim.mv, sim.setpoints)
        if self.hold is not None or self.planner is None:
            return (self.hold or HoldController()).decide(sim.mv)
        names = self.planner.tag_names
        window = np.array([[r[n] for n in names] for r in rows[-self.window :]])
        out = self.planner.decide(window, sim.time, setpoints=sim.setpoints)
        if not isinstance(out, Proposal):
            run.no_proposal[out.code] = run.no_proposal.get(out.code, 0) + 1
            return sim.mv
        run.notes.extend(n for n in out.notes if "outside the region" in n)
        return out.proposed


def run_scenario(case: BenchScenario, spec: PlantSpec, controller: str, twin, arx) -> Run:  # type: ignore[no-untyped-def]
    """Drive the simulator through the scenario with one controller."""
    sim = Simulation(spec, seed=case.seed, scenario=case.scenario, start=START)
    decider = _Decider(controller, spec, sim, twin, arx)
    spi = spec.plant.samples_per_interval
    cvs = [t.name for t in spec.cvs]
    run = Run(y={n: [] for n in cvs}, sp={n: [] for n in cvs}, u={n: [] for n in sim.mv})
    # Pre-roll at the nominal MVs (not scored) so that every controller starts with a full
    # window of history; the same length for every controller.
    warmup = max(int(getattr(twin, "window", 1)), ArxWorld(arx, spec).window if arx else 1)
    rows = [sim.measure()]
    rows += [sim.step() for _ in range(warmup)]
    n_steps = int(round(case.minutes * 60.0 / spec.plant.sample_period_s))
    for k in tqdm(range(n_steps), desc=f"{case.key} {controller}", leave=False):
        if k % spi == 0:
            before = sim.mv
            start, cpu = time.perf_counter(), time.thread_time()
            wanted = decider.decide(rows, run)
            run.plan_ms.append(1000.0 * (time.perf_counter() - start))
            run.plan_cpu_ms.append(1000.0 * (time.thread_time() - cpu))
            applied = sim.set_mvs(wanted)
            run.moves.append({**{f"prev.{n}": v for n, v in before.items()}, **applied})
        rows.append(sim.step())
        true = sim.true_outputs()
        run.t_s.append(sim.elapsed_s)
        for n in cvs:
            run.y[n].append(true[n])
            run.sp[n].append(sim.setpoints.get(n, math.nan))
        for n, v in sim.mv.items():
            run.u[n].append(v)
        if len(rows) > 400:
            del rows[:-200]
    return run


# ---- scoring -------------------------------------------------------------------------


def score(run: Run, spec: PlantSpec) -> dict[str, float]:
    """Integrated squared tracking error, limit violations, moves and planning times."""
    dt = spec.plant.sample_period_s
    cost = 0.0
    for n in run.y:
        w = spec.objective.weights.get(n, 1.0)
        err = np.array(run.y[n]) - np.array(run.sp[n])
        cost += w * float(np.nansum(err**2)) * dt
    cv_violations, cv_worst, eng_crossings = 0, 0.0, 0
    for n, ys in run.y.items():
        tag = spec.tag(n)
        y = np.array(ys)
        lo, hi = tag.operating_limits
        over = np.maximum(y - hi, 0.0) + np.maximum(lo - y, 0.0)
        cv_violations += int(np.sum(over > 1e-9))
        cv_worst = max(cv_worst, float(over.max(initial=0.0)))
        elo, ehi = tag.limits
        eng_crossings += int(np.sum((y > ehi) | (y < elo)))
    mv_violations, total_move = 0, 0.0
    for m in run.moves:
        for tag in spec.mvs:
            prev, new = m[f"prev.{tag.name}"], m[tag.name]
            lo, hi = tag.operating_limits
            tol = 1e-9 * max(1.0, abs(hi))
            if new < lo - tol or new > hi + tol or abs(new - prev) > tag.max_move + tol:
                mv_violations += 1
            total_move += abs(new - prev)
    ms = np.array(run.plan_ms)
    out = {
        "cost": cost,
        "cv_violations": cv_violations,
        "cv_worst": cv_worst,
        "cv_limit_crossings": eng_crossings,
        "mv_violations": mv_violations,
        "total_move": total_move,
        "plan_ms_p50": float(np.percentile(ms, 50)),
        "plan_ms_p95": float(np.percentile(ms, 95)),
        "plan_cpu_ms_p50": float(np.percentile(run.plan_cpu_ms, 50)),
        "plan_cpu_ms_p95": float(np.percentile(run.plan_cpu_ms, 95)),
        "decisions": len(ms),
    }
    if "T" in run.y:
        out["max_T"] = float(np.max(run.y["T"]))
    if run.no_proposal:
        out["no_proposal"] = dict(run.no_proposal)
    if run.notes:
        out["outside_known_region_notes"] = len(run.notes)
    return out


def with_ratios(table: dict[str, dict[str, float]]) -> None:
    """Add each controller's cost ratio to the oracle and to hold."""
    oracle = table.get("oracle", {}).get("cost")
    hold = table.get("hold", {}).get("cost")
    for row in table.values():
        row["ratio_to_oracle"] = row["cost"] / oracle if oracle else math.nan
        row["ratio_to_hold"] = row["cost"] / hold if hold else math.nan
    if "jepa" in table and "linear_mpc" in table and table["linear_mpc"]["cost"] > 0:
        table["jepa"]["ratio_to_linear_mpc"] = table["jepa"]["cost"] / table["linear_mpc"]["cost"]


def chart(runs: dict[str, dict[str, Run]], path: Path) -> None:
    """Trajectories of every CV with a setpoint and every MV, per scenario, as one HTML page."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    parts = []
    for key, by_ctl in runs.items():
        first = next(iter(by_ctl.values()))
        cv_rows = [n for n in first.y if not all(math.isnan(v) for v in first.sp[n])]
        extra = [n for n in first.y if n not in cv_rows and n == "T"]
        rows = cv_rows + extra + list(first.u)
        fig = make_subplots(rows=len(rows), cols=1, shared_xaxes=True, subplot_titles=rows)
        step = max(1, len(first.t_s) // 800)  # at most ~800 points a trace keeps the page small
        for ctl, run in by_ctl.items():
            t = np.array(run.t_s)[::step] / 60.0
            for i, n in enumerate(rows, start=1):
                ys = (run.y[n] if n in run.y else run.u[n])[::step]
                fig.add_trace(
                    go.Scatter(x=t, y=ys, name=ctl, legendgroup=ctl, showlegend=(i == 1)),
                    row=i,
                    col=1,
                )
        for i, n in enumerate(cv_rows, start=1):
            fig.add_trace(
                go.Scatter(
                    x=np.array(first.t_s)[::step] / 60.0,
                    y=first.sp[n][::step],
                    name="setpoint",
                    line={"dash": "dash", "color": "black"},
                    showlegend=(i == 1),
                ),
                row=i,
                col=1,
            )
        fig.update_layout(title=key, height=260 * len(rows), xaxis_title="minutes")
        # plotly.js inline, once: the page opens on a plant network with no internet access.
        parts.append(fig.to_html(full_html=False, include_plotlyjs=not parts))
    path.write_text(
        '<html><head><meta charset="utf-8"><title>closed-loop control benchmark</title></head>'
        "<body>" + "\n".join(parts) + "</body></html>",
        encoding="utf-8",
    )


def print_table(results: dict, console: Console) -> None:
    table = Table(title="closed-loop control (cost = integrated squared tracking error)")
    for col in (
        "scenario",
        "controller",
        "cost",
        "/oracle",
        "/hold",
        "cv viol",
        "cv worst",
        "eng cross",
        "mv viol",
        "total move",
        "plan p50 ms",
        "plan p95 ms",
    ):
        table.add_column(col, justify="right" if col not in ("scenario", "controller") else "left")
    for key, rows in results["scenarios"].items():
        for ctl, r in rows.items():
            table.add_row(
                key,
                ctl,
                f"{r['cost']:.4g}",
                f"{r['ratio_to_oracle']:.2f}",
                f"{r['ratio_to_hold']:.2f}",
                str(r["cv_violations"]),
                f"{r['cv_worst']:.3g}",
                str(r["cv_limit_crossings"]),
                str(r["mv_violations"]),
                f"{r['total_move']:.3g}",
                f"{r['plan_ms_p50']:.1f}",
                f"{r['plan_ms_p95']:.1f}",
            )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--only", action="append", help="scenario key(s) to run, e.g. cstr/hard")
    parser.add_argument("--minutes", type=float, help="shorten every scenario (smoke runs)")
    parser.add_argument("--controllers", default=",".join(CONTROLLERS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)  # decisions are small: threads cost more than they give
    config = BenchConfig()
    console = Console(stderr=args.json, width=150)  # the table is wide; logs are not terminals
    results: dict = {
        "scenarios": {},
        "config": {
            "home": str(config.home),
            "hours": config.hours,
            "data_seed": config.data_seed,
            "training_scenarios": dict(config.training_scenarios),
        },
    }
    runs: dict[str, dict[str, Run]] = {}
    twins: dict[str, tuple] = {}
    for case in SCENARIOS:
        if args.only and case.key not in args.only:
            continue
        if args.minutes:
            case = BenchScenario(case.plant, case.scenario, args.minutes, case.seed)
        spec = load_spec(case.plant)
        if case.plant not in twins:
            console.print(f"twin for {case.plant}: preparing (cached under {config.home})")
            twins[case.plant] = prepare_twin(spec, config)
        twin, arx, training = twins[case.plant]
        results["config"].setdefault("twins", {})[case.plant] = twin.version
        results["config"].setdefault("twin_training", {})[case.plant] = training
        results["config"].setdefault("horizon_intervals", {})[case.plant] = (
            PlannerConfig().for_interval(spec.plant.control_interval_s).horizon
        )
        oracle = OracleNMPC(spec, load_plant_model(spec))
        results["config"].setdefault("oracle", {})[case.plant] = {
            "horizon_intervals": oracle.horizon,
            "blocks": list(oracle.blocks),
            "cv_limit_points_per_interval": oracle.points_per_interval,
            "optimiser": "candidate batch + SLSQP, CV operating limits as hard constraints",
        }
        rows, runs[case.key] = {}, {}
        for ctl in args.controllers.split(","):
            run = run_scenario(case, spec, ctl, twin, arx)
            runs[case.key][ctl] = run
            rows[ctl] = score(run, spec)
            console.print(
                f"{case.key} {ctl}: cost {rows[ctl]['cost']:.4g}, "
                f"p95 {rows[ctl]['plan_ms_p95']:.1f} ms"
            )
        with_ratios(rows)
        results["scenarios"][case.key] = rows
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "control.json"
    if args.only and out.is_file():  # a partial run updates its scenarios, keeps the others
        previous = json.loads(out.read_text(encoding="utf-8"))
        previous["scenarios"].update(results["scenarios"])
        for key in ("twins", "twin_training", "horizon_intervals", "oracle"):
            previous["config"].setdefault(key, {}).update(results["config"].get(key, {}))
        results = previous
    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    chart(
        runs,
        RESULTS
        / f"control{'-' + '-'.join(k.replace('/', '_') for k in args.only) if args.only else ''}.html",
    )
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(results, console)
        console.print(f"saved {RESULTS / 'control.json'} and {RESULTS / 'control.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
