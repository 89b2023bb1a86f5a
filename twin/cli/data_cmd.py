"""`twin import` and `twin export`: plant history in and out in the wide file format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from twin.cli.common import HomeOption, PlantArg, home_of, parse_time, spec_of
from twin.errors import BadInput

console = Console()


def import_cmd(
    plant: PlantArg,
    file: Annotated[
        Path, typer.Argument(help="CSV or Parquet: a timestamp column and one column per tag.")
    ],
    home: HomeOption = None,
) -> None:
    """Import a wide CSV/Parquet file into the plant's historian (all of it or, on any problem, nothing)."""
    from twin.historian import Historian
    from twin.io import import_file

    spec = spec_of(plant)
    with console.status(f"validating {file} ..."):
        with Historian(home_of(home).historian_dir(spec.name)) as historian:
            report = import_file(historian, spec, file)
    if report.values == 0 or report.start is None or report.end is None:
        console.print(f"{file}: {report.rows} rows, no values to import")
        return
    console.print(
        f"imported {report.rows} rows, {report.values} values of {len(report.tags)} tags "
        f"into {spec.name}: {report.start.isoformat()} .. {report.end.isoformat()}",
        highlight=False,
    )
    if report.out_of_range:
        console.print(
            f"[yellow]warning:[/] {report.out_of_range} values outside engineering limits "
            "were stored with quality OUT_OF_RANGE (never used as good data)"
        )


def export_cmd(
    plant: PlantArg,
    start: Annotated[
        str, typer.Option("--start", help="Window start: ISO 8601 (naive = UTC) or epoch seconds.")
    ],
    end: Annotated[str, typer.Option("--end", help="Window end (exclusive).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output file; .csv or .parquet.")],
    tags: Annotated[
        str | None, typer.Option("--tags", help="Comma-separated tags (default: all).")
    ] = None,
    resample: Annotated[
        str | None, typer.Option("--resample", help="Mean of good values per interval, e.g. 10s.")
    ] = None,
    fill: Annotated[
        str | None,
        typer.Option(
            "--fill",
            help="With --resample: hold (carry the last value up to the tag's max age) or none. "
            "Default: report-by-exception tags hold, others none.",
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Export a time window of the plant's history in the import format."""
    from twin.historian import Historian
    from twin.io import export_file

    spec = spec_of(plant)
    t0, t1 = parse_time(start, "--start"), parse_time(end, "--end")
    names = [t.strip() for t in tags.split(",") if t.strip()] if tags else None
    if tags is not None and not names:
        raise BadInput("--tags: give at least one tag name")
    with console.status(f"exporting {spec.name} ..."):
        with Historian(home_of(home).historian_dir(spec.name)) as historian:
            report = export_file(historian, spec, t0, t1, output, names, resample, fill)
    console.print(
        f"exported {report.rows} rows, {report.values} values of {len(report.tags)} tags to {report.path}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add this group's commands to the `twin` app."""
    app.command("import")(import_cmd)
    app.command("export")(export_cmd)
