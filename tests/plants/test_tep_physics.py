"""Tennessee Eastman (tep): the plant behind the spec, run through the project's Simulation.

Reference figures: the Mode 1 base case of Downs & Vogel (1993) as the revised kernel starts
it; tep-studio's documented closed-loop parity (reactor level 75 %, pressure 2705 kPa,
temperature 120.4 degC, production near 22.95 m3/h under Ricker's layer); IDV(6) trips the
plant within hours even with the layer's overrides (tep-studio: the layer outlasts the 3.2 h
open-loop shutdown but cannot hold the plant).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
import tep_studio

from plants import list_plants, load_plant_model
from plants.base import Simulation
from twin.spec import PlantSpec, load_spec

START = datetime(2026, 1, 1, tzinfo=UTC)
HOUR_S = 3600.0
UNITS = {"kPa gauge": "kPa", "mol %": "mol%"}


@pytest.fixture(scope="module")
def spec() -> PlantSpec:
    return load_spec("tep")


def _run(sim: Simulation, hours: float) -> list[dict[str, float]]:
    """Every sample until `hours` of plant time or a trip, whichever comes first."""
    rows = []
    while sim.elapsed_s < hours * HOUR_S - 1e-6 and sim.model.trip is None:  # type: ignore[attr-defined]
        rows.append(sim.step())
    return rows


def test_tep_is_a_builtin_plant_with_the_41_measurements(spec: PlantSpec) -> None:
    assert "tep" in list_plants()
    model = load_plant_model(spec)
    assert type(model).__name__ == "TepModel"
    xmeas = [t for t in spec.tags if t.description.startswith("XMEAS(")]
    assert len(xmeas) == 41 and len(spec.mvs) == 9
    for i, (tag, (_, unit, description)) in enumerate(
        zip(xmeas, tep_studio.list_measurements(), strict=True), start=1
    ):
        assert tag.description.startswith(f"XMEAS({i}) {description}"), tag.name
        assert tag.unit == UNITS.get(unit, unit), tag.name
    # The shutdown interlocks are the engineering limits, operating limits lie inside.
    assert spec.tag("reactor_pressure").limits[1] == 3000.0
    assert spec.tag("reactor_temperature").limits[1] == 175.0
    assert spec.tag("product_g").role == "cv" and "operating_cost" in spec.objective.economic


def test_the_start_is_the_documented_mode_1_base_case(spec: PlantSpec) -> None:
    values = Simulation(spec, seed=0, start=START).measure()
    assert values["reactor_pressure"] == pytest.approx(2705.0, abs=0.1)
    assert values["reactor_level"] == pytest.approx(75.0, abs=0.01)
    assert values["reactor_temperature"] == pytest.approx(120.4, abs=0.01)
    assert values["product_flow"] == pytest.approx(22.949, abs=0.01)
    assert values["product_g"] == pytest.approx(53.724, abs=0.01)
    assert values["operating_cost"] == pytest.approx(170.6, abs=0.1)  # $/h, D&V Table 6


@pytest.mark.slow
def test_the_regulatory_layer_holds_the_base_case_for_48_hours(spec: PlantSpec) -> None:
    sim = Simulation(spec, seed=3, start=START)
    rows = _run(sim, 48.0)
    assert sim.model.trip is None and len(rows) == 48 * 100  # type: ignore[attr-defined]
    last_day = rows[len(rows) // 2 :]
    for cv in spec.cvs:
        values = np.array([r[cv.name] for r in rows])
        lo, hi = cv.operating_limits
        assert lo <= values.min() and values.max() <= hi, cv.name
    mean = {k: float(np.mean([r[k] for r in last_day])) for k in rows[0]}
    assert mean["reactor_level"] == pytest.approx(75.0, abs=3.0)
    assert mean["reactor_pressure"] == pytest.approx(2705.0, abs=60.0)
    assert mean["reactor_temperature"] == pytest.approx(120.4, abs=2.0)
    assert 21.0 < mean["product_flow"] < 25.0


def test_a_feed_loss_trips_the_plant_within_hours_under_the_layer_alone(spec: PlantSpec) -> None:
    sim = Simulation(spec, seed=0, scenario="idv6", start=START)
    rows = _run(sim, 14.0)
    trip = sim.model.trip  # type: ignore[attr-defined]
    assert trip is not None, "IDV(6) with held setpoints must shut the plant down"
    hours_after_onset = trip.time_s / HOUR_S - 1.0
    assert 3.2 < hours_after_onset < 12.0, trip
    assert "Shutting down" in trip.reason
    # The A feed is gone, and the pressure climbs until the layer's override caps it.
    assert max(r["feed_a_flow"] for r in rows[-100:]) < 0.05
    assert max(r["reactor_pressure"] for r in rows) > 2850.0
    # A plant that is down stays down: its readings hold.
    frozen = sim.step()
    assert frozen == sim.step()


@pytest.mark.parametrize(
    ("mv", "move", "cv", "at_least", "hours"),
    [
        ("sp_reactor_pressure", +60.0, "reactor_pressure", +40.0, 1.0),
        ("sp_reactor_temperature", +2.0, "reactor_temperature", +1.5, 1.0),
        ("sp_product_g", +1.5, "product_g", +0.7, 3.0),
        ("sp_production", -1.0, "product_flow", -0.4, 3.0),
    ],
)
def test_a_setpoint_move_moves_its_measurement(
    spec: PlantSpec, mv: str, move: float, cv: str, at_least: float, hours: float
) -> None:
    sim = Simulation(spec, seed=1, start=START)
    before = np.mean([r[cv] for r in _run(sim, 0.5)[-5:]])
    sim.set_mvs({mv: sim.mv[mv] + move})
    after = np.mean([r[cv] for r in _run(sim, 0.5 + hours)[-5:]])
    assert sim.model.trip is None  # type: ignore[attr-defined]
    assert (after - before) / at_least >= 1.0, (before, after)


def test_same_seed_same_plant_other_seed_other_noise(spec: PlantSpec) -> None:
    a = _run(Simulation(spec, seed=5, start=START), 0.5)
    b = _run(Simulation(spec, seed=5, start=START), 0.5)
    c = _run(Simulation(spec, seed=6, start=START), 0.5)
    assert a == b
    assert a[-1]["reactor_pressure"] != c[-1]["reactor_pressure"]
