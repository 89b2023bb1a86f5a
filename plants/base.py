"""What every simulated plant provides, and the simulation that runs one.

A `PlantModel` is pure physics: `derivatives(t, x, u, d)` with units on every constant, no I/O.
A `Simulation` adds what a real plant has around its physics: a clock on the spec's sample
period, actuators that saturate at the engineering limits, measurement noise from its own
seeded generator, and a disturbance / setpoint `Scenario` that plays out over time.
"""

from __future__ import annotations

import bisect
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np
from scipy.integrate import solve_ivp

from twin.errors import BadInput
from twin.spec import PlantSpec

log = logging.getLogger(__name__)

Integrator = Literal["rk45", "solve_ivp"]


class SimulatorError(BadInput):
    """A plant simulator that cannot be loaded or used with its spec (user-fixable)."""


# ---- scenarios ------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """A value over time: piecewise linear through (t_s, value) points.

    Held at the first value before the first point and at the last after the last point;
    two points at the same time make a step.
    """

    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("a profile needs at least one point")
        times = [t for t, _ in self.points]
        if any(b < a for a, b in zip(times, times[1:], strict=False)):
            raise ValueError(f"profile times must not decrease: {times}")

    def at(self, t: float) -> float:
        """The value at t seconds since the scenario started."""
        times = [p[0] for p in self.points]
        i = bisect.bisect_right(times, t) - 1
        if i < 0:
            return self.points[0][1]
        if i >= len(self.points) - 1:
            return self.points[-1][1]
        (t0, v0), (t1, v1) = self.points[i], self.points[i + 1]
        if t1 <= t0:
            return v1
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def constant(value: float) -> Profile:
    """A value that never changes."""
    return Profile(((0.0, value),))


def step(at_s: float, before: float, after: float) -> Profile:
    """A step from `before` to `after` at `at_s`."""
    return Profile(((at_s, before), (at_s, after)))


def ramp(start_s: float, end_s: float, before: float, after: float) -> Profile:
    """A linear change from `before` (until start_s) to `after` (from end_s on)."""
    return Profile(((start_s, before), (end_s, after)))


def schedule(first: float, *changes: tuple[float, float]) -> Profile:
    """A staircase: `first`, then each (t_s, value) as a step at t_s."""
    points: list[tuple[float, float]] = [(0.0, first)]
    value = first
    for t, new in changes:
        points += [(t, value), (t, new)]
        value = new
    return Profile(tuple(points))


@dataclass(frozen=True)
class Scenario:
    """Disturbances (and optionally CV setpoints) as functions of time since the start."""

    name: str
    """Key in the model's `scenarios`."""
    description: str
    """One line for listings."""
    disturbances: Mapping[str, Profile] = field(default_factory=dict)
    """Absolute disturbance values by the model's disturbance name; others stay nominal."""
    setpoints: Mapping[str, Profile] = field(default_factory=dict)
    """CV setpoint overrides by tag name; others follow the spec's objective."""
    repeat_s: float | None = None
    """The schedule restarts every repeat_s seconds (long runs cycle through it); None: once."""

    def _local(self, t: float) -> float:
        return t % self.repeat_s if self.repeat_s else t

    def disturbance_overrides(self, t: float) -> dict[str, float]:
        """Disturbance values at t seconds since the start."""
        tl = self._local(t)
        return {k: p.at(tl) for k, p in self.disturbances.items()}

    def setpoint_overrides(self, t: float) -> dict[str, float]:
        """Setpoint overrides at t seconds since the start."""
        tl = self._local(t)
        return {k: p.at(tl) for k, p in self.setpoints.items()}


# ---- the physics interface -------------------------------------------------------------


