"""`twin demo`: everything in one command on embedded defaults."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from twin.cli.common import HomeOption, home_of
from twin.demo import DemoConfig, demo_config, run_demo


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        home: HomeOption = None,
        plant: Annotated[str, typer.Option(help="Built-in plant to simulate.")] = DemoConfig.plant,
        port: Annotated[int, typer.Option(help="Control-room port.")] = DemoConfig.app_port,
        speed: Annotated[
            float | None, typer.Option(help="Simulated plant speed-up (default: the plant's).")
        ] = None,
        scenario: Annotated[
            str | None, typer.Option(help="Disturbance scenario of the live plant.")
        ] = None,
        train_seconds: Annotated[
            float | None, typer.Option("--train-seconds", help="Training time budget in seconds.")
        ] = None,
    ) -> None:
        """A simulated plant (default the CSTR) served over OPC-UA, a trained twin, the runtime
        (supervised) and the control room."""
        cfg = demo_config(
            plant, app_port=port, speed=speed, scenario=scenario, train_budget_s=train_seconds
        )
        run_demo(home_of(home), cfg, Console())
