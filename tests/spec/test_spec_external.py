"""A plant defined outside the repository, with its own simulator, works with every command here."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from plants import has_simulator, load_plant_model
from plants.base import Simulation
from twin.cli import main
from twin.historian import Historian
from twin.paths import Home
from twin.spec import PLANTS_DIR, load_spec

SPEC = """\
[plant]
name = "heated_tank"
description = "A stirred tank with a heater (written by a test, outside the repo)"
sample_period_s = 2.0
control_interval_s = 10.0

[[tags]]
name = "temp"
role = "cv"
unit = "degC"
limits = [0.0, 100.0]
operating = [10.0, 90.0]

[[tags]]
name = "ambient"
role = "dv"
unit = "degC"
limits = [-30.0, 50.0]

[[tags]]
name = "heat"
role = "mv"
unit = "kW"
limits = [0.0, 20.0]
operating = [0.0, 15.0]
max_move = 2.0

[objective]
setpoints = { temp = 45.0 }
"""

SIMULATOR = """
import numpy as np
from plants.base import PlantModel, Scenario, step

TAU_S = 300.0  # thermal time constant, s
GAIN_K_PER_KW = 4.0  # steady temperature rise per kW, K/kW


class HeatedTank(PlantModel):
    state_names = ("temp",)
    mv_names = ("heat",)
    disturbance_names = ("ambient",)
    output_names = ("temp", "ambient", "heat")
    time_constant_s = TAU_S

    def __init__(self):
        super().__init__()
        self.noise_std = {"temp": 0.1, "ambient": 0.1}
        self.scenarios = {"cold_snap": Scenario("cold_snap", "ambient -10 K", {"ambient": step(600.0, 15.0, 5.0)})}

    def derivatives(self, t, x, u, d):
        return np.array([(d[0] + GAIN_K_PER_KW * u[0] - x[0]) / TAU_S])

    def outputs(self, x, u, d):
        return {"temp": float(x[0]), "ambient": float(d[0]), "heat": float(u[0])}

    def steady_state(self, u, d):
        return np.array([d[0] + GAIN_K_PER_KW * u[0]])

    def nominal(self):
        return np.array([7.5]), np.array([15.0])
"""


def _plant(tmp_path: Path) -> Path:
    folder = tmp_path / "site" / "heated_tank"
    folder.mkdir(parents=True)
    (folder / "plant.toml").write_text(SPEC)
    (folder / "simulator.py").write_text(SIMULATOR)
    return folder / "plant.toml"


def test_an_outside_plant_validates_and_simulates(tmp_path: Path) -> None:
    spec = load_spec(_plant(tmp_path))
    assert spec.folder == tmp_path / "site" / "heated_tank" and has_simulator(spec)
    model = load_plant_model(spec)
    sim = Simulation(spec, seed=1, scenario="cold_snap", noise=False)
    assert sim.true_outputs()["temp"] == 45.0
    for _ in range(600):
        sim.step()
    assert sim.true_outputs()["temp"] < 40.0  # the cold snap cools it
    assert np.allclose(
        model.derivatives(0, model.steady_state(*model.nominal()), *model.nominal()), 0
    )


def test_an_outside_plant_works_with_plants_and_generate(tmp_path: Path, capsys) -> None:
    toml = _plant(tmp_path)
    assert main(["plants", str(toml), "--scenarios"]) == 0
    out = capsys.readouterr().out
    assert "heated_tank" in out and "cold_snap" in out and "yes" in out
    # The folder works as well as the file.
    assert main(["plants", str(toml.parent)]) == 0
    home = tmp_path / "home"
    code = main(
        [
            "generate",
            str(toml),
            "--hours",
            "1",
            "--scenario",
            "cold_snap",
            "--start",
            "2026-02-01T00:00:00+00:00",
            "--home",
            str(home),
        ]
    )
    assert code == 0
    with Historian(Home.at(home).historian_dir("heated_tank")) as h:
        data = h.read(datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 2, 2, tzinfo=UTC))
    assert len(data) == 1800 and set(data.columns) == {"temp", "ambient", "heat"}
    assert data["heat"].between(0.0, 15.0).all()


def test_builtin_specs_hash_the_same_wherever_they_live(tmp_path: Path) -> None:
    for name in ("cstr", "four_tank"):
        copy = tmp_path / name / "plant.toml"
        copy.parent.mkdir()
        shutil.copy(PLANTS_DIR / name / "plant.toml", copy)
        assert load_spec(copy).spec_hash() == load_spec(name).spec_hash()
