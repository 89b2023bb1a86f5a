"""`twin retrain PLANT --since ...`: a new twin version from the live history (awaiting promotion)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from twin.cli.common import HomeOption, PlantArg, home_of, parse_optional_time, spec_of
from twin.cli.model_cmd import QUICK_HELP


def register(app: typer.Typer) -> None:
    @app.command("retrain")
    def retrain_cmd(
        plant: PlantArg,
        since: Annotated[
            str,
            typer.Option(
                "--since",
                help="Start of the window: ISO 8601 plant time, or a duration back from the "
                "newest sample (90m, 6h, 2d). A retrain_recommended event names one.",
            ),
        ],
        until: Annotated[str | None, typer.Option("--until", help="End (default: newest).")] = None,
        seed: Annotated[int, typer.Option("--seed", help="Training seed.")] = 0,
        device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
        epochs: Annotated[int | None, typer.Option("--epochs", min=1)] = None,
        max_seconds: Annotated[
            float | None, typer.Option("--max-seconds", min=1, help="Safety net of each fit.")
        ] = None,
        quick: Annotated[bool, typer.Option("--quick", help=QUICK_HELP)] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
        home: HomeOption = None,
    ) -> None:
        """Train a new version on the plant's recent live history; it waits for gated promotion.

        Prints the new version id last (or the JSON record with --json)."""
        from twin.maintain.retrain import retrain
        from twin.train_presets import train_configs

        spec = spec_of(plant)
        configs = train_configs(
            device=device, seed=seed, quick=quick, epochs=epochs, max_seconds=max_seconds
        )
        end = parse_optional_time(until, "--until")
        result = retrain(home_of(home), spec, since, configs, until=end)
        if as_json:
            typer.echo(json.dumps(result.to_dict(), indent=2))
            return
        typer.echo(
            f"{spec.name}: {result.version} trained on {result.samples} live samples "
            f"{result.start.isoformat()} .. {result.end.isoformat()} (MV moves "
            f"{result.excitation.moves}); active is still {result.active_version}: evaluate it "
            f"with `twin serve {spec.name} --shadow {result.version}`, then "
            f"`twin models promote {spec.name} {result.version} --gated`",
            err=True,
        )
        if result.step_test:
            typer.echo(f"poor excitation: {result.step_test}", err=True)
        typer.echo(result.version)
