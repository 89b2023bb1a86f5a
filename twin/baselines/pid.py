"""Decentralised PI control of the main loops: what a plant would run without any model.

Each CV with a setpoint is paired with one MV (by the relative gain array of the steady-state
gains, the textbook rule), and tuned by SIMC (Skogestad 2003) from that gain and the plant's
open-loop time constant with a closed-loop time constant equal to it. Velocity form, so the
move is clipped to max_move and the MV to its limits without integrator wind-up.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from twin.errors import BadInput
from twin.spec import PlantSpec


@dataclass(frozen=True)
class Loop:
    """One PI loop."""

    cv: str
    mv: str
    gain: float
    """Proportional gain, MV units per CV unit (sign included)."""
    ti_s: float
    """Integral time, seconds."""
    max_move: float
    """Largest MV change per control interval, from the spec."""


def steady_gains(model, spec: PlantSpec, rel_step: float = 0.01) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Steady-state gains (n_cv_with_setpoint, n_mv) by central differences on the physics."""
    u0, d0 = model.nominal()
    cvs = [n for n in spec.objective.setpoints]
    gains = np.zeros((len(cvs), len(u0)))
    for j, name in enumerate(model.mv_names):
        lo, hi = spec.tag(name).limits
        h = rel_step * (hi - lo)
        up, down = np.array(u0, float), np.array(u0, float)
        up[j] += h
        down[j] -= h
        y_up = model.outputs(model.steady_state(up, d0), up, d0)
        y_down = model.outputs(model.steady_state(down, d0), down, d0)
        for i, cv in enumerate(cvs):
            gains[i, j] = (y_up[cv] - y_down[cv]) / (2 * h)
    return gains


def pair(gains: np.ndarray) -> list[int]:
    """MV index for each CV: the pairing whose relative gains are closest to 1."""
    n_cv, n_mv = gains.shape
    if n_cv == n_mv:
        rga = gains * np.linalg.inv(gains).T
    else:
        rga = np.ones_like(gains)
    best, best_score = None, np.inf
    for perm in itertools.permutations(range(n_mv), n_cv):
        score = sum(
            abs(rga[i, j] - 1.0) if abs(gains[i, j]) > 0 else np.inf for i, j in enumerate(perm)
        )
        if score < best_score:
            best, best_score = list(perm), score
    assert best is not None
    return best


class PidController:
    """Decentralised PI in velocity form; decides once per control interval."""

    name = "pid"

    def __init__(self, spec: PlantSpec, model) -> None:  # type: ignore[no-untyped-def]
        self.spec = spec
        gains = steady_gains(model, spec)
        cvs = list(spec.objective.setpoints)
        tau = float(getattr(model, "time_constant_s", 10 * spec.plant.control_interval_s))
        theta = spec.plant.control_interval_s / 2  # sampling and hold act as half a delay
        self.loops = []
        for i, j in enumerate(pair(gains)):
            k = gains[i, j]
            kc = tau / (k * (tau + theta))  # SIMC with tau_c = tau
            mv = model.mv_names[j]
            max_move = spec.tag(mv).max_move
            if max_move is None:
                raise BadInput(
                    f"plant {spec.name!r}: the simulator's MV {mv!r} has no max_move in the spec "
                    "(is it an MV there?)"
                )
            self.loops.append(
                Loop(cvs[i], mv, float(kc), min(tau, 4 * (tau + theta)), float(max_move))
            )
        self.dt = spec.plant.control_interval_s
        self._last_error: dict[str, float] = {}

    def decide(
        self, y: Mapping[str, float], u_now: Mapping[str, float], setpoints: Mapping[str, float]
    ) -> dict[str, float]:
        out = dict(u_now)
        for loop in self.loops:
            e = setpoints[loop.cv] - y[loop.cv]
            de = e - self._last_error.get(loop.cv, e)
            self._last_error[loop.cv] = e
            move = loop.gain * (de + self.dt / loop.ti_s * e)
            tag = self.spec.tag(loop.mv)
            lo, hi = tag.operating_limits
            u = u_now[loop.mv]
            # The limits and max_move hold whatever the loop asks, as for every controller.
            out[loop.mv] = float(
                np.clip(u + move, max(lo, u - loop.max_move), min(hi, u + loop.max_move))
            )
        return out
