"""Options and helpers shared by the command modules."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from twin.errors import BadInput
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


def parse_time(value: str, option: str) -> datetime:
    """A CLI time -> aware UTC datetime: ISO 8601 (a time without a zone is UTC, as every
    timestamp in the project is) or epoch seconds. Bad input names the option."""
    text = value.strip()
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(
            f"{option} {value!r} is not an ISO 8601 time (e.g. 2026-01-01T00:00:00Z) or epoch seconds"
        ) from None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def parse_optional_time(value: str | None, option: str) -> datetime | None:
    return None if value is None else parse_time(value, option)
