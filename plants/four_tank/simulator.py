"""Quadruple-tank process (K. H. Johansson, IEEE TCST 8(3), 2000), non-minimum-phase setting P+.

Two pumps feed four tanks through two three-way valves: pump 1 sends a fraction gamma1 of its
flow to tank 1 and the rest to tank 4; pump 2 sends gamma2 to tank 2 and the rest to tank 3.
The upper tanks 3 and 4 drain into tanks 1 and 2 below them; tanks 1 and 2 drain to the basin.

    A_i dh_i/dt = inflow_i - a_i sqrt(2 g h_i)       (Torricelli outflow)

With gamma1 + gamma2 < 1 most water reaches each lower tank through the *other* pump's upper
tank, which puts a zero of the 2x2 transfer matrix in the right half-plane: the plant is
non-minimum-phase. Levels stay in [0, tank height]: a full tank overflows to the basin.
Unmeasured disturbances (scenarios): extra inflow into tank 3 or 4, a leak in tank 1, and
slow wear of pump 1.
"""

from __future__ import annotations

import math

import numpy as np

from plants.base import PlantModel, Profile, Scenario, ramp, schedule, step

A_CM2 = (28.0, 32.0, 28.0, 32.0)  # tank cross-sections A1..A4, cm^2
OUTLET_CM2 = (0.071, 0.057, 0.071, 0.057)  # outlet hole areas a1..a4, cm^2
G_CM_PER_S2 = 981.0  # gravity, cm/s^2
K1_CM3_PER_V_S = 3.14  # pump 1 gain (P+), cm^3/(V s)
K2_CM3_PER_V_S = 3.29  # pump 2 gain (P+), cm^3/(V s)
GAMMA1 = 0.43  # valve 1 split to tank 1 (P+), dimensionless
GAMMA2 = 0.34  # valve 2 split to tank 2 (P+), dimensionless
KC_V_PER_CM = 0.50  # level transmitter gain in the paper, V/cm (our tags are already in cm)
TANK_HEIGHT_CM = 20.0  # height of every tank; above it water overflows to the basin
V_NOMINAL_V = 3.15  # pump voltages at the P+ operating point, V

assert GAMMA1 + GAMMA2 < 1.0, "P+ must be the non-minimum-phase setting"

_SQRT_2G = math.sqrt(2.0 * G_CM_PER_S2)  # sqrt(cm/s^2 * 2), so a * _SQRT_2G * sqrt(h) is cm^3/s


def _torricelli(area_cm2: float, level_cm: float) -> float:
    """Outflow through a hole at the bottom, cm^3/s (none from an empty tank)."""
    return area_cm2 * _SQRT_2G * math.sqrt(max(level_cm, 0.0))


def _in_out(
    x: np.ndarray, u: np.ndarray, d: np.ndarray
) -> tuple[tuple[float, float, float, float], tuple[float, float, float, float]]:
    """Inflow and outflow (drain + leak) of each tank, cm^3/s, before any overflow."""
    h1, h2, h3, h4 = float(x[0]), float(x[1]), float(x[2]), float(x[3])
    q_pump1 = max(float(d[3]), 0.0) * K1_CM3_PER_V_S * max(float(u[0]), 0.0)
    q_pump2 = K2_CM3_PER_V_S * max(float(u[1]), 0.0)
    drain3 = _torricelli(OUTLET_CM2[2], h3)
    drain4 = _torricelli(OUTLET_CM2[3], h4)
    inflow = (
        GAMMA1 * q_pump1 + drain3,
        GAMMA2 * q_pump2 + drain4,
        (1.0 - GAMMA2) * q_pump2 + max(float(d[0]), 0.0),
        (1.0 - GAMMA1) * q_pump1 + max(float(d[1]), 0.0),
    )
    outflow = (
        _torricelli(OUTLET_CM2[0] + max(float(d[2]), 0.0), h1),  # outlet and leak share h1
        _torricelli(OUTLET_CM2[1], h2),
        drain3,
        drain4,
    )
    return inflow, outflow


def _spill(inflow: float, outflow: float, level_cm: float) -> float:
    """Overflow of a full tank, cm^3/s: whatever it cannot hold."""
    return max(inflow - outflow, 0.0) if level_cm >= TANK_HEIGHT_CM else 0.0


