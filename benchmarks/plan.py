"""Planning latency: CPU and wall time per decision of the JEPA planner, and what it decides.

Uses the twins cached by benchmarks/control.py (trained there if absent), with the disturbance
observer's gains saved with each twin. States come from the plant simulator running an
unmeasured-disturbance scenario (the observer at work) under the planner's own moves, on one
torch thread as `twin serve` plans (RuntimeConfig.planning_threads). A decision is timed whole:
the encoding, the OOD gate, the observer's filter step and the planning. The closed-loop run is
repeated (the same decisions each time) and the figures are medians over the repeats of each
run's p50 and p95, as the thread's CPU time (what a decision costs on an otherwise idle core:
the machine this runs on is shared, and its load is recorded) and as wall time.

Decision quality: every decision of the run is planned again from the same latent, observer
estimate and warm start, once with the search as it was (`before`: the refinement's gradient by
autograd through one rollout, no cap on its cost evaluations) and once as it is (`after`: the
cost differentiated by central differences in one batched evaluation, at most 4 evaluations
per iteration + 1); the table gives the after planner's mean and worst change of predicted
cost and the moves that break a limit or max_move (none may). The other speed-ups (the trust
region's bounded k-NN, one predict per interval) change no decision
(tests/plan/test_planning_speed.py).

The search's shortcuts (PlannerConfig.search_shortcuts: the trust ratio bounded on 32 rows of
the bank's subset first, the refinement's best point picked on the costs it found when it
evaluated each): every recorded decision is planned with them off (the baseline) and on,
alternately in the same run, and the table gives the ratios of their p50 and p95 CPU times and
the largest difference of the moves and costs they decide. The predictor's rollout
(twin.model.predictor._steps: the action's share of the first layer and of the linear term
taken for the whole horizon before the loop) is compared the same way against the rollout that
concatenated [z, a] at every step (`concatenated_steps`): the same sums up to float rounding, so
its decisions may differ by a rounding, and the table gives by how much. The refinement's
gradient (the cost itself differenced over the batch) is compared the same way against the
gradient it replaced (`chained_differences`: the predictions differenced, the cost's gradient
on them by autograd, chained): the two agree up to O(h^2) and rounding.

    python benchmarks/plan.py [--json] [--decisions N] [--repeats R] [--cases K,...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _machine import machine_info  # noqa: E402
from control import START, BenchConfig, prepare_twin  # noqa: E402

import twin.plan.controller as controller_module  # noqa: E402
import twin.plan.optimizer as optimizer_module  # noqa: E402
from plants.base import Simulation  # noqa: E402
from twin.model.predictor import Predictor  # noqa: E402
from twin.plan.controller import PlanningController  # noqa: E402
from twin.plan.cost import plan_cost  # noqa: E402
from twin.plan.moves import decode, expand, violations  # noqa: E402
from twin.plan.optimizer import plan  # noqa: E402
from twin.plan.proposal import Proposal  # noqa: E402
from twin.plan.settings import PlannerConfig  # noqa: E402
from twin.plan.threads import limit_planning_threads  # noqa: E402
from twin.spec import load_spec  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CASES = {"cstr/fouling": 50, "four_tank/leak": 50, "four_tank/tracking": 120}
"""The scenarios timed, with an unmeasured disturbance so that the observer works, and the
decisions run on each (tracking: 20 minutes, the first setpoint change at minute 10)."""
TARGET_MS_P95 = 60.0
BEFORE = {"refine_gradient": "autograd", "refine_evaluations": 10**6}
"""The search before: autograd gradients and no cap on the refinement's evaluations (scipy's
own maxfun is only checked between iterations, so a line search ran as long as it liked)."""


@dataclass
class Recorded:
    """One decision's planning inputs, as the controller passed them to plan()."""

    args: tuple
    kwargs: dict


