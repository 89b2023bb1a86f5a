"""`twin plants` (list plants) and `twin generate` (offline data from a plant's simulator)."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from twin.cli.common import HomeOption, PlantArg, home_of, parse_optional_time, spec_of
from twin.spec import PlantSpec

console = Console()


def _tags_cell(spec: PlantSpec) -> str:
    counts = [f"{len(spec.by_role(r))} {r}" for r in ("cv", "mv", "dv") if spec.by_role(r)]
    return " ".join(counts)


def _sources_cell(spec: PlantSpec) -> str:
    names = [n for n in ("opcua", "modbus") if getattr(spec.source, n) is not None]
    return "+".join(names) or "-"


def plants_table(specs: list[PlantSpec]) -> Table:
    from plants import has_simulator  # scipy loads only for commands that simulate

    """The listing as a rich table (one row per plant)."""
    table = Table(title="Plants", box=box.SIMPLE_HEAD)
    table.add_column("name", no_wrap=True)
    table.add_column("description", overflow="fold", ratio=1, min_width=12)
    for column in ("tags", "sample", "sources", "simulator"):
        table.add_column(column, no_wrap=True)
    for spec in specs:
        table.add_row(
            spec.name,
            spec.plant.description,
            _tags_cell(spec),
            f"{spec.plant.sample_period_s:g} s",
            _sources_cell(spec),
            "yes" if has_simulator(spec) else "no",
        )
    return table


def scenarios_table(spec: PlantSpec) -> Table:
    from plants import load_plant_model

    """The simulator's scenarios of one plant: name and description."""
    table = Table(title=f"Scenarios of {spec.name}", box=box.SIMPLE_HEAD)
    table.add_column("scenario", no_wrap=True)
    table.add_column("description", overflow="fold", ratio=1)
    for name, scenario in sorted(load_plant_model(spec).scenarios.items()):
        table.add_row(name, scenario.description)
    return table


def register(app: typer.Typer) -> None:
    """Add this group's commands to the `twin` app."""

    @app.command("plants")
    def plants_cmd(
        plants: Annotated[
            list[str] | None,
            typer.Argument(
                help="Plant names or plant.toml paths to show (default: the built-in plants)."
            ),
        ] = None,
        scenarios: Annotated[
            bool, typer.Option("--scenarios", help="Also list each simulator's scenarios.")
        ] = False,
    ) -> None:
        """List plants: name, description, tags, sample period, sources, simulator."""
        from plants import has_simulator, list_plants

        specs = [spec_of(p) for p in (plants or list_plants())]
        console.print(plants_table(specs))
        if scenarios:
            for spec in specs:
                if has_simulator(spec):
                    console.print(scenarios_table(spec))

    @app.command("generate")
    def generate_cmd(
        plant: PlantArg,
        hours: Annotated[float, typer.Option("--hours", help="Simulated hours of data.")],
        excitation: Annotated[
            str, typer.Option("--excitation", help="MV excitation: prbs, gbn, steps or none.")
        ] = "prbs",
        scenario: Annotated[
            str | None, typer.Option("--scenario", help="Disturbance scenario of the simulator.")
        ] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of noise and excitation.")] = 0,
        start: Annotated[
            str | None,
            typer.Option("--start", help="ISO time of the first sample (UTC); default: ends now."),
        ] = None,
        band: Annotated[
            str,
            typer.Option(
                "--band", help="Excite within 'operating' (default) or 'engineering' limits."
            ),
        ] = "operating",
        home: HomeOption = None,
    ) -> None:
        """Run the plant's simulator faster than real time and write the data into the historian."""
        from twin.generate import GenerateConfig, run_into

        spec = spec_of(plant)
        config = GenerateConfig(
            hours,
            excitation,  # type: ignore[arg-type]  # GenerateConfig names a bad value
            scenario,
            seed,
            parse_optional_time(start, "--start"),
            band,  # type: ignore[arg-type]
        )
        where = home_of(home)
        t0 = time.perf_counter()
        result = run_into(where, spec, config)
        wall = time.perf_counter() - t0
        console.print(
            f"wrote {result.values:,} values of {len(spec.tags)} tags for {spec.name}: "
            f"{result.first.isoformat()} .. {result.last.isoformat()} "
            f"({hours:g} h simulated in {wall:.1f} s) into {where.historian_dir(spec.name)}",
            highlight=False,
            soft_wrap=True,
        )
