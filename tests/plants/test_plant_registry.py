"""Finding plants and their simulators by name or by path, also outside the repository."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from plant_folders import copy_plant

from plants import has_simulator, list_plants, load_plant_model
from plants.base import PlantModel, Simulation, SimulatorError
from twin.errors import BadInput
from twin.spec import load_spec


def test_builtin_plants_are_listed() -> None:
    assert {"cstr", "four_tank"} <= set(list_plants())


def test_a_plant_outside_the_repository_loads_its_own_simulator(tmp_path: Path) -> None:
    toml = copy_plant("four_tank", tmp_path / "site" / "tanks", "site_tanks")
    spec = load_spec(toml)
    assert spec.name == "site_tanks" and has_simulator(spec)
    model = load_plant_model(spec)
    assert isinstance(model, PlantModel)
    assert (
        Path(sys.modules[type(model).__module__].__file__)
        == tmp_path / "site" / "tanks" / "simulator.py"
    )
    assert Simulation(spec, seed=0).step()["h1"] > 0.0


def test_a_plant_without_simulator_says_so(tmp_path: Path) -> None:
    toml = copy_plant("cstr", tmp_path / "p", "bare")
    (tmp_path / "p" / "simulator.py").unlink()
    spec = load_spec(toml)
    assert not has_simulator(spec)
    with pytest.raises(BadInput, match="'bare' has no simulator"):
        load_plant_model(spec)


def test_a_simulator_that_does_not_fit_its_spec_is_refused(tmp_path: Path) -> None:
    toml = copy_plant("cstr", tmp_path / "p", "renamed")
    text = toml.read_text().replace('name = "Tc"', 'name = "Tcool"')
    toml.write_text(text.replace("move_weights = { Tc", "move_weights = { Tcool"))
    with pytest.raises(SimulatorError, match=r"MVs \['Tc'\] differ from the spec's \['Tcool'\]"):
        load_plant_model(load_spec(toml))


def test_a_broken_simulator_names_its_file(tmp_path: Path) -> None:
    toml = copy_plant("cstr", tmp_path / "p", "broken")
    (tmp_path / "p" / "simulator.py").write_text("def oops(:\n")
    with pytest.raises(SimulatorError, match=r"simulator.py: failed to load: SyntaxError"):
        load_plant_model(load_spec(toml))
    (tmp_path / "p" / "simulator.py").write_text("x = 1\n")
    with pytest.raises(
        SimulatorError, match="exactly one concrete PlantModel subclass, found none"
    ):
        load_plant_model(load_spec(toml))
