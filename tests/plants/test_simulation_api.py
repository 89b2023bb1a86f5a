"""The Simulation around any plant: clock, seeds, actuators, noise, scenarios."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from plants.base import (
    Profile,
    Scenario,
    Simulation,
    integrate,
    integrate_batch,
    ramp,
    schedule,
    step,
)
from twin.errors import BadInput

START = datetime(2026, 1, 1, tzinfo=UTC)


def _run(spec, seed: int, n: int = 50) -> np.ndarray:
    sim = Simulation(spec, seed=seed, start=START)
    return np.array([list(sim.step().values()) for _ in range(n)])


def test_same_seed_same_data_other_seed_other_noise(cstr_spec) -> None:
    a, b, c = _run(cstr_spec, 1), _run(cstr_spec, 1), _run(cstr_spec, 2)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_clock_follows_the_sample_period(four_tank_spec) -> None:
    sim = Simulation(four_tank_spec, start=START)
    for _ in range(7):
        sim.step()
    assert sim.time == START + timedelta(seconds=7 * four_tank_spec.plant.sample_period_s)
    assert sim.time.tzinfo is not None


def test_mv_writes_saturate_and_bad_writes_are_refused(cstr_spec) -> None:
    sim = Simulation(cstr_spec)
    assert sim.set_mvs({"Tc": 500.0}) == {"Tc": 320.0}
    assert sim.set_mvs({"Tc": 100.0}) == {"Tc": 280.0}
    assert sim.mv == {"Tc": 280.0}
    assert sim.step()["Tc"] == 280.0  # a setpoint reads back exactly
    with pytest.raises(BadInput, match="'T' is not a writable MV"):
        sim.set_mvs({"T": 300.0})
    with pytest.raises(BadInput, match="not finite"):
        sim.set_mvs({"Tc": float("nan")})
    assert sim.mv == {"Tc": 280.0}


def test_unknown_scenario_names_the_known_ones(cstr_spec) -> None:
    with pytest.raises(BadInput, match="no scenario 'nope'.*hard.*stable"):
        Simulation(cstr_spec, scenario="nope")


def test_measurement_noise_has_the_stated_size(cstr_spec) -> None:
    sim = Simulation(cstr_spec, seed=4)
    values = np.array([[m["T"], m["Ca"]] for m in (sim.step() for _ in range(2000))])
    true = sim.true_outputs()
    assert values[:, 0].std() == pytest.approx(sim.model.noise_std["T"], rel=0.1)
    assert values[:, 1].std() == pytest.approx(sim.model.noise_std["Ca"], rel=0.1)
    assert values[:, 0].mean() == pytest.approx(true["T"], abs=0.05)


def test_profiles_steps_ramps_and_repeats() -> None:
    s = step(10.0, 1.0, 2.0)
    assert (s.at(0), s.at(9.99), s.at(10.0), s.at(1e6)) == (1.0, 1.0, 2.0, 2.0)
    r = ramp(10.0, 20.0, 0.0, 1.0)
    assert (r.at(5), r.at(15), r.at(25)) == (0.0, 0.5, 1.0)
    st = schedule(5.0, (10.0, 6.0), (20.0, 7.0))
    assert [st.at(t) for t in (0, 10, 15, 20, 99)] == [5.0, 6.0, 6.0, 7.0, 7.0]
    sc = Scenario("x", "", disturbances={"a": st}, repeat_s=30.0)
    assert sc.disturbance_overrides(35.0) == {"a": 5.0}
    assert sc.disturbance_overrides(52.0) == {"a": 7.0}
    with pytest.raises(ValueError, match="must not decrease"):
        Profile(((5.0, 1.0), (4.0, 2.0)))


@pytest.mark.parametrize("plant", ["cstr", "four_tank"])
def test_batched_physics_agrees_with_one_state_at_a_time(plant: str, request) -> None:
    """The oracle integrates many trial plans as one batch: same derivatives, same states."""
    spec = request.getfixturevalue(f"{plant}_spec")
    sim = Simulation(spec, start=START, noise=False)
    model, rng = sim.model, np.random.default_rng(3)
    x0, u0 = model.steady_state(sim.u, sim.disturbances()), sim.u
    # States around the operating point, some far off it (a runaway, a full or empty tank).
    xs = x0 * rng.uniform(0.7, 1.4, (40, x0.size))
    us = u0 * rng.uniform(0.9, 1.1, (40, u0.size))
    d = sim.disturbances()
    one = np.stack([model.derivatives(0.0, x, u, d) for x, u in zip(xs, us, strict=True)])
    np.testing.assert_allclose(model.derivatives_batch(0.0, xs, us, d), one, rtol=1e-12, atol=1e-12)
    # Integrated apart and together over a minute, states agree to the integrator's tolerance.
    xs, us = xs[:8], us[:8]
    apart = np.stack(
        [
            integrate(model, x, u, d, 0.0, 60.0, rtol=1e-8, atol=1e-10)
            for x, u in zip(xs, us, strict=True)
        ]
    )
    together = integrate_batch(model, xs, us, d, 0.0, 60.0, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(together, apart, rtol=1e-5, atol=1e-6)