class FourTankModel(PlantModel):
    """States h1..h4 (cm); MVs v1, v2 (V); d = extra inflow to tanks 3/4, tank-1 leak, pump-1 wear."""

    state_names = ("h1", "h2", "h3", "h4")
    mv_names = ("v1", "v2")
    disturbance_names = ("q3_extra", "q4_extra", "leak1_area", "pump1_factor")
    output_names = ("h1", "h2", "h3", "h4", "v1", "v2")
    max_step_s = 1.0  # s; the fastest time constant (tank 3) is ~40 s
    time_constant_s = 60.0  # tank 1 at P+ (Johansson: T1 = 63 s)

    def __init__(self) -> None:
        super().__init__()
        # Level transmitters, cm; the pump voltages read back their setpoints exactly.
        self.noise_std = {"h1": 0.05, "h2": 0.05, "h3": 0.05, "h4": 0.05, "v1": 0.0, "v2": 0.0}
        self.scenarios = _scenarios()

    def flows(self, x: np.ndarray, u: np.ndarray, d: np.ndarray) -> dict[str, list[float]]:
        """Every flow in cm^3/s: per-tank inflow and outflow (including leak and overflow)."""
        inflow, outflow = _in_out(x, u, d)
        overflow = [
            _spill(qi, qo, float(hi)) for qi, qo, hi in zip(inflow, outflow, x, strict=True)
        ]
        return {"inflow": list(inflow), "outflow": list(outflow), "overflow": overflow}

    def derivatives(self, t: float, x: np.ndarray, u: np.ndarray, d: np.ndarray) -> np.ndarray:
        (i1, i2, i3, i4), (o1, o2, o3, o4) = _in_out(x, u, d)
        h1, h2, h3, h4 = float(x[0]), float(x[1]), float(x[2]), float(x[3])
        return np.array(
            [
                (i1 - o1 - _spill(i1, o1, h1)) / A_CM2[0],
                (i2 - o2 - _spill(i2, o2, h2)) / A_CM2[1],
                (i3 - o3 - _spill(i3, o3, h3)) / A_CM2[2],
                (i4 - o4 - _spill(i4, o4, h4)) / A_CM2[3],
            ]
        )

    def derivatives_batch(
        self, t: float, x: np.ndarray, u: np.ndarray, d: np.ndarray
    ) -> np.ndarray:
        def drain(area: float, level: np.ndarray) -> np.ndarray:
            return area * _SQRT_2G * np.sqrt(np.maximum(level, 0.0))

        q_pump1 = max(float(d[3]), 0.0) * K1_CM3_PER_V_S * np.maximum(u[:, 0], 0.0)
        q_pump2 = K2_CM3_PER_V_S * np.maximum(u[:, 1], 0.0)
        drain3, drain4 = drain(OUTLET_CM2[2], x[:, 2]), drain(OUTLET_CM2[3], x[:, 3])
        inflow = np.stack(
            [
                GAMMA1 * q_pump1 + drain3,
                GAMMA2 * q_pump2 + drain4,
                (1.0 - GAMMA2) * q_pump2 + max(float(d[0]), 0.0),
                (1.0 - GAMMA1) * q_pump1 + max(float(d[1]), 0.0),
            ],
            axis=1,
        )
        outflow = np.stack(
            [
                drain(OUTLET_CM2[0] + max(float(d[2]), 0.0), x[:, 0]),
                drain(OUTLET_CM2[1], x[:, 1]),
                drain3,
                drain4,
            ],
            axis=1,
        )
        net = inflow - outflow
        spill = np.where(x >= TANK_HEIGHT_CM, np.maximum(net, 0.0), 0.0)
        return (net - spill) / np.asarray(A_CM2)

    def project(self, x: np.ndarray) -> np.ndarray:
        if np.all((x >= 0.0) & (x <= TANK_HEIGHT_CM)):
            return x
        return np.clip(x, 0.0, TANK_HEIGHT_CM)

    def project_batch(self, x: np.ndarray) -> np.ndarray:
        return self.project(x)

    def sensor_range(self, tag: str) -> tuple[float, float] | None:
        # A level transmitter spans the tank: it cannot read below empty or above full.
        return (0.0, TANK_HEIGHT_CM) if tag in self.state_names else None

    def outputs(self, x: np.ndarray, u: np.ndarray, d: np.ndarray) -> dict[str, float]:
        out = {n: float(v) for n, v in zip(self.state_names, x, strict=True)}
        out.update(v1=float(u[0]), v2=float(u[1]))
        return out

    def nominal(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array([V_NOMINAL_V, V_NOMINAL_V]), np.array([0.0, 0.0, 0.0, 1.0])

    def steady_state(self, u: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Levels where every tank's outflow equals its inflow (a full tank overflows)."""
        q_pump1 = max(float(d[3]), 0.0) * K1_CM3_PER_V_S * max(float(u[0]), 0.0)
        q_pump2 = K2_CM3_PER_V_S * max(float(u[1]), 0.0)
        leak1 = max(float(d[2]), 0.0)

        def level(inflow: float, hole_cm2: float) -> float:
            return min((inflow / (hole_cm2 * _SQRT_2G)) ** 2, TANK_HEIGHT_CM)

        h3 = level((1.0 - GAMMA2) * q_pump2 + max(float(d[0]), 0.0), OUTLET_CM2[2])
        h4 = level((1.0 - GAMMA1) * q_pump1 + max(float(d[1]), 0.0), OUTLET_CM2[3])
        h1 = level(GAMMA1 * q_pump1 + _torricelli(OUTLET_CM2[2], h3), OUTLET_CM2[0] + leak1)
        h2 = level(GAMMA2 * q_pump2 + _torricelli(OUTLET_CM2[3], h4), OUTLET_CM2[1])
        return np.array([h1, h2, h3, h4])


def _scenarios() -> dict[str, Scenario]:
    m = 60.0  # seconds per minute
    return {
        "inflow_step": Scenario(
            "inflow_step",
            "Unmeasured extra inflow of 1.5 cm^3/s into tank 3 from 10 min to 40 min",
            disturbances={"q3_extra": schedule(0.0, (10 * m, 1.5), (40 * m, 0.0))},
            repeat_s=60 * m,
        ),
        "leak_ramp": Scenario(
            "leak_ramp",
            "A leak in tank 1 grows to 0.012 cm^2 over 30 min from 10 min, repaired at 60 min",
            disturbances={
                "leak1_area": Profile(
                    ((10 * m, 0.0), (40 * m, 0.012), (60 * m, 0.012), (60 * m, 0.0))
                )
            },
            repeat_s=80 * m,
        ),
        "leak": Scenario(
            "leak",
            "Unmeasured leak in tank 1: 0.012 cm^2 opens at 5 min and stays",
            disturbances={"leak1_area": step(5 * m, 0.0, 0.012)},
        ),
        "leak_small": Scenario(
            "leak_small",
            "Unmeasured leak in tank 1: 0.005 cm^2 opens at 5 min and stays (the setpoints stay "
            "reachable inside the pumps' operating limits; `leak` needs v2 = 4.66 V > 4.0 V)",
            disturbances={"leak1_area": step(5 * m, 0.0, 0.005)},
        ),
        "pump_wear_drift": Scenario(
            "pump_wear_drift",
            "Pump 1 wears: its gain drifts down 10% over 6 h",
            disturbances={"pump1_factor": ramp(0.0, 360 * m, 1.0, 0.9)},
        ),
        "pump_wear_growth": Scenario(
            "pump_wear_growth",
            "Pump 1 wears: as new for 30 min, then its gain falls 15% over 2 h and stays (model "
            "maintenance: drift, retrain, promote)",
            disturbances={"pump1_factor": ramp(30 * m, 150 * m, 1.0, 0.85)},
        ),
        "tracking": Scenario(
            "tracking",
            "Level setpoint changes (h1, h2) and an unmeasured inflow step into tank 4",
            disturbances={"q4_extra": step(40 * m, 0.0, 1.0)},
            setpoints={
                "h1": schedule(12.6, (10 * m, 10.0), (30 * m, 14.0), (50 * m, 12.0)),
                "h2": schedule(13.0, (10 * m, 11.0), (30 * m, 12.0), (50 * m, 14.0)),
            },
        ),
    }
