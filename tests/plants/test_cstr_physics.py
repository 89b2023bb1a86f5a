"""The CSTR simulator against the textbook equations, written out again here in minutes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from plants import load_plant_model
from plants.base import Simulation, integrate

# Seborg et al. in the textbook's own units (minutes), independent of the simulator's constants.
Q = 100.0  # L/min
V = 100.0  # L
RHO_CP = 1000.0 * 0.239  # J/(L K)
NEG_DH = 5.0e4  # J/mol
E_R = 8750.0  # K
K0 = 7.2e10  # 1/min
UA = 5.0e4  # J/(min K)
CAF, TF, TC = 1.0, 350.0, 300.0


def textbook_rates_per_min(ca: float, t: float, tj: float) -> tuple[float, float]:
    k = K0 * math.exp(-E_R / t)
    dca = Q / V * (CAF - ca) - k * ca
    dt = Q / V * (TF - t) + NEG_DH / RHO_CP * k * ca + UA / (V * RHO_CP) * (tj - t)
    return dca, dt


def jacobian(model, x, u, d, eps=1e-6):
    f0 = model.derivatives(0.0, x, u, d)
    cols = []
    for i in range(len(x)):
        dx = np.zeros_like(x)
        dx[i] = eps * max(1.0, abs(x[i]))
        cols.append((model.derivatives(0.0, x + dx, u, d) - f0) / dx[i])
    return np.column_stack(cols)


@pytest.fixture()
def model(cstr_spec):
    return load_plant_model(cstr_spec)


def test_three_steady_states_at_nominal_cooling(model) -> None:
    u, d = model.nominal()
    states = model.steady_states(u, d)
    assert len(states) == 3
    known = [(0.8773, 324.48), (0.4999, 350.01), (0.2088, 369.70)]
    for x, (ca, t) in zip(states, known, strict=True):
        assert x[0] == pytest.approx(ca, abs=2e-4)
        assert x[1] == pytest.approx(t, abs=0.02)
        assert x[2] == pytest.approx(TC)
        # A fixed point of the simulator's equations and of the textbook's (in 1/min).
        assert np.max(np.abs(model.derivatives(0.0, x, u, d))) < 1e-9
        dca, dt = textbook_rates_per_min(*x)
        assert abs(dca) < 1e-7 and abs(dt) < 1e-6


def test_half_conversion_state_solved_by_hand(model) -> None:
    # Ca = Caf/2 needs k(T) = q/V, so T = (E/R) / ln(k0 V / q); the energy balance then fixes Tc.
    t_half = E_R / math.log(K0 * V / Q)
    heat = Q / V * (TF - t_half) + NEG_DH / RHO_CP * (Q / V) * 0.5
    tc_half = t_half - heat / (UA / (V * RHO_CP))
    assert tc_half == pytest.approx(300.0, abs=0.01)
    d = model.nominal()[1]
    middle = model.steady_states(np.array([tc_half]), d)[1]
    assert middle[0] == pytest.approx(0.5, abs=1e-6)
    assert middle[1] == pytest.approx(t_half, abs=1e-5)


def test_stability_of_the_branches(model) -> None:
    u, d = model.nominal()
    low, middle, high = model.steady_states(u, d)
    assert np.all(np.linalg.eigvals(jacobian(model, low, u, d)).real < 0)
    saddle = np.linalg.eigvals(jacobian(model, middle, u, d))
    assert np.sum(saddle.real > 0) == 1 and np.all(saddle.imag == 0)
    # At Tc = 300 K the hot state is an unstable focus (it lies below the Hopf point) ...
    focus = np.linalg.eigvals(jacobian(model, high, u, d))
    assert np.any((focus.real > 0) & (focus.imag != 0))
    # ... and with less cooling it is the only state, and stable.
    hot_u = np.array([310.0])
    (hot,) = model.steady_states(hot_u, d)
    assert np.all(np.linalg.eigvals(jacobian(model, hot, hot_u, d)).real < 0)


def test_branch_option_and_single_state_when_cooling_is_strong(cstr_spec) -> None:
    u, d = load_plant_model(cstr_spec).nominal()
    assert load_plant_model(cstr_spec).steady_state(u, d)[1] == pytest.approx(324.48, abs=0.02)
    assert load_plant_model(cstr_spec, branch="high").steady_state(u, d)[1] == pytest.approx(
        369.70, abs=0.02
    )
    assert load_plant_model(cstr_spec, branch="middle").steady_state(u, d)[1] == pytest.approx(
        350.0, abs=0.02
    )
    cold = np.array([290.0])
    assert len(load_plant_model(cstr_spec).steady_states(cold, d)) == 1
    with pytest.raises(ValueError, match="no middle"):
        load_plant_model(cstr_spec, branch="middle").steady_state(cold, d)


def test_simulation_starts_on_the_low_branch_and_stays(cstr_spec) -> None:
    sim = Simulation(cstr_spec, seed=0, noise=False)
    x0 = sim.x.copy()
    for _ in range(720):  # one hour at 5 s
        sim.step()
    assert np.allclose(sim.x, x0, atol=1e-6)
    assert sim.true_outputs()["T"] == pytest.approx(324.48, abs=0.02)


def test_initialisation_at_other_mvs_holds(cstr_spec) -> None:
    hot = Simulation(cstr_spec, noise=False, mvs={"Tc": 310.0})
    assert hot.x[1] == pytest.approx(383.89, abs=0.02)  # one steady state: ignited
    cold = Simulation(cstr_spec, noise=False, mvs={"Tc": 295.0})
    for _ in range(360):
        hot.step()
        cold.step()
    assert hot.x[1] == pytest.approx(383.89, abs=0.02)
    assert cold.x[1] == pytest.approx(317.74, abs=0.02)


def test_losing_cooling_runs_away_to_the_hot_branch(cstr_spec) -> None:
    sim = Simulation(cstr_spec, noise=False)
    assert sim.set_mvs({"Tc": 320.0}) == {"Tc": 320.0}
    temps = [sim.step()["T"] for _ in range(360)]  # 30 min
    # Overshoots far beyond the engineering limit, then settles on the hot branch.
    assert max(temps) > cstr_spec.tag("T").limits[1]
    hot = load_plant_model(cstr_spec, branch="high").steady_state(
        np.array([320.0]), sim.disturbances()
    )
    assert sim.x[1] == pytest.approx(hot[1], abs=0.1)
    assert sim.x[0] < 0.1


def test_small_cooling_loss_inside_the_low_branch_does_not_run_away(cstr_spec) -> None:
    sim = Simulation(cstr_spec, noise=False)
    sim.set_mvs({"Tc": 302.5})
    temps = [sim.step()["T"] for _ in range(720)]
    assert max(temps) < 335.0


def test_component_balance_closes_through_an_ignition(model) -> None:
    # Integrate the textbook's molar balance of A along the simulated path (fine trapezoid).
    u, d = np.array([306.0]), model.nominal()[1]
    x = model.steady_state(model.nominal()[0], d)
    dt_s = 0.05
    path = [x]
    for i in range(int(600 / dt_s)):
        x = integrate(model, x, u, d, i * dt_s, dt_s)
        path.append(x)
    path_arr = np.array(path)
    assert path_arr[:, 1].max() > 400.0  # it did ignite
    ca, temp = path_arr[:, 0], path_arr[:, 1]
    rate_mol_per_min = Q * (CAF - ca) - V * K0 * np.exp(-E_R / temp) * ca  # in - out - reacted
    accumulated = np.trapezoid(rate_mol_per_min, dx=dt_s / 60.0)
    # 10 min of feed carry 1000 mol of A; the balance closes to a millimole.
    assert V * (ca[-1] - ca[0]) == pytest.approx(accumulated, abs=1e-3)


def test_adaptive_integrator_matches_radau_through_a_runaway(cstr_spec) -> None:
    runs = {}
    for method in ("rk45", "solve_ivp"):
        sim = Simulation(cstr_spec, noise=False, integrator=method)
        out = []
        for k in range(120):
            if k == 5:
                sim.set_mvs({"Tc": 306.0})
            sim.step()
            out.append(sim.x.copy())
        runs[method] = np.array(out)
    assert runs["rk45"][:, 1].max() > 400.0
    assert np.max(np.abs(runs["rk45"][:, 0] - runs["solve_ivp"][:, 0])) < 1e-5
    assert np.max(np.abs(runs["rk45"][:, 1] - runs["solve_ivp"][:, 1])) < 2e-3


def test_scenarios_move_the_disturbances_and_setpoints(cstr_spec) -> None:
    sim = Simulation(cstr_spec, scenario="stable", noise=False)
    assert sim.setpoints["Ca"] == 0.85
    tf0 = sim.true_outputs()["Tf"]
    for _ in range(int(45 * 60 / 5)):
        sim.step()
    assert sim.setpoints["Ca"] == 0.93
    assert sim.true_outputs()["Tf"] == pytest.approx(tf0 + 2.0)
    assert set(load_plant_model(cstr_spec).scenarios) >= {
        "stable",
        "hard",
        "feed_temp_step",
        "feed_conc_ramp",
        "fouling_drift",
    }


def test_fouling_drift_is_unmeasured_and_heats_the_reactor(cstr_spec) -> None:
    clean = Simulation(cstr_spec, noise=False)
    fouled = Simulation(cstr_spec, noise=False, scenario="fouling_drift")
    for _ in range(int(3 * 3600 / 5)):
        clean.step()
        fouled.step()
    assert fouled.disturbances()[2] == pytest.approx(0.96, abs=1e-3)
    assert fouled.true_outputs()["T"] > clean.true_outputs()["T"] + 0.5
    assert "ua_factor" not in cstr_spec.tag_names