def closed_loop(
    ctl: PlanningController, plant: str, scenario: str, decisions: int
) -> tuple[list[float], list[float], list[Recorded]]:
    """CPU and wall ms of every decision that made a proposal, and its planning inputs."""
    model = ctl.model
    spec = ctl.spec
    ctl.reset()
    sim = Simulation(spec, seed=3, scenario=scenario, start=START)
    spi = spec.plant.samples_per_interval
    rows = [sim.step() for _ in range(model.window)]
    cpu, wall, recorded = [], [], []
    inner = controller_module.plan

    def recording(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        recorded.append(Recorded(args, kwargs))
        return inner(*args, **kwargs)  # type: ignore[arg-type]

    controller_module.plan = recording  # type: ignore[assignment]
    try:
        for _ in range(decisions):
            window = np.array([[r[n] for n in model.tag_names] for r in rows[-model.window :]])
            start, cpu0 = time.perf_counter(), time.thread_time()
            out = ctl.decide(window, sim.time, setpoints=sim.setpoints)
            wall_ms = 1000.0 * (time.perf_counter() - start)
            cpu_ms = 1000.0 * (time.thread_time() - cpu0)
            if isinstance(out, Proposal):
                cpu.append(cpu_ms)
                wall.append(wall_ms)
                sim.set_mvs(out.proposed)
            elif recorded and len(recorded) > len(cpu):
                recorded.pop()  # planned but refused (a hard limit): not a proposal
            rows += [sim.step() for _ in range(spi)]
    finally:
        controller_module.plan = inner
    return cpu, wall, recorded


def compare(
    ctl: PlanningController, recorded: list[Recorded], before: PlannerConfig
) -> dict[str, float | int]:
    """Each recorded decision planned with `before` and with the controller's config."""
    after = ctl.config
    costs: dict[str, list[float]] = {"before": [], "after": []}
    cpu: dict[str, list[float]] = {"before": [], "after": []}
    broken = {"before": 0, "after": 0}
    for rec in recorded:
        model, z0, problem, _, *rest = rec.args
        for name, cfg in (("before", before), ("after", after)):
            cpu0 = time.thread_time()
            result = plan(model, z0, problem, cfg, *rest, **rec.kwargs)  # type: ignore[arg-type]
            cpu[name].append(1000.0 * (time.thread_time() - cpu0))
            costs[name].append(result.costs["total"])
            broken[name] += bool(violations(result.u, problem))
    b, a = np.array(costs["before"]), np.array(costs["after"])
    rel = (a - b) / np.maximum(np.abs(b), 1e-12)
    return {
        "decisions": len(b),
        "before": "refine_gradient=autograd, no cap on the refinement's cost evaluations",
        "after": f"refine_gradient={after.refine_gradient}, "
        f"refine_evaluations={after.evaluation_budget}",
        "cost_before_mean": float(b.mean()),
        "cost_after_mean": float(a.mean()),
        "mean_relative_change": float(rel.mean()),
        "mean_relative_change_of_means": float((a.mean() - b.mean()) / abs(b.mean())),
        "max_relative_change": float(rel.max()),
        "decisions_worse_by_over_1pct": int((rel > 0.01).sum()),
        "limit_or_max_move_violations_before": broken["before"],
        "limit_or_max_move_violations_after": broken["after"],
        "plan_cpu_ms_p50_before": float(np.percentile(cpu["before"], 50)),
        "plan_cpu_ms_p95_before": float(np.percentile(cpu["before"], 95)),
        "plan_cpu_ms_p50_after": float(np.percentile(cpu["after"], 50)),
        "plan_cpu_ms_p95_after": float(np.percentile(cpu["after"], 95)),
    }


@contextmanager
def concatenated_steps() -> Iterator[None]:
    """The baseline of the step function: the predictor's rollout as it was before the action's
    share of the first layer was taken for the whole horizon at once (twin.model.predictor
    ._steps): [z, a] concatenated at every step, the first layer and the linear term each a
    product of it (on the layers' tensors, as then)."""

    def rollout(
        self: Predictor, z: torch.Tensor, a: torch.Tensor, drift: torch.Tensor | None = None
    ) -> torch.Tensor:
        w_lin, w1, b1, w2, b2, w3, b3 = self._tensors()
        out = []
        for k in range(a.shape[1]):
            za = torch.cat([z, a[:, k]], dim=-1)
            h = F.gelu(F.linear(za, w1, b1))
            h = F.gelu(F.linear(h, w2, b2))
            z = z + F.linear(za, w_lin) + F.linear(h, w3, b3)
            if drift is not None:
                z = z + drift
            out.append(z)
        return torch.stack(out, dim=1)

    saved = Predictor.rollout
    Predictor.rollout = rollout  # type: ignore[method-assign]
    try:
        yield
    finally:
        Predictor.rollout = saved  # type: ignore[method-assign]


@contextmanager
def chained_differences() -> Iterator[None]:
    """The baseline of the refinement's gradient: the twin's predictions differentiated by
    central differences and the cost by autograd on them, chained (twin.plan.optimizer
    ._differences before it differenced the cost itself)."""

    def differences(
        obj: optimizer_module.PlanObjective, x: np.ndarray, shape: torch.Size
    ) -> tuple[float, np.ndarray, float]:
        n = x.size
        i = np.arange(n)
        xs = np.tile(x, (2 * n + 1, 1))
        xs[1 + 2 * i, i] += optimizer_module.DIFFERENCE_STEP
        xs[2 + 2 * i, i] -= optimizer_module.DIFFERENCE_STEP
        xs = np.clip(xs, -1.0, 1.0)
        step = torch.as_tensor(xs[1 + 2 * i, i] - xs[2 + 2 * i, i], dtype=obj.dtype)
        with torch.inference_mode():
            x_all = torch.as_tensor(xs.reshape(-1, *shape), dtype=obj.dtype)
            u = expand(decode(x_all, obj.problem), obj.config.blocks)
            y, q, ratio = obj.predict(u, exact=False)
            crossing = float(obj.crossing(q[:1])[0])
        outputs = [t for t in (y, q, u.to(obj.dtype), ratio) if t is not None]
        centre = [t[:1].clone().requires_grad_(True) for t in outputs]
        with torch.enable_grad():
            r0 = centre[3] if ratio is not None else None
            total = plan_cost(centre[0], centre[1], centre[2], r0, obj.c, obj.config)["total"][0]
            grads = torch.autograd.grad(total, centre, allow_unused=True)
        g = torch.zeros(n, dtype=obj.dtype)
        for t, dc in zip(outputs, grads, strict=True):
            if dc is not None:
                jac = (t[1::2] - t[2::2]) / step.reshape(-1, *[1] * (t.dim() - 1))
                g = g + (jac * dc).flatten(1).sum(1)
        return float(total.detach()), g.double().numpy(), crossing

    saved = optimizer_module._differences
    optimizer_module._differences = differences  # type: ignore[assignment]
    try:
        yield
    finally:
        optimizer_module._differences = saved  # type: ignore[assignment]


def paired(
    ctl: PlanningController,
    recorded: list[Recorded],
    repeats: int,
    baseline_config: PlannerConfig,
    baseline: Callable[[], AbstractContextManager[None]] = nullcontext,
) -> dict:
    """Each recorded decision planned the baseline's way ("off": `baseline_config` inside
    `baseline()`) and as shipped ("on"), alternately, `repeats` times: per-decision median CPU
    ms, their p50/p95 and ratios, and how far the two decisions differ."""
    cpu: dict[str, list[list[float]]] = {"off": [], "on": []}
    du, dc = 0.0, 0.0
    for rec in recorded:
        model, z0, problem, _, *rest = rec.args
        times: dict[str, list[float]] = {"off": [], "on": []}
        plans = {}
        for _ in range(repeats):
            for name, cfg, context in (
                ("off", baseline_config, baseline),
                ("on", ctl.config, nullcontext),
            ):
                with context():
                    cpu0 = time.thread_time()
                    plans[name] = plan(model, z0, problem, cfg, *rest, **rec.kwargs)  # type: ignore[arg-type]
                    times[name].append(1000.0 * (time.thread_time() - cpu0))
        for name in cpu:
            cpu[name].append(times[name])
        span = np.maximum(problem.mv_hi - problem.mv_lo, 1e-12)
        du = max(du, float(np.max(np.abs(plans["on"].u - plans["off"].u) / span)))
        b, a = plans["off"].costs["total"], plans["on"].costs["total"]
        dc = max(dc, abs(a - b) / max(abs(b), 1e-12))
    med = {n: np.median(np.array(v), axis=1) for n, v in cpu.items()}
    out: dict = {"decisions": len(recorded), "repeats": repeats}
    for q in (50, 95):
        for n in ("off", "on"):
            out[f"plan_cpu_ms_p{q}_{n}"] = float(np.percentile(med[n], q))
        out[f"ratio_p{q}"] = out[f"plan_cpu_ms_p{q}_on"] / out[f"plan_cpu_ms_p{q}_off"]
    out["max_move_difference_of_span"] = du
    out["max_relative_cost_difference"] = dc
    return out


def time_plant(plant: str, scenario: str, decisions: int, repeats: int) -> dict:
    """Latency of `decisions` planning decisions along a closed-loop run, repeated."""
    spec = load_spec(plant)
    tw = prepare_twin(spec, BenchConfig(), 0, {})
    assert tw is not None
    twin = tw.model
    ctl = PlanningController(twin, spec, observer_gains=tw.gains)  # type: ignore[arg-type]
    runs, loads, references = [], [], []
    recorded: list[Recorded] = []
    for _ in range(repeats):
        cpu, wall, recorded = closed_loop(ctl, plant, scenario, decisions)
        machine = machine_info()
        loads.append(machine["load_average_1m"])
        references.append(machine["reference_loop_ms"])
        runs.append({q: float(np.percentile(v, p)) for q, v, p in _quantiles(cpu, wall)})
    horizon = ctl.config.horizon
    with torch.inference_mode():
        z = torch.zeros(ctl.config.population, len(twin.gate.center))
        u = twin.u_mean.expand(ctl.config.population, horizon, -1)
        rollout_ms = []
        for _ in range(20):
            start = time.perf_counter()
            twin.readout(twin.rollout(z, u))
            rollout_ms.append(1000.0 * (time.perf_counter() - start))
    out: dict = {
        "horizon_intervals": horizon,
        "scenario": scenario,
        "decisions": len(recorded),
        "repeats": repeats,
    }
    for key in runs[0]:
        out[key] = float(np.median([r[key] for r in runs]))
    out |= {
        "per_repeat": runs,
        "load_average_1min": loads,
        "reference_loop_ms": references,
        "batched_rollout_ms_p50": float(np.median(rollout_ms)),
        "target_ms_p95": TARGET_MS_P95,
        "observer_gains": tw.gains.source,
        "quality": compare(ctl, recorded, replace(ctl.config, **BEFORE)),  # type: ignore[arg-type]
        "shortcuts": paired(ctl, recorded, repeats, replace(ctl.config, search_shortcuts=False)),
        "step_function": paired(ctl, recorded, repeats, ctl.config, concatenated_steps),
        "cost_differences": paired(ctl, recorded, repeats, ctl.config, chained_differences),
    }
    return out


def _quantiles(cpu: list[float], wall: list[float]):  # type: ignore[no-untyped-def]
    yield "plan_cpu_ms_p50", cpu, 50
    yield "plan_cpu_ms_p95", cpu, 95
    yield "plan_ms_p50", wall, 50
    yield "plan_ms_p95", wall, 95


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--decisions", type=int, help="decisions per case (default: CASES)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES), help="plant/scenario cases to time")
    args = parser.parse_args(argv)
    limit_planning_threads(1)
    console = Console(stderr=args.json, width=160)
    results: dict = {
        "machine": machine_info(),
        "torch_threads": torch.get_num_threads(),
        "planner": asdict(PlannerConfig()),
        "cases": {},
    }
    for case in args.cases.split(","):
        plant, _, scenario = case.partition("/")
        decisions = args.decisions or CASES[case]
        results["cases"][case] = time_plant(plant, scenario, decisions, args.repeats)
    results["machine_at_end"] = machine_info()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "plan.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    table = Table(title="planning time per decision (ms; medians over repeats)")
    for col in (
        "case",
        "horizon",
        "decisions",
        "CPU p50",
        "CPU p95",
        "wall p50",
        "wall p95",
        "one batched rollout",
        "cost vs before (mean / worst)",
        ">1 % worse",
        "violations",
        "shortcuts: CPU p50 / p95 ratio",
        "shortcuts: max move / cost change",
        "step function: CPU p50 / p95 ratio",
        "step function: max move / cost change",
        "cost differences: CPU p50 / p95 ratio",
        "cost differences: max move / cost change",
        "load",
    ):
        table.add_column(col, justify="left" if col == "case" else "right")
    for case, r in results["cases"].items():
        q, sc, sf, cd = r["quality"], r["shortcuts"], r["step_function"], r["cost_differences"]
        table.add_row(
            case,
            str(r["horizon_intervals"]),
            f"{r['decisions']} x {r['repeats']}",
            f"{r['plan_cpu_ms_p50']:.1f}",
            f"{r['plan_cpu_ms_p95']:.1f}",
            f"{r['plan_ms_p50']:.1f}",
            f"{r['plan_ms_p95']:.1f}",
            f"{r['batched_rollout_ms_p50']:.2f}",
            f"{100 * q['mean_relative_change']:+.2f} % / {100 * q['max_relative_change']:+.1f} %",
            f"{q['decisions_worse_by_over_1pct']} of {q['decisions']}",
            f"{q['limit_or_max_move_violations_after']}",
            f"{sc['ratio_p50']:.2f} / {sc['ratio_p95']:.2f}",
            f"{sc['max_move_difference_of_span']:.1e} / {sc['max_relative_cost_difference']:.1e}",
            f"{sf['ratio_p50']:.2f} / {sf['ratio_p95']:.2f}",
            f"{sf['max_move_difference_of_span']:.1e} / {sf['max_relative_cost_difference']:.1e}",
            f"{cd['ratio_p50']:.2f} / {cd['ratio_p95']:.2f}",
            f"{cd['max_move_difference_of_span']:.1e} / {cd['max_relative_cost_difference']:.1e}",
            f"{min(r['load_average_1min']):.1f}-{max(r['load_average_1min']):.1f}",
        )
    console.print(table)
    references = [x for r in results["cases"].values() for x in r["reference_loop_ms"]]
    console.print(
        "this host's reference loop (_machine.reference_loop_ms): "
        f"{min(references):.0f}-{max(references):.0f} ms CPU; absolute times from another "
        "host compare only beside its own"
    )
    console.print(f"saved {RESULTS / 'plan.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
