"""`twin fleet train` and `twin fleet sweep`: many twins on Ray (imported only here, on demand)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from twin.cli.common import HomeOption, PlantArg, home_of
from twin.errors import BadInput, TwinError
from twin.fleet.jobs import JobResult, TrainOptions

console = Console()
err = Console(stderr=True)

fleet = typer.Typer(help="Many plants' twins trained on Ray.", no_args_is_help=True)

AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="Ray cluster: ray://HOST:PORT, HOST:PORT or auto (default: a local Ray started now).",
    ),
]
DeviceOption = Annotated[str, typer.Option("--device", help="cpu or cuda.")]
EpochsOption = Annotated[
    int | None, typer.Option("--epochs", min=1, help="Most epochs (as twin train).")
]
MaxSecondsOption = Annotated[
    float | None,
    typer.Option("--max-seconds", min=1, help="Wall-clock safety net of each fit (as twin train)."),
]
QuickOption = Annotated[bool, typer.Option("--quick", help="Tiny model (as twin train --quick).")]
CpusOption = Annotated[
    int | None, typer.Option("--cpus", min=1, help="CPUs of a local Ray (default: all).")
]


class FleetFailed(TwinError):
    """One or more plants of a fleet run failed (each is reported with its error)."""


def parse_seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise BadInput(f"--seeds {text!r}: give integers separated by commas, e.g. 0,1,2") from None


def _jepa_cell(nrmse: dict, which: int) -> str:
    """The JEPA's held-out NRMSE at the first (0) or longest (-1) horizon, with its horizon."""
    jepa = {int(h): v for h, v in nrmse.get("jepa", {}).items() if v is not None}
    if not jepa:
        return "-"
    h = sorted(jepa)[which]
    return f"{jepa[h]:.3f} (h{h})"


def summary_table(results: list[JobResult]) -> Table:
    table = Table(title="fleet training (held-out NRMSE of the twin)", box=box.SIMPLE_HEAD)
    for col in ("plant", "seed", "version", "active", "first horizon", "longest horizon"):
        table.add_column(col)
    table.add_column("s", justify="right")
    table.add_column("error")
    for r in results:
        table.add_row(
            r.plant,
            str(r.seed),
            r.version or "-",
            "*" if r.active else "",
            _jepa_cell(r.nrmse, 0),
            _jepa_cell(r.nrmse, -1),
            f"{r.seconds:.1f}",
            escape(r.error or ""),
        )
    return table


@fleet.command("train")
def train_cmd(
    plants: Annotated[
        list[str] | None,
        typer.Argument(help="Built-in plant names or plant.toml paths.", show_default=False),
    ] = None,
    all_plants: Annotated[bool, typer.Option("--all", help="Every built-in plant.")] = False,
    address: AddressOption = None,
    device: DeviceOption = "cpu",
    seeds: Annotated[str, typer.Option("--seeds", help="Seeds, comma-separated.")] = "0",
    gpus_per_twin: Annotated[
        float, typer.Option("--gpus-per-twin", min=0, help="GPU share each twin's task asks for.")
    ] = 0.0,
    cpus: CpusOption = None,
    epochs: EpochsOption = None,
    max_seconds: MaxSecondsOption = None,
    quick: QuickOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    home: HomeOption = None,
) -> None:
    """Train (and evaluate, and register) each plant's twin as a Ray task, as `twin train` does."""
    from twin.fleet.cluster import connected
    from twin.fleet.train import plan_jobs, train_on_ray

    names = list(plants or [])
    if all_plants:
        if names:
            raise BadInput("give plants or --all, not both")
        from plants import list_plants

        names = list(list_plants())
    if device == "cuda" and gpus_per_twin == 0:
        gpus_per_twin = 1.0  # a CUDA twin must be placed on a node with a GPU
    options = TrainOptions(device=device, epochs=epochs, max_seconds=max_seconds, quick=quick)
    jobs = plan_jobs(names, parse_seeds(seeds), home_of(home), options)

    def report(r: JobResult) -> None:
        state = f"{r.version} (active)" if r.active else str(r.version)
        outcome = state if r.error is None else f"[red]failed[/]: {escape(r.error)}"
        err.print(f"{r.plant} seed {r.seed}: {outcome}", highlight=False)

    with connected(address, cpus) as ray:
        results = train_on_ray(ray, jobs, gpus_per_twin, on_result=report)
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in results], indent=2))
    else:
        console.print(summary_table(results))
    failed = [r for r in results if not r.ok]
    if failed:
        raise FleetFailed(
            f"{len(failed)} of {len(results)} twins failed: {', '.join(f'{r.plant}/seed {r.seed}' for r in failed)}"
        )


@fleet.command("sweep")
def sweep_cmd(
    plant: PlantArg,
    trials: Annotated[int, typer.Option("--trials", min=1, help="Tune trials.")] = 8,
    address: AddressOption = None,
    device: DeviceOption = "cpu",
    seed: Annotated[int, typer.Option("--seed", help="Seed of every trial.")] = 0,
    cpus: CpusOption = None,
    epochs: EpochsOption = None,
    max_seconds: MaxSecondsOption = None,
    quick: QuickOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    home: HomeOption = None,
) -> None:
    """Search the twin's config with Ray Tune; register the best by validation score."""
    from twin.fleet.cluster import connected
    from twin.fleet.sweep import sweep

    options = TrainOptions(device=device, epochs=epochs, max_seconds=max_seconds, quick=quick)
    h = home_of(home)
    with connected(address, cpus) as ray:
        res = sweep(ray, plant, h, trials, options, seed)
    if as_json:
        typer.echo(json.dumps(asdict(res), indent=2))
        return
    table = Table(title=f"sweep of {res.plant}: {len(res.trials)} trials", box=box.SIMPLE_HEAD)
    keys = sorted({k for t in res.trials for k in t["params"]})
    for col in (*keys, "val", "error"):
        table.add_column(col)
    for t in sorted(res.trials, key=lambda t: (t["val"] is None, t["val"] or 0.0)):
        cells = [
            f"{t['params'][k]:.3g}" if isinstance(t["params"][k], float) else str(t["params"][k])
            for k in keys
        ]
        val = "-" if t["val"] is None else f"{t['val']:.4f}"
        table.add_row(*cells, val, escape(t["error"] or ""))
    err.print(table)
    err.print(
        f"best val {res.best_val:.4f}; registered {res.version} (val {res.registered_val:.4f})",
        highlight=False,
    )
    typer.echo(res.version)


def register(app: typer.Typer) -> None:
    """Add the fleet group to the `twin` app."""
    app.add_typer(fleet, name="fleet")
