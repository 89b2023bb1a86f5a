"""`twin propose` (one proposal from the latest data) and `twin bench` (benchmark tables)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from twin.cli.common import HomeOption, PlantArg, home_of, spec_of
from twin.errors import BadInput, TwinError
from twin.plan.proposal import NoProposal, Proposal

BENCHMARKS = Path(__file__).resolve().parent.parent.parent / "benchmarks"
# Every script in benchmarks/ (helpers start with "_"): each prints its table and saves
# benchmarks/results/NAME.json, which is what --json prints for all of them alike.
BENCH_NAMES = tuple(sorted(p.stem for p in BENCHMARKS.glob("[!_]*.py")))

console = Console()


def register(app: typer.Typer) -> None:
    """Add this group's commands to the `twin` app."""
    app.command("propose")(propose_cmd)
    # Options after NAME that `twin bench` does not know go to the script itself.
    extra = {"allow_extra_args": True, "ignore_unknown_options": True}
    app.command("bench", context_settings=extra)(bench_cmd)


def propose_cmd(
    plant: PlantArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the proposal as JSON.")] = False,
    home: HomeOption = None,
) -> None:
    """One proposal from the latest data (or the reason there is none)."""
    from twin.plan.propose import propose

    spec = spec_of(plant)
    out = propose(home_of(home), spec)
    if as_json:
        typer.echo(json.dumps(out.to_dict(), indent=2))
    elif isinstance(out, NoProposal):
        console.print(f"[bold]no proposal[/] for {out.plant} ({out.code}): {out.reason}")
    else:
        _print_proposal(out)


def _print_proposal(p: Proposal) -> None:
    console.print(
        f"[bold]proposal[/] for {p.plant}, twin {p.model_version}, data at "
        f"{p.data_ts:%Y-%m-%d %H:%M:%S}Z, expires {p.expires_at:%H:%M:%S}Z"
    )
    moves = Table(title="MV moves")
    for col in ("MV", "now", "proposed", "move"):
        moves.add_column(col, justify="left" if col == "MV" else "right")
    for n in p.proposed:
        moves.add_row(n, f"{p.current[n]:.4g}", f"{p.proposed[n]:.4g}", f"{p.moves[n]:+.3g}")
    console.print(moves)
    lo, hi = p.quantile_levels
    cvs = Table(
        title=f"CVs at the end of the horizon ({len(next(iter(p.mv_plan.values())))} "
        f"x {p.interval_s:g} s), band {lo:.0%}-{hi:.0%}"
    )
    for col in ("CV", "setpoint", "with proposal", "band", "if held"):
        cvs.add_column(col, justify="left" if col == "CV" else "right")
    for n, band in p.predicted.items():
        sp = p.setpoints.get(n)
        cvs.add_row(
            n,
            "-" if sp is None else f"{sp:.4g}",
            f"{band.mean[-1]:.4g}",
            f"[{band.lo[-1]:.4g}, {band.hi[-1]:.4g}]",
            f"{p.hold[n].mean[-1]:.4g}",
        )
    console.print(cvs)
    console.print(
        "cost "
        + ", ".join(f"{k} {v:.3g}" for k, v in p.cost.items())
        + f" (if held: {p.hold_cost.get('total', float('nan')):.3g}); OOD {p.ood_score:.2f} "
        f"of threshold; planned in {p.plan_ms:.0f} ms"
    )
    tight = sorted(p.margins.items(), key=lambda kv: kv[1])[:3]
    console.print("tightest margins: " + ", ".join(f"{k} {v:.3g}" for k, v in tight))
    for note in p.notes:
        console.print(f"[yellow]note:[/] {note}")


def bench_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help=f"Which benchmark: {', '.join(BENCH_NAMES)}.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the saved results as JSON (the table to stderr).")
    ] = False,
) -> None:
    """Run benchmarks/NAME.py with this Python and print its table (results in benchmarks/results/).

    Further options go to the script, e.g. `twin bench tep_control --scenarios idv6 --hours 16`
    (the Tennessee Eastman closed loop) or `twin bench control --only cstr/fouling`."""
    if name not in BENCH_NAMES:
        raise BadInput(f"unknown benchmark {name!r} (choose from {', '.join(BENCH_NAMES)})")
    script = BENCHMARKS / f"{name}.py"
    # With --json, stdout carries the JSON alone: the script's table goes to stderr.
    code = subprocess.call(
        [sys.executable, str(script), *ctx.args], stdout=sys.stderr if as_json else None
    )
    if code != 0:
        raise TwinError(f"benchmark {name!r} failed with exit code {code}")
    if as_json:
        results = BENCHMARKS / "results" / f"{name}.json"
        if not results.is_file():
            raise TwinError(f"benchmark {name!r} saved no results at {results}")
        typer.echo(results.read_text())
