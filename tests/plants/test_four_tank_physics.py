"""The quadruple-tank simulator against Johansson (2000), with the balances written out here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize

from plants import load_plant_model
from plants.base import Simulation, integrate

# Johansson (2000), P+ setting, in the paper's units (cm, s, V) - independent of the simulator.
AREA = np.array([28.0, 32.0, 28.0, 32.0])  # cm^2
HOLE = np.array([0.071, 0.057, 0.071, 0.057])  # cm^2
G = 981.0  # cm/s^2
K1, K2 = 3.14, 3.29  # cm^3/(V s)
GAMMA1, GAMMA2 = 0.43, 0.34
PAPER_LEVELS = np.array([12.6, 13.0, 4.8, 4.9])  # cm, at v1 = v2 = 3.15 V
PAPER_TIME_CONSTANTS = np.array([63.0, 91.0, 39.0, 56.0])  # s


def jacobian(model, x, u, d, eps=1e-6):
    f0 = model.derivatives(0.0, x, u, d)
    a = np.column_stack(
        [(model.derivatives(0.0, x + eps * e, u, d) - f0) / eps for e in np.eye(len(x))]
    )
    b = np.column_stack(
        [(model.derivatives(0.0, x, u + eps * e, d) - f0) / eps for e in np.eye(len(u))]
    )
    return a, b


@pytest.fixture()
def model(four_tank_spec):
    return load_plant_model(four_tank_spec)


def test_steady_state_is_a_fixed_point_near_the_papers(model) -> None:
    u, d = model.nominal()
    x = model.steady_state(u, d)
    assert np.max(np.abs(model.derivatives(0.0, x, u, d))) < 1e-12
    # The paper rounds its parameters; the fixed point of its equations lies within 0.2 cm.
    assert np.allclose(x, PAPER_LEVELS, atol=0.2)


def test_time_constants_match_the_paper(model) -> None:
    u, d = model.nominal()
    x = model.steady_state(u, d)
    a, _ = jacobian(model, x, u, d)
    # Linearised, each tank is a first-order lag: T_i = A_i / a_i * sqrt(2 h_i / g).
    expected = AREA / HOLE * np.sqrt(2 * x / G)
    assert np.allclose(-1.0 / np.diag(a), expected, rtol=1e-4)
    assert np.allclose(expected, PAPER_TIME_CONSTANTS, rtol=0.05)


def test_non_minimum_phase_zero(model) -> None:
    assert GAMMA1 + GAMMA2 < 1.0
    u, d = model.nominal()
    x = model.steady_state(u, d)
    a, b = jacobian(model, x, u, d)
    c = np.eye(4)[:2]  # measured h1, h2
    # Transmission zeros: finite generalised eigenvalues of the Rosenbrock system matrix.
    m = np.block([[a, b], [c, np.zeros((2, 2))]])
    n = np.block([[np.eye(4), np.zeros((4, 2))], [np.zeros((2, 6))]])
    zeros = scipy.linalg.eig(m, n, right=False)
    finite = zeros[np.isfinite(zeros)]
    assert np.any((finite.real > 1e-4) & (np.abs(finite.imag) < 1e-9)), finite


def _net_inflow_cm3_per_s(
    h: np.ndarray, v: np.ndarray, extra3: float, extra4: float, leak: float
) -> float:
    pumps = K1 * v[0] + K2 * v[1] + extra3 + extra4
    drains = (HOLE[0] + leak) * math.sqrt(2 * G * h[0]) + HOLE[1] * math.sqrt(2 * G * h[1])
    return pumps - drains


def test_volume_balance_at_any_state_inside_the_tanks(model) -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        h = rng.uniform(0.0, 19.9, 4)
        v = rng.uniform(0.0, 10.0, 2)
        d = np.array([rng.uniform(0, 3), rng.uniform(0, 3), rng.uniform(0, 0.02), 1.0])
        dvol = float(AREA @ model.derivatives(0.0, h, v, d))
        assert dvol == pytest.approx(_net_inflow_cm3_per_s(h, v, d[0], d[1], d[2]), abs=1e-9)


def test_volume_balance_closes_over_a_run(four_tank_spec) -> None:
    sim = Simulation(four_tank_spec, scenario="leak_ramp", noise=False)
    for _ in range(15 * 60):  # on to where the leak grows
        sim.advance()
    rng = np.random.default_rng(5)
    volumes, net = [float(AREA @ sim.x)], []
    for k in range(900):
        if k % 60 == 0:
            sim.set_mvs({"v1": rng.uniform(1.5, 4.0), "v2": rng.uniform(1.5, 4.0)})
        d = sim.disturbances()
        # Sub-sample quadrature of the test's own balance along the simulator's path.
        x = sim.x
        for _ in range(4):
            x1 = integrate(sim.model, x, sim.u, d, 0.0, 0.25)
            net.append(
                0.5
                * 0.25
                * (
                    _net_inflow_cm3_per_s(x, sim.u, d[0], d[1], d[2])
                    + _net_inflow_cm3_per_s(x1, sim.u, d[0], d[1], d[2])
                )
            )
            x = x1
        sim.step()
        assert np.allclose(sim.x, x, atol=1e-6)
        volumes.append(float(AREA @ sim.x))
    assert max(sim.x) < 20.0  # no overflow in this run: every drop is accounted for
    # Over 15 min, with the leak growing, the books close to 0.01 cm^3 (of ~2000 cm^3 moved).
    assert volumes[-1] - volumes[0] == pytest.approx(sum(net), abs=0.01)


def test_levels_stay_between_empty_and_full(four_tank_spec) -> None:
    sim = Simulation(four_tank_spec, seed=1)
    sim.set_mvs({"v1": 0.0, "v2": 0.0})
    lows = [sim.step() for _ in range(1800)]
    assert min(min(m[t] for t in ("h1", "h2", "h3", "h4")) for m in lows) >= 0.0
    assert np.all(sim.x >= 0.0) and np.all(sim.x < 0.5)
    assert sim.set_mvs({"v1": 12.0, "v2": 12.0}) == {"v1": 10.0, "v2": 10.0}  # pumps saturate
    highs = [sim.step() for _ in range(900)]
    assert max(max(m[t] for t in ("h1", "h2", "h3", "h4")) for m in highs) <= 20.0
    assert np.all(sim.x <= 20.0) and sim.x[0] == pytest.approx(20.0)
    f = sim.model.flows(sim.x, sim.u, sim.disturbances())
    assert f["overflow"][0] > 0.0  # the full tank spills


def test_adaptive_integrator_matches_radau(four_tank_spec) -> None:
    runs = {}
    for method in ("rk45", "solve_ivp"):
        sim = Simulation(four_tank_spec, noise=False, integrator=method, scenario="inflow_step")
        out = []
        for k in range(300):
            if k == 10:
                sim.set_mvs({"v1": 4.0, "v2": 1.5})
            sim.step()
            out.append(sim.x.copy())
        runs[method] = np.array(out)
    assert np.max(np.abs(runs["rk45"] - runs["solve_ivp"])) < 1e-5


def test_unmeasured_disturbances_move_the_levels(four_tank_spec) -> None:
    base = Simulation(four_tank_spec, noise=False)
    leak = Simulation(four_tank_spec, noise=False, scenario="leak_ramp")
    for _ in range(45 * 60):
        base.step()
        leak.step()
    assert leak.true_outputs()["h1"] < base.true_outputs()["h1"] - 1.0
    assert set(four_tank_spec.tag_names).isdisjoint(leak.model.disturbance_names)


def test_tracking_scenario_setpoints_are_reachable(four_tank_spec, model) -> None:
    sim = Simulation(four_tank_spec, scenario="tracking", noise=False)
    assert sim.setpoints == {"h1": 12.6, "h2": 13.0}
    ops = {t.name: t.operating_limits for t in four_tank_spec.cvs}
    for minute in (5, 20, 40, 60):
        sp = sim.scenario.setpoint_overrides(minute * 60.0)
        for tag, value in sp.items():
            assert ops[tag][0] <= value <= ops[tag][1]
        # Some pump voltages inside the operating band hold these levels.
        target = np.array([sp["h1"], sp["h2"]])
        u = scipy.optimize.fsolve(
            lambda v, target=target: model.steady_state(v, model.nominal()[1])[:2] - target,
            [3.0, 3.0],
        )
        assert np.allclose(model.steady_state(u, model.nominal()[1])[:2], target, atol=1e-6)
        assert np.all((u >= 1.5) & (u <= 4.0))
