"""Tennessee Eastman process (Downs & Vogel 1993; revised model, Bathelt, Ricker & Jelali 2015).

A plant-wide process: reactor, condenser, separator, compressor, stripper; 41 measurements
(22 continuous, 19 from analysers with sampling and dead time), 12 valves, 28 disturbances.
The regulatory layer, Ricker's (1996) decentralised PI control, runs inside the plant on its
own 1.8 s clock, as a DCS does; the twin's MVs are the setpoints that layer exposes.

Unlike cstr and four_tank this plant is not an ODE the twin's integrator can step: it is a
sampled-data closed loop around a C kernel with hidden state (analyser buffers, random
disturbance processes, the noise generator) and PI memory. `advance` steps that engine; the
state `x` is the kernel's 50 states, and an `x` the engine is not at restarts it there.
Measurement noise is the kernel's own (seeded from the simulation's generator), so
`noise_std` is empty.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from tep_studio import ControllerSetpoints

from plants.base import Integrator, PlantModel
from plants.tep.engine import N_IDV, ClosedLoopPlant, Trip, base_case, with_targets
from plants.tep.scenarios import tep_scenarios
from plants.tep.tags import COST_TAG, SETPOINT_TAGS, XMEAS_TAGS

_FIELDS = tuple(s.field for s in SETPOINT_TAGS)


class TepModel(PlantModel):
    """States: the kernel's 50; MVs: 9 regulatory setpoints; d: IDV(1..28) activations."""

    state_names = tuple(f"x{i:02d}" for i in range(1, 51))
    mv_names = tuple(s.tag for s in SETPOINT_TAGS)
    disturbance_names = tuple(f"idv_{i:02d}" for i in range(1, N_IDV + 1))
    output_names = (*XMEAS_TAGS, COST_TAG, *mv_names)
    max_step_s = 1.8  # s; the kernel's RK4 step and the regulatory layer's sample time
    time_constant_s = 3600.0  # composition and inventory response under the layer: hours

    def __init__(self, noise: bool = True, overrides: bool = True) -> None:
        super().__init__()
        self.scenarios = tep_scenarios()
        self.engine = ClosedLoopPlant(noise=noise, overrides=overrides)
        self._base_state, self._base = base_case()
        # Started by `outputs` before the first step: restart with a seed from the simulation.
        self._provisional = False

    # ---- the supervisory view --------------------------------------------------------

    def nominal(self) -> tuple[np.ndarray, np.ndarray]:
        base = dataclasses.asdict(self._base)
        return np.array([base[f] for f in _FIELDS]), np.zeros(N_IDV)

    def setpoints_of(self, u: np.ndarray) -> ControllerSetpoints:
        """The regulatory layer's targets for the MV vector u."""
        return with_targets(self._base, dict(zip(_FIELDS, map(float, u), strict=True)))

    @property
    def trip(self) -> Trip | None:
        """The shutdown that stopped the plant, or None while it runs."""
        return self.engine.trip

    # ---- stepping --------------------------------------------------------------------

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
        self._ensure_at(x, u, d, t0, rng)
        self.engine.run(dt, self.setpoints_of(u), np.asarray(d, dtype=float))
        return self.engine.state

    def _ensure_at(
        self, x: np.ndarray, u: np.ndarray, d: np.ndarray, t0: float, rng: np.random.Generator
    ) -> None:
        if self._provisional or not self.engine.is_at(x, t0):
            seed = int(rng.integers(1, 2**31 - 1))
            self.engine.start(x, t0, self.setpoints_of(u), np.asarray(d, dtype=float), seed)
            self._provisional = False

    def outputs(self, x: np.ndarray, u: np.ndarray, d: np.ndarray) -> dict[str, float]:
        """The measurements where the engine is (its noise included) plus the cost and the MVs."""
        if not self.engine.is_at(x, self.engine.time_s):
            # Readings at x before any step; the first `advance` restarts with a proper seed.
            self.engine.start(x, self.engine.time_s, self.setpoints_of(u), np.asarray(d), 1)
            self._provisional = True
        values = dict(zip(XMEAS_TAGS, self.engine.measurements.tolist(), strict=True))
        values[COST_TAG] = self.engine.cost_per_h
        values.update(zip(self.mv_names, map(float, u), strict=True))
        return values

    # ---- the physics interface -------------------------------------------------------

    def derivatives(self, t: float, x: np.ndarray, u: np.ndarray, d: np.ndarray) -> np.ndarray:
        """dx/dt per second of the open loop, valves held where x has them (x[38:50]).

        The regulatory layer is a sampled-data system and is not in here: use `advance`.
        """
        kernel = self.engine.process.kernel
        kernel.set_inputs(x[38:50], np.asarray(d, dtype=float))
        return kernel.derivatives(t / 3600.0, x) / 3600.0

    def steady_state(self, u: np.ndarray, d: np.ndarray) -> np.ndarray:
        """The Mode 1 base-case state; the layer moves it to other setpoints over hours."""
        return self._base_state.copy()
