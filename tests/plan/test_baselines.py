"""Baselines: the oracle moves the true plant the right way within limits, the velocity-form ARX
is offset-free, PID pairs the loops by the relative gain array."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from plants import load_plant_model
from plants.base import Simulation, integrate
from tests.plan.toy import toy_spec
from twin.arx import ArxModel
from twin.baselines.arx_world import ArxWorld
from twin.baselines.oracle import OracleNMPC
from twin.baselines.pid import PidController
from twin.spec import load_spec


@pytest.mark.timeout(120)
def test_oracle_lowers_the_coolant_to_raise_concentration() -> None:
    spec = load_spec("cstr")
    sim = Simulation(spec, seed=0, noise=False)
    oracle = OracleNMPC(spec, sim.model)
    tc = sim.mv["Tc"]
    move = oracle.decide(sim.x, sim.disturbances(), sim.mv, {"Ca": 0.92})
    tag = spec.tag("Tc")
    assert move["Tc"] < tc  # colder jacket, less reaction, more A left
    assert tc - move["Tc"] <= tag.max_move + 1e-9
    assert tag.operating_limits[0] <= move["Tc"] <= tag.operating_limits[1]


@pytest.mark.timeout(300)
def test_oracle_keeps_the_temperature_limit_near_ignition() -> None:
    """Near the ignition point, with a target on the unstable middle branch, the oracle's whole
    plan keeps the reactor under its operating limit at every sample (a hard constraint), where
    simply pushing the coolant up would run away."""
    spec = load_spec("cstr")
    sim = Simulation(spec, seed=0, noise=False, mvs={"Tc": 303.0})
    model, x, d = sim.model, sim.x.copy(), sim.disturbances()
    oracle = OracleNMPC(spec, model)
    oracle.decide(x, d, sim.mv, {"Ca": 0.5})
    assert oracle.last_feasible
    t_hi = spec.tag("T").operating_limits[1]

    def peak_temperature(plan: np.ndarray) -> float:
        xs, peak = x.copy(), float(x[1])
        for u in np.repeat(plan, spec.plant.samples_per_interval):
            xs = integrate(model, xs, np.array([u]), d, 0.0, spec.plant.sample_period_s)
            peak = max(peak, float(xs[1]))
        return peak

    plan = oracle._warm[:, 0]
    assert len(plan) >= 20  # at least 20 intervals: sees further than the planner's 10
    assert peak_temperature(plan) <= t_hi + 0.05
    assert peak_temperature(np.full(len(plan), 304.0)) > t_hi + 20.0  # the limit binds here
    tag = spec.tag("Tc")
    assert np.all(np.abs(np.diff(np.concatenate([[303.0], plan]))) <= tag.max_move + 1e-9)
    assert np.all(
        (plan >= tag.operating_limits[0] - 1e-9) & (plan <= tag.operating_limits[1] + 1e-9)
    )


def _linear_frame(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """y+ = 0.8 y + 0.5 u + 3 sampled every second, u held 5 s, as a wide frame."""
    rng = np.random.default_rng(seed)
    y, rows, u = 15.0, [], 0.0
    for k in range(n):
        if k % 5 == 0:
            u = float(rng.uniform(-2, 2))
        rows.append((y, u))
        y = 0.8 * y + 0.5 * u + 3.0
    idx = pd.date_range("2026-01-01", periods=n, freq="1s", tz="UTC", name="timestamp")
    return pd.DataFrame(rows, index=idx, columns=["y", "u"])


def test_velocity_form_arx_holds_steady_and_follows_moves() -> None:
    spec = toy_spec(
        [{"name": "y", "limits": [-100.0, 100.0]}],
        [{"name": "u", "limits": [-5.0, 5.0], "max_move": 5.0}],
    )
    spec = spec.model_copy(
        update={"plant": spec.plant.model_copy(update={"control_interval_s": 5.0})}
    )
    world = ArxWorld(ArxModel.fit(_linear_frame(), spec), spec)
    # From a steady state, holding predicts no change, even with a biased level (offset-free).
    steady = np.tile([40.0, 1.0], (world.window, 1))
    z = world.encode(torch.as_tensor(steady)[None], torch.ones(1, world.window, 2, dtype=bool))
    y, _ = world.readout(world.rollout(z, torch.full((1, 6, 1), 1.0, dtype=torch.float64)))
    np.testing.assert_allclose(y[0, :, 0].numpy(), 40.0, atol=1e-6)
    # A unit step in u moves y by the plant's steady gain over an interval of 5 samples.
    y, _ = world.readout(world.rollout(z, torch.full((1, 40, 1), 2.0, dtype=torch.float64)))
    assert float(y[0, -1, 0]) - 40.0 == pytest.approx(0.5 / (1 - 0.8), rel=0.05)


def test_pid_pairs_the_four_tank_loops_off_diagonal() -> None:
    spec = load_spec("four_tank")
    pid = PidController(spec, load_plant_model(spec))
    assert {(loop.cv, loop.mv) for loop in pid.loops} == {("h1", "v2"), ("h2", "v1")}
    u = {"v1": 3.0, "v2": 3.0}
    out = pid.decide({"h1": 5.0, "h2": 5.0}, u, {"h1": 15.0, "h2": 15.0})
    for name in u:
        assert abs(out[name] - u[name]) <= spec.tag(name).max_move + 1e-12
