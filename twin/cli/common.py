"""Options and helpers shared by the command modules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from twin.paths import Home
from twin.spec import PlantSpec, load_spec

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        envvar="TWIN_HOME",
        help="Folder of the historian, state store and model registry (default ./twin-data).",
        show_default=False,
    ),
]

PlantArg = Annotated[str, typer.Argument(help="A built-in plant's name or a path to a plant.toml.")]


def home_of(home: Path | None) -> Home:
    return Home.at(home)


def spec_of(plant: str) -> PlantSpec:
    return load_spec(plant)
