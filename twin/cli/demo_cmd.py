"""`twin demo`: everything in one command on embedded defaults."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from twin.cli.common import HomeOption, home_of
from twin.demo import DemoConfig, run_demo


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        home: HomeOption = None,
        port: Annotated[int, typer.Option(help="Control-room port.")] = DemoConfig.app_port,
        speed: Annotated[float, typer.Option(help="Simulated plant speed-up.")] = DemoConfig.speed,
        scenario: Annotated[str, typer.Option(help="Disturbance scenario of the live plant.")] = DemoConfig.scenario,
        train_seconds: Annotated[
            float, typer.Option("--train-seconds", help="Training time budget in seconds.")
        ] = DemoConfig.train_budget_s,
    ) -> None:
        """A simulated CSTR served over OPC-UA, a trained twin, the runtime (supervised) and the control room."""
        cfg = DemoConfig(app_port=port, speed=speed, scenario=scenario, train_budget_s=train_seconds)
        run_demo(home_of(home), cfg, Console())
