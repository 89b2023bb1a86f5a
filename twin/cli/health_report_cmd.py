"""`twin health-report PLANT --since ...`: controller health (service factor, MV utilisation,
interventions, time at limits, refusals, improvement over hold) as JSON, CSV or HTML."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import typer

from twin.cli.common import HomeOption, PlantArg, home_of, parse_optional_time, parse_time, spec_of


def register(app: typer.Typer) -> None:
    @app.command("health-report")
    def health_report(
        plant: PlantArg,
        since: str = typer.Option(..., "--since", help="Start (ISO 8601 or epoch seconds, UTC)."),
        until: str | None = typer.Option(None, "--until", help="End (default now)."),
        by: str | None = typer.Option(None, "--by", help="Also per 'day' or 'shift' (8 h)."),
        out: list[Path] = typer.Option([], "--out", help="Write .json, .csv or .html (repeat)."),
        home: HomeOption = None,
    ) -> None:
        """Controller health of PLANT from the state store and the historian."""
        from twin import health_report as hr
        from twin.errors import BadInput
        from twin.state import Store

        if by not in (None, "day", "shift"):
            raise BadInput(f"--by {by!r}: give 'day' or 'shift'")
        h, spec = home_of(home), spec_of(plant)
        start = parse_time(since, "--since")
        end = parse_optional_time(until, "--until") or datetime.now(UTC)
        with Store.open(h) as store:
            rep = hr.report(store, h, spec, start, end, by)
        for path in out:
            hr.write(rep, path)
        typer.echo(json.dumps(rep["total"], indent=2))