class PlantModel(ABC):
    """Pure physics of one plant: states, MVs, disturbances and the measured tags."""

    state_names: tuple[str, ...] = ()
    """Names of the entries of the state vector x."""
    mv_names: tuple[str, ...] = ()
    """MV tag names in the order of the vector u (the spec's MV order)."""
    disturbance_names: tuple[str, ...] = ()
    """Names of the entries of the disturbance vector d (measured or not)."""
    output_names: tuple[str, ...] = ()
    """Every spec tag this model produces a value for."""
    max_step_s: float = 1.0
    """Largest integration step in seconds (the adaptive integrator shrinks it where needed)."""
    time_constant_s: float = 60.0
    """Dominant open-loop time constant, seconds: sets excitation hold times."""

    def __init__(self) -> None:
        self.noise_std: dict[str, float] = {}
        self.scenarios: dict[str, Scenario] = {}

    @abstractmethod
    def derivatives(self, t: float, x: np.ndarray, u: np.ndarray, d: np.ndarray) -> np.ndarray:
        """dx/dt in state units per second."""

    @abstractmethod
    def outputs(self, x: np.ndarray, u: np.ndarray, d: np.ndarray) -> dict[str, float]:
        """Noise-free value of every tag, in engineering units."""

    @abstractmethod
    def steady_state(self, u: np.ndarray, d: np.ndarray) -> np.ndarray:
        """A state with zero derivatives for constant u and d."""

    @abstractmethod
    def nominal(self) -> tuple[np.ndarray, np.ndarray]:
        """Default MV values and disturbances (u, d)."""

    def project(self, x: np.ndarray) -> np.ndarray:
        """Keep a state physical after an integration step (e.g. levels inside the tank)."""
        return x

    def advance(
        self,
        x: np.ndarray,
        u: np.ndarray,
        d: np.ndarray,
        t0: float,
        dt: float,
        method: Integrator,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """The state after dt seconds from x at t0 with u and d held: `integrate` by default.

        A plant that is a sampled-data system rather than an ODE (a wrapped stepping model
        with its own regulatory layer and noise, like tep) steps itself here; rng is the
        simulation's seeded generator, so such a plant stays deterministic per seed.
        """
        return integrate(self, x, u, d, t0, dt, method)

    def derivatives_batch(
        self, t: float, x: np.ndarray, u: np.ndarray, d: np.ndarray
    ) -> np.ndarray:
        """dx/dt of B states at once, each under its own MVs: x (B, n), u (B, m) -> (B, n).

        Row by row here; plants whose planners batch many trial trajectories (the oracle NMPC)
        override it with array arithmetic that must agree with `derivatives`.
        """
        return np.stack([self.derivatives(t, xi, ui, d) for xi, ui in zip(x, u, strict=True)])

    def project_batch(self, x: np.ndarray) -> np.ndarray:
        """`project` of every row of x (B, n)."""
        return np.stack([self.project(xi) for xi in x])

    def sensor_range(self, tag: str) -> tuple[float, float] | None:
        """The range a transmitter can report for a tag (readings saturate there), or None."""
        return None


# Dormand-Prince 5(4) tableau: the explicit pair behind scipy's RK45 and MATLAB's ode45.
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
)
_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)
# Fifth- minus fourth-order weights (the last entry weighs the FSAL stage f(x_new)).
_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)


