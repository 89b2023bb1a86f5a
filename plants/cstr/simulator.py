"""Jacketed CSTR with an exothermic, irreversible first-order reaction A -> B.

Parameters from Seborg, Edgar, Mellichamp & Doyle, "Process Dynamics and Control" (the
classic CSTR example). The textbook's time base is minutes; the spec's is seconds, so every
rate below is converted once here and named with its unit.

    dCa/dt = q/V (Caf - Ca) - k(T) Ca
    dT/dt  = q/V (Tf - T) + (-dH)/(rho Cp) k(T) Ca + f_UA UA/(V rho Cp) (Tj - T)
    dTj/dt = (Tc - Tj) / tau_j                 k(T) = k0 exp(-E/(R T))

Tc is the jacket temperature setpoint (the MV); the jacket follows it with a first-order lag
tau_j (our addition: a real jacket is not instantaneous). With Tc = 300 K and the nominal
feed there are three steady states: low conversion (0.877 mol/L, 324.5 K, stable), middle
(0.500 mol/L, 350.0 K, a saddle) and high conversion (0.209 mol/L, 369.7 K, an unstable focus).
The low branch exists for Tc up to 303.25 K; above it the reactor ignites, with a temperature
spike far above 400 K. The hot branch is stable only above Tc ~ 306.2 K (a Hopf point): in
between, the reactor oscillates between ignition and extinction. Once hot, it cools back to the
low branch only below Tc ~ 298.1 K.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from scipy.optimize import brentq

from plants.base import PlantModel, Profile, Scenario, constant, ramp, schedule, step

Q_L_PER_S = 100.0 / 60.0  # feed (= outlet) flow: 100 L/min
V_L = 100.0  # reactor volume, L
RHO_G_PER_L = 1000.0  # density, g/L
CP_J_PER_G_K = 0.239  # heat capacity, J/(g K)
NEG_DH_J_PER_MOL = 5.0e4  # heat of reaction -dH, J/mol (exothermic)
E_OVER_R_K = 8750.0  # activation energy / gas constant, K
K0_PER_S = 7.2e10 / 60.0  # pre-exponential factor: 7.2e10 1/min
UA_J_PER_S_K = 5.0e4 / 60.0  # jacket heat transfer: 5e4 J/(min K)
JACKET_TAU_S = 15.0  # jacket temperature lag behind its setpoint, s (our choice)

CAF_NOMINAL_MOL_PER_L = 1.0  # feed concentration of A, mol/L
TF_NOMINAL_K = 350.0  # feed temperature, K
TC_NOMINAL_K = 300.0  # jacket setpoint, K
UA_FACTOR_NOMINAL = 1.0  # fraction of clean-jacket UA left (fouling lowers it), dimensionless

DILUTION_PER_S = Q_L_PER_S / V_L  # q/V, 1/s
HEAT_RISE_K_L_PER_MOL = NEG_DH_J_PER_MOL / (RHO_G_PER_L * CP_J_PER_G_K)  # (-dH)/(rho Cp), K L/mol
COOLING_PER_S = UA_J_PER_S_K / (V_L * RHO_G_PER_L * CP_J_PER_G_K)  # UA/(V rho Cp), 1/s

Branch = Literal["low", "middle", "high"]


def rate_constant_per_s(temperature_k: float) -> float:
    """Arrhenius k(T), 1/s."""
    return K0_PER_S * math.exp(-E_OVER_R_K / temperature_k)


def _minutes(m: float) -> float:
    return 60.0 * m


class CstrModel(PlantModel):
    """Jacketed exothermic CSTR; states (Ca mol/L, T K, Tj K), MV Tc K, d (Tf, Caf, UA factor)."""

    state_names = ("Ca", "T", "Tj")
    mv_names = ("Tc",)
    disturbance_names = ("Tf", "Caf", "ua_factor")
    output_names = ("Ca", "T", "Tf", "Caf", "Tc")
    max_step_s = 2.5  # s; the adaptive integrator goes far below it during a runaway
    time_constant_s = 90.0  # low-branch open-loop response (residence time 60 s plus jacket)

    def __init__(self, branch: Branch = "low") -> None:
        super().__init__()
        if branch not in ("low", "middle", "high"):
            raise ValueError(f"branch must be low, middle or high, not {branch!r}")
        self.branch: Branch = branch
        # Transmitter noise, engineering units; the MV reads back its setpoint exactly.
        self.noise_std = {"Ca": 0.004, "T": 0.2, "Tf": 0.2, "Caf": 0.004, "Tc": 0.0}
        self.scenarios = _scenarios()

    def derivatives(self, t: float, x: np.ndarray, u: np.ndarray, d: np.ndarray) -> np.ndarray:
        ca, temp, tj = float(x[0]), float(x[1]), float(x[2])
        tf, caf, ua_factor = float(d[0]), float(d[1]), float(d[2])
        reaction = rate_constant_per_s(temp) * ca  # mol/(L s)
        dca = DILUTION_PER_S * (caf - ca) - reaction
        dtemp = (
            DILUTION_PER_S * (tf - temp)
            + HEAT_RISE_K_L_PER_MOL * reaction
            + ua_factor * COOLING_PER_S * (tj - temp)
        )
        dtj = (float(u[0]) - tj) / JACKET_TAU_S
        return np.array([dca, dtemp, dtj])

    def derivatives_batch(
        self, t: float, x: np.ndarray, u: np.ndarray, d: np.ndarray
    ) -> np.ndarray:
        ca, temp, tj = x[:, 0], x[:, 1], x[:, 2]
        tf, caf, ua_factor = float(d[0]), float(d[1]), float(d[2])
        with np.errstate(over="ignore"):
            reaction = K0_PER_S * np.exp(-E_OVER_R_K / temp) * ca
        dca = DILUTION_PER_S * (caf - ca) - reaction
        dtemp = (
            DILUTION_PER_S * (tf - temp)
            + HEAT_RISE_K_L_PER_MOL * reaction
            + ua_factor * COOLING_PER_S * (tj - temp)
        )
        dtj = (u[:, 0] - tj) / JACKET_TAU_S
        return np.stack([dca, dtemp, dtj], axis=1)

    def outputs(self, x: np.ndarray, u: np.ndarray, d: np.ndarray) -> dict[str, float]:
        return {
            "Ca": float(x[0]),
            "T": float(x[1]),
            "Tf": float(d[0]),
            "Caf": float(d[1]),
            "Tc": float(u[0]),
        }

    def sensor_range(self, tag: str) -> tuple[float, float] | None:
        # A concentration analyser does not report below zero.
        return (0.0, math.inf) if tag in ("Ca", "Caf") else None

    def nominal(self) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.array([TC_NOMINAL_K]),
            np.array([TF_NOMINAL_K, CAF_NOMINAL_MOL_PER_L, UA_FACTOR_NOMINAL]),
        )

    def steady_states(self, u: np.ndarray, d: np.ndarray) -> list[np.ndarray]:
        """Every steady state for constant u and d, coolest first."""
        tc = float(u[0])
        tf, caf, ua_factor = float(d[0]), float(d[1]), float(d[2])

        def residual(temp: float) -> float:
            k = rate_constant_per_s(temp)
            ca = DILUTION_PER_S * caf / (DILUTION_PER_S + k)
            return (
                DILUTION_PER_S * (tf - temp)
                + HEAT_RISE_K_L_PER_MOL * k * ca
                + ua_factor * COOLING_PER_S * (tc - temp)
            )

        # Every root lies between the coldest inlet and that plus the adiabatic temperature rise.
        lo = min(tf, tc) - 1.0
        hi = max(tf, tc) + HEAT_RISE_K_L_PER_MOL * caf + 1.0
        grid = np.linspace(lo, hi, 4001)
        values = [residual(t) for t in grid]
        states: list[np.ndarray] = []
        for a, b, fa, fb in zip(grid[:-1], grid[1:], values[:-1], values[1:], strict=True):
            if fa == 0.0 or fa * fb < 0:
                temp = brentq(residual, a, b, xtol=1e-12) if fa != 0.0 else a
                ca = DILUTION_PER_S * caf / (DILUTION_PER_S + rate_constant_per_s(temp))
                states.append(np.array([ca, temp, tc]))
        return states

    def steady_state(self, u: np.ndarray, d: np.ndarray) -> np.ndarray:
        """The steady state on this model's branch (low by default).

        "high" is the hottest fixed point (stable only for Tc above ~306.2 K). Where only one
        steady state exists, it is returned for "low" and "high"; "middle" then raises.
        """
        states = self.steady_states(u, d)
        if self.branch == "low":
            return states[0]
        if self.branch == "high":
            return states[-1]
        if len(states) < 3:
            raise ValueError(f"no middle steady state at Tc={float(u[0])} K (only {len(states)})")
        return states[1]


def _scenarios() -> dict[str, Scenario]:
    tf, caf = TF_NOMINAL_K, CAF_NOMINAL_MOL_PER_L
    m = _minutes
    return {
        "feed_temp_step": Scenario(
            "feed_temp_step",
            "Feed temperature steps +3 K at 10 min and back at 70 min",
            disturbances={"Tf": schedule(tf, (m(10), tf + 3.0), (m(70), tf))},
            repeat_s=m(120),
        ),
        "feed_conc_ramp": Scenario(
            "feed_conc_ramp",
            "Feed concentration ramps 1.0 -> 0.9 mol/L over 30 min from 10 min, then back",
            disturbances={
                "Caf": Profile(
                    ((m(10), caf), (m(40), caf - 0.1), (m(80), caf - 0.1), (m(110), caf))
                )
            },
            repeat_s=m(120),
        ),
        "fouling_drift": Scenario(
            "fouling_drift",
            "Unmeasured jacket fouling: UA falls 8% over 6 h (Tc must fall to hold Ca)",
            disturbances={"ua_factor": ramp(0.0, m(360), 1.0, 0.92)},
        ),
        "fouling_growth": Scenario(
            "fouling_growth",
            "Unmeasured jacket fouling that grows: clean for 30 min, then UA falls 8% over 2 h "
            "and stays (model maintenance: drift, retrain, promote)",
            disturbances={"ua_factor": ramp(m(30), m(150), 1.0, 0.92)},
        ),
        "fouling": Scenario(
            "fouling",
            "Unmeasured jacket fouling: UA falls 8% over 10 min from 5 min, then stays (Tc must "
            "fall to hold Ca)",
            disturbances={"ua_factor": ramp(m(5), m(15), 1.0, 0.92)},
        ),
        "fouling_15": Scenario(
            "fouling_15",
            "Unmeasured jacket fouling: UA falls 15% over 10 min from 5 min, then stays",
            disturbances={"ua_factor": ramp(m(5), m(15), 1.0, 0.85)},
        ),
        "feed_conc": Scenario(
            "feed_conc",
            "Feed concentration steps 1.0 -> 0.92 mol/L at 5 min (unmeasured where the Caf "
            "analyser is not used)",
            disturbances={"Caf": step(m(5), caf, caf - 0.08)},
        ),
        "stable": Scenario(
            "stable",
            "Ca setpoint changes on the low-conversion branch and a +2 K feed-temperature step",
            disturbances={"Tf": step(m(40), tf, tf + 2.0), "Caf": constant(caf)},
            setpoints={"Ca": schedule(0.85, (m(5), 0.90), (m(20), 0.93), (m(50), 0.88))},
        ),
        "hard": Scenario(
            "hard",
            "Ca setpoint toward the unstable middle steady state (0.85 -> 0.6 -> 0.5): "
            "the T limit binds in the transient",
            setpoints={"Ca": schedule(0.85, (m(5), 0.6), (m(30), 0.5))},
        ),
    }
