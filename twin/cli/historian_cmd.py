"""`twin historian compact` and `twin historian vacuum`: the historian's files over the years."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console

from twin.cli.common import HomeOption, PlantArg, home_of, parse_time, spec_of
from twin.errors import BadInput

console = Console()
historian = typer.Typer(help="Compaction and retention of a plant's history.", no_args_is_help=True)


@historian.command("compact")
def compact_cmd(
    plant: PlantArg,
    day: Annotated[
        str | None, typer.Option("--day", help="Only this UTC day (default: every day).")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Merge each day's segments into one file (what the writer does for closed days)."""
    from twin.historian import Historian

    spec = spec_of(plant)
    when = parse_time(day, "--day") if day else None
    with console.status(f"compacting {spec.name} ..."):
        with Historian(home_of(home).historian_dir(spec.name)) as h:
            merged = h.compact(when)
    console.print(f"{spec.name}: {merged} segment files merged away", highlight=False)


@historian.command("vacuum")
def vacuum_cmd(
    plant: PlantArg,
    keep_days: Annotated[
        int | None, typer.Option("--keep-days", min=1, help="Keep this many UTC days up to today.")
    ] = None,
    before: Annotated[
        str | None, typer.Option("--before", help="Drop the days before this date (YYYY-MM-DD).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would go; remove nothing.")
    ] = False,
    home: HomeOption = None,
) -> None:
    """Retention: remove whole UTC days of history older than a cutoff."""
    from twin.historian.retention import vacuum

    if (keep_days is None) == (before is None):
        raise BadInput("give exactly one of --keep-days N or --before YYYY-MM-DD")
    if before is not None:
        cutoff = parse_time(before, "--before").date()
    else:
        cutoff = datetime.now(UTC).date() - timedelta(days=(keep_days or 1) - 1)
    spec = spec_of(plant)
    report = vacuum(home_of(home).historian_dir(spec.name), cutoff, dry_run)
    verb = "would remove" if dry_run else "removed"
    span = f" ({report.days[0]} .. {report.days[-1]})" if report.days else ""
    console.print(
        f"{spec.name}: {verb} {len(report.days)} days before {cutoff.isoformat()}{span}: "
        f"{report.rows:,} rows in {report.segments} files, {report.bytes / 1e6:.1f} MB",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add the historian group to the `twin` app."""
    app.add_typer(historian, name="historian")