def _rk45(
    f: Callable[[float, np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    project: Callable[[np.ndarray], np.ndarray],
    max_step_s: float,
    x: np.ndarray,
    u: np.ndarray,
    d: np.ndarray,
    t0: float,
    dt: float,
    rtol: float,
    atol: float,
) -> np.ndarray:
    """Adaptive Dormand-Prince over [t0, t0 + dt]; steps shrink where the plant is fast.

    x is one state (n,) or a batch (B, n) under its MVs; a batch shares one step size, set by
    its least smooth row (the error norm is the largest row's).
    """
    t, t_end = t0, t0 + dt
    h = min(dt, max_step_s)
    k0 = f(t, x, u, d)
    while t_end - t > 1e-12 * max(1.0, abs(t_end)):
        h = min(h, t_end - t)
        ks = [k0]
        for i in range(1, 6):
            xi = x + h * sum(a * k for a, k in zip(_A[i], ks, strict=False))
            ks.append(f(t + _C[i] * h, xi, u, d))
        x_new = x + h * sum(b * k for b, k in zip(_B, ks, strict=False))
        k_new = f(t + h, x_new, u, d)
        ks.append(k_new)
        err_vec = h * sum(e * k for e, k in zip(_E, ks, strict=False))
        scale = atol + rtol * np.maximum(np.abs(x), np.abs(x_new))
        err = float(np.sqrt(np.mean((err_vec / scale) ** 2, axis=-1)).max())
        if err <= 1.0 and np.all(np.isfinite(x_new)):
            t += h
            x = project(x_new)
            k0 = k_new if x is x_new else f(t, x, u, d)
            factor = 5.0 if err == 0.0 else min(5.0, 0.9 * err**-0.2)
        else:
            factor = 0.2 if not np.isfinite(err) else max(0.2, 0.9 * err**-0.2)
        h = min(h * factor, max_step_s)
        if h < 1e-9 * dt:
            raise RuntimeError(
                f"step size underflow at t={t:.6g} s: the plant state {x} is not integrable"
            )
    return x


def integrate(
    model: PlantModel,
    x: np.ndarray,
    u: np.ndarray,
    d: np.ndarray,
    t0: float,
    dt: float,
    method: Integrator = "rk45",
    rtol: float = 1e-7,
    atol: float = 1e-9,
) -> np.ndarray:
    """The state after dt seconds with u and d held constant.

    "rk45": our adaptive Dormand-Prince 5(4), steps at most model.max_step_s (fast, default);
    "solve_ivp": scipy's Radau (implicit, stiff-capable) with tight tolerances (the reference).
    """
    x = np.asarray(x, dtype=float)
    if method == "solve_ivp":
        sol = solve_ivp(
            lambda t, y: model.derivatives(t, y, u, d),
            (t0, t0 + dt),
            x,
            method="Radau",
            rtol=1e-10,
            atol=1e-12,
        )
        if not sol.success:
            raise RuntimeError(f"integration failed at t={t0}: {sol.message}")
        return model.project(sol.y[:, -1])
    return _rk45(model.derivatives, model.project, model.max_step_s, x, u, d, t0, dt, rtol, atol)


def integrate_batch(
    model: PlantModel,
    x: np.ndarray,
    u: np.ndarray,
    d: np.ndarray,
    t0: float,
    dt: float,
    rtol: float = 1e-6,
    atol: float = 1e-8,
) -> np.ndarray:
    """`integrate` (Dormand-Prince) of B states at once: x (B, n) under u (B, m) -> (B, n).

    The batch shares one step size, set by its least smooth row, so every row is at least as
    accurate as it would be alone. Raises RuntimeError where a row cannot be integrated.
    """
    x = np.asarray(x, dtype=float)
    return _rk45(
        model.derivatives_batch, model.project_batch, model.max_step_s, x, u, d, t0, dt, rtol, atol
    )


# ---- a running plant -------------------------------------------------------------------


class Simulation:
    """One simulated plant on the spec's sample clock, deterministic for a seed.

    Starts at the steady state of the initial MVs (`mvs`, default the model's nominal ones)
    and the scenario's disturbances at t=0, or at `x0`. MV writes saturate at the engineering
    limits, as a real actuator does. `model` defaults to the simulator beside the spec;
    `integrator` "rk45" (fast, adaptive) or "solve_ivp" (Radau reference); `noise` False gives
    noise-free measurements.
    """

    def __init__(
        self,
        spec: PlantSpec,
        seed: int = 0,
        scenario: str | None = None,
        start: datetime | None = None,
        *,
        model: PlantModel | None = None,
        x0: np.ndarray | None = None,
        mvs: Mapping[str, float] | None = None,
        integrator: Integrator = "rk45",
        noise: bool = True,
    ) -> None:
        if model is None:
            from plants import load_plant_model

            model = load_plant_model(spec)
        self.spec = spec
        self.model = model
        self.integrator: Integrator = integrator
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.dt = spec.plant.sample_period_s
        self.start = (start or datetime.now(UTC)).astimezone(UTC)
        self.k = 0
        self.scenario = self._scenario(scenario)
        self._mv_tags = {t.name: t for t in spec.mvs}
        self._d_index = {n: i for i, n in enumerate(model.disturbance_names)}
        self._d_nominal = model.nominal()[1].astype(float)
        u0 = np.asarray(model.nominal()[0], dtype=float)
        self.u = np.array(
            [self._clip(n, v) for n, v in zip(model.mv_names, u0, strict=True)], dtype=float
        )
        if mvs:
            self.set_mvs(mvs)
        d0 = self.disturbances()
        self.x = (
            np.asarray(x0, dtype=float).copy() if x0 is not None else model.steady_state(self.u, d0)
        )
        self._std = np.array([model.noise_std.get(n, 0.0) for n in spec.tag_names])
        self._ranges = [model.sensor_range(n) for n in spec.tag_names]

    def _scenario(self, name: str | None) -> Scenario | None:
        if name is None:
            return None
        sc = self.model.scenarios.get(name)
        if sc is None:
            known = ", ".join(sorted(self.model.scenarios)) or "none"
            raise BadInput(f"plant {self.spec.name!r} has no scenario {name!r} (known: {known})")
        for key in sc.disturbances:
            if key not in self.model.disturbance_names:
                raise SimulatorError(f"scenario {name!r}: unknown disturbance {key!r}")
        cvs = {t.name for t in self.spec.cvs}
        for key in sc.setpoints:
            if key not in cvs:
                raise SimulatorError(f"scenario {name!r}: setpoint for {key!r}, which is not a CV")
        return sc

    def _clip(self, name: str, value: float) -> float:
        lo, hi = self._mv_tags[name].limits
        return float(min(max(value, lo), hi))

    # ---- clock and signals -------------------------------------------------------------

    @property
    def elapsed_s(self) -> float:
        """Seconds since the start."""
        return self.k * self.dt

    @property
    def time(self) -> datetime:
        """The simulated time (UTC) of the current state."""
        return self.start + timedelta(seconds=self.elapsed_s)

    @property
    def mv(self) -> dict[str, float]:
        """The MV values the actuators hold now."""
        return dict(zip(self.model.mv_names, self.u.tolist(), strict=True))

    def disturbances(self, t: float | None = None) -> np.ndarray:
        """The disturbance vector at t seconds (default: now)."""
        d = self._d_nominal.copy()
        if self.scenario is not None:
            for key, value in self.scenario.disturbance_overrides(
                self.elapsed_s if t is None else t
            ).items():
                d[self._d_index[key]] = value
        return d

    @property
    def setpoints(self) -> dict[str, float]:
        """CV setpoints now: the scenario's schedule over the spec's objective."""
        sp = dict(self.spec.objective.setpoints)
        if self.scenario is not None:
            sp.update(self.scenario.setpoint_overrides(self.elapsed_s))
        return sp

    # ---- acting and stepping ----------------------------------------------------------

    def set_mvs(self, values: Mapping[str, float]) -> dict[str, float]:
        """Write MVs; each saturates at its engineering limits. Returns what was applied."""
        applied: dict[str, float] = {}
        for name, value in values.items():
            if name not in self._mv_tags:
                raise BadInput(f"plant {self.spec.name!r}: {name!r} is not a writable MV")
            if not math.isfinite(value):
                raise BadInput(f"plant {self.spec.name!r}: MV {name!r} value {value} is not finite")
            applied[name] = self._clip(name, float(value))
        for name, value in applied.items():
            self.u[self.model.mv_names.index(name)] = value
        return applied

    def true_outputs(self) -> dict[str, float]:
        """Noise-free value of every spec tag now."""
        out = self.model.outputs(self.x, self.u, self.disturbances())
        return {n: float(out[n]) for n in self.spec.tag_names}

    def measure(self) -> dict[str, float]:
        """What the transmitters read now: true value + noise, saturated at sensor ranges."""
        true = np.array(list(self.true_outputs().values()))
        values = true + self._std * self.rng.standard_normal(len(true)) if self.noise else true
        out: dict[str, float] = {}
        for name, v, rng_ in zip(self.spec.tag_names, values.tolist(), self._ranges, strict=True):
            out[name] = min(max(v, rng_[0]), rng_[1]) if rng_ is not None else v
        return out

    def advance(self) -> None:
        """Integrate one sample period with the MVs and disturbances of its start."""
        d = self.disturbances()
        self.x = self.model.advance(
            self.x, self.u, d, self.elapsed_s, self.dt, self.integrator, self.rng
        )
        self.k += 1

    def step(self) -> dict[str, float]:
        """Advance one sample period; the noisy measured value of every tag at the new time."""
        self.advance()
        return self.measure()
