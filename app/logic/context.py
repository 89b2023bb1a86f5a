"""Which twin home and plant the control room looks at, and read-only access to them.

The control room never holds a plant connection: it reads the historian and the state store of
one twin home (TWIN_HOME, set by `twin app --home`) and writes only decisions through twin.api.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from twin.errors import BadInput
from twin.historian import Historian
from twin.paths import Home
from twin.spec import PlantSpec, load_spec
from twin.state import Store

PLANT_ENV = "TWIN_PLANT"
REFRESH_ENV = "TWIN_APP_REFRESH_S"


@dataclass(frozen=True)
class RoomConfig:
    """Settings of one control-room server."""

    home: Path
    """Twin home whose historian, state store and registry are shown."""
    plant: str | None = None
    """Plant shown first (name or path to a plant.toml); default: the first one with data."""
    refresh_s: float = 2.0
    """How often live tiles (Overview, Proposals) refresh themselves."""

    @classmethod
    def from_env(cls) -> RoomConfig:
        refresh = float(os.environ.get(REFRESH_ENV) or 2.0)
        if not refresh > 0:
            raise BadInput(f"{REFRESH_ENV}={refresh}: must be positive")
        return cls(Home.at(None).root, os.environ.get(PLANT_ENV) or None, refresh)


def known_plants(home: Home, store: Store) -> list[str]:
    """Plants this home has data, proposals or a runtime for, by name."""
    names: set[str] = set()
    hist = home.root / "historian"
    if hist.is_dir():
        # historian/plant=NAME (Hive layout) or historian/NAME (homes made before it)
        names.update(p.name.removeprefix("plant=") for p in hist.iterdir() if p.is_dir())
    names.update(store.plants_on_record())
    return sorted(names)


def spec_ref(store: Store, plant: str) -> str:
    """How to load a plant's spec: the path the runtime recorded with its proposals, else the name.

    A plant defined outside the repository is known to the control room only by the spec path
    its runtime stored; a built-in plant is found by name.
    """
    newest = store.list_proposals(plant, limit=1)
    ref = newest[0].payload.get("spec_path") if newest else None
    if ref and Path(ref).is_file():
        return str(ref)
    given = os.environ.get(PLANT_ENV) or ""
    if given.endswith(".toml") and Path(given).is_file() and load_spec(given).name == plant:
        return given  # `twin app --plant path/to/plant.toml` before any proposal exists
    return plant


def plant_name(ref: str) -> str:
    """A plant's name from a name or a path to its plant.toml."""
    return load_spec(ref).name if ref.endswith(".toml") else ref


def plant_spec(store: Store, plant: str) -> PlantSpec:
    """The spec of a plant shown in the control room."""
    if Path(plant).suffix == ".toml":
        return load_spec(plant)
    return load_spec(spec_ref(store, plant))


@contextmanager
def historian(home: Home, plant: str) -> Iterator[Historian]:
    """A reader on a plant's historian (opens no writer lock; cheap to make per page run)."""
    h = Historian(home.historian_dir(plant))
    try:
        yield h
    finally:
        h.close()
