"""The outside plant's simulator: only makes its history CSV (the twin sees the CSV, not this).

A gravity-drained tank (area 1 m^2, outflow k sqrt(level)) with a heater. Level and
temperature are nonlinear in the MVs (outflow grows as the square root of the level; the
heater warms a smaller hold-up faster). The inlet temperature drifts (an Ornstein-Uhlenbeck
process, measured). Excitation as a user's step test would make it: each MV jumps to a
random value inside its operating band at control-interval boundaries, now and then.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

AREA = 1.0  # m^2
K_OUT = 0.01  # m^3/s per sqrt(m)
RHO_CP = 4186.0  # kJ / (m^3 K)
DT = 2.0  # s, sample period
INTERVAL = 10  # samples per control interval
SUB = 4  # Euler sub-steps per sample
MOVE_PROB = 0.15  # chance an MV jumps at a control-interval boundary
BANDS = {"inflow": (4.0, 16.0), "heat": (100.0, 800.0)}
NOISE = {"level": 0.003, "temp": 0.05, "t_in": 0.05}


def simulate(hours: float, seed: int = 0, excite: bool = True) -> pd.DataFrame:
    """A wide frame (timestamp index, one column per tag) of `hours` of operation from the
    steady state at mid-band MVs; excite=False holds the MVs there (a plant held still)."""
    rng = np.random.default_rng(seed)
    n = int(hours * 3600 / DT)
    u = {"inflow": 10.0, "heat": 400.0}
    t_in = 15.0
    lvl = (u["inflow"] / 1000.0 / K_OUT) ** 2
    temp = t_in + u["heat"] / (RHO_CP * u["inflow"] / 1000.0)
    rows = np.empty((n, 5))
    for k in range(n):
        if excite and k % INTERVAL == 0:
            for name, (lo, hi) in BANDS.items():
                if rng.random() < MOVE_PROB:
                    u[name] = float(rng.uniform(lo, hi))
        t_in += -DT / 1800.0 * (t_in - 15.0) + 0.03 * rng.standard_normal()
        q_in = u["inflow"] / 1000.0  # m^3/s
        for _ in range(SUB):
            h = DT / SUB
            dl = (q_in - K_OUT * np.sqrt(max(lvl, 0.0))) / AREA
            hold = AREA * max(lvl, 0.05)
            dtemp = (q_in * (t_in - temp) + u["heat"] / RHO_CP) / hold
            lvl, temp = lvl + h * dl, temp + h * dtemp
        rows[k] = [lvl, temp, t_in, u["inflow"], u["heat"]]
    for j, name in enumerate(("level", "temp", "t_in")):
        rows[:, j] += NOISE[name] * rng.standard_normal(n)
    idx = pd.date_range("2026-03-01", periods=n, freq=f"{DT:g}s", tz="UTC", name="timestamp")
    return pd.DataFrame(rows, index=idx, columns=["level", "temp", "t_in", "inflow", "heat"])


def write_csv(path: Path, hours: float, seed: int = 0, excite: bool = True) -> Path:
    """The history in the import format: a timestamp column (ISO 8601) and one column per tag."""
    frame = simulate(hours, seed, excite)
    frame.index = frame.index.strftime("%Y-%m-%dT%H:%M:%SZ")
    frame.to_csv(path, index_label="timestamp", float_format="%.5g")
    return path
