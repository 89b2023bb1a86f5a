"""What every simulated plant provides, and the simulation that runs one.

A `PlantModel` is pure physics: `derivatives(t, x, u, d)` with units on every constant, no I/O.
A `Simulation` adds what a real plant has around its physics: a clock on the spec's sample
period, actuators that saturate at the engineering limits, measurement noise from its own
seeded generator, and a disturbance / setpoint `Scenario` that plays out over time.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import numpy as np

from plants.integrators import Integrator, integrate, integrate_batch
from plants.profiles import Profile, Scenario, constant, ramp, schedule, step
from twin.errors import BadInput
from twin.spec import PlantSpec

__all__ = [
    "Integrator",
    "PlantModel",
    "Profile",
    "Scenario",
    "Simulation",
    "SimulatorError",
    "constant",
    "integrate",
    "integrate_batch",
    "ramp",
    "schedule",
    "step",
]
"""Scenario profiles (plants.profiles) and the integrators (plants.integrators) are re-exported:
plant simulators import everything they need from here."""

log = logging.getLogger(__name__)


class SimulatorError(BadInput):
    """A plant simulator that cannot be loaded or used with its spec (user-fixable)."""


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
