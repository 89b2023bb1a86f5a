"""One closed-loop run of the JEPA planner, decision by decision: what the twin predicted and
what the plant then did.

    python benchmarks/control_trace.py cstr/hard --twin-seed 1 --seed 7 [--minutes 45]
        [--from 5 --to 20] [--results benchmarks/results/control_trace]

Per decision: the measured CVs and the MV, the move, the window gate's OOD ratio (or the
reason the twin abstained; the linear-MPC fallback then acts, as in benchmarks/control.py), and
for 1 and 4 intervals ahead and the horizon: the CV predicted under the plan (mean and upper
band), under hold, and the plant's true value that many intervals later. Uses the twins cached
under TWIN_BENCH_HOME by benchmarks/control.py (it trains none). Prints a table and saves JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from control import (  # noqa: E402
    SCENARIOS,
    BenchConfig,
    NoProposal,
    Proposal,
    prepare_twin,
    run_scenario,
    score,
)

from twin.plan.threads import limit_planning_threads  # noqa: E402
from twin.spec import load_spec  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "control_trace"


def trace_rows(
    trace: list[Proposal | NoProposal], y: dict[str, list[float]], spi: int, interval_min: float
) -> list[dict]:
    """One row per decision: the prediction at 1, 4 and H intervals ahead beside the truth."""
    rows = []
    n = len(next(iter(y.values())))
    for j, out in enumerate(trace):
        row: dict = {"minute": j * interval_min}
        if isinstance(out, NoProposal):
            rows.append({**row, "abstained": out.code, "reason": out.reason})
            continue
        row |= {"current": out.current, "proposed": out.proposed, "ood": out.ood_score}
        for cv, band in out.predicted.items():
            horizon = len(band.mean)
            for h in sorted({1, 4, horizon}):
                true = y[cv][min(j * spi + h * spi - 1, n - 1)]
                row[f"{cv}.h{h}"] = {
                    "plan": band.mean[h - 1],
                    "plan_hi": band.hi[h - 1],
                    "hold": out.hold[cv].mean[h - 1],
                    "true": true,
                }
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", help="a benchmark scenario, e.g. cstr/hard")
    parser.add_argument("--twin-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=7, help="the scenario's noise seed")
    parser.add_argument("--minutes", type=float)
    parser.add_argument("--from", dest="start", type=float, default=0.0, help="first minute shown")
    parser.add_argument("--to", type=float, default=1e9, help="last minute shown")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    limit_planning_threads(1)
    cases = {c.key: c for c in SCENARIOS}
    if args.scenario not in cases:
        parser.error(f"{args.scenario!r} is not one of {', '.join(cases)}")
    case = replace(cases[args.scenario], seed=args.seed)
    if args.minutes:
        case = replace(case, minutes=args.minutes)
    spec = load_spec(case.plant)
    twin = prepare_twin(spec, BenchConfig(), args.twin_seed, {}, train=False)
    if twin is None:
        parser.error(f"no cached {case.plant} twin of seed {args.twin_seed}: run control.py first")
    trace: list[Proposal | NoProposal] = []
    run = run_scenario(case, spec, "jepa", twin, trace)
    spi = spec.plant.samples_per_interval
    rows = trace_rows(trace, run.y, spi, spec.plant.control_interval_s / 60.0)
    console = Console(width=200)
    table = Table(title=f"{case.key} twin {args.twin_seed} seed {args.seed}: plan / hold / true")
    for col in ("min", "true CVs", "move", "ood", "h1", "h4", "horizon"):
        table.add_column(col)
    cvs = list(run.y)
    for j, row in enumerate(rows):
        if not args.start <= row["minute"] <= args.to:
            continue
        now = j * spi
        measured = " ".join(f"{cv} {run.y[cv][max(now - 1, 0)]:.4g}" for cv in cvs)  # true values
        if "abstained" in row:
            table.add_row(f"{row['minute']:.1f}", measured, "-", row["abstained"], "", "", "")
            continue
        move = " ".join(f"{m} {row['current'][m]:.4g}->{v:.4g}" for m, v in row["proposed"].items())
        cells = []
        for which in ("h1", "h4", None):
            keys = [k for k in row if "." in k and (which is None or k.endswith("." + which))]
            if which is None:  # the horizon: each CV's last key
                keys = [max((k for k in row if k.startswith(cv + ".h")), key=_h) for cv in cvs]
            cells.append(
                " ".join(
                    f"{k.split('.')[0]} {row[k]['plan']:.4g}/{row[k]['hold']:.4g}/"
                    f"{row[k]['true']:.4g}"
                    for k in keys
                )
            )
        table.add_row(f"{row['minute']:.1f}", measured, move, f"{row['ood']:.2f}", *cells)
    console.print(table)
    result = {
        "scenario": case.key,
        "twin_seed": args.twin_seed,
        "scenario_seed": args.seed,
        "score": score(run, spec),
        "max": {cv: float(np.max(v)) for cv, v in run.y.items()},
        "fallback_decisions": run.fallback_decisions,
        "decisions": rows,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"{case.key.replace('/', '_')}-t{args.twin_seed}-s{args.seed}.json"
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    console.print(
        f"cost {result['score']['cost']:.4g}, crossings {result['score']['cv_limit_crossings']}, "
        f"fallback {run.fallback_decisions} of {len(rows)}; saved {out}"
    )
    return 0


def _h(key: str) -> int:
    return int(key.rsplit(".h", 1)[1])


if __name__ == "__main__":
    sys.exit(main())
