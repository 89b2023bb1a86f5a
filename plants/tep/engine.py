"""The Tennessee Eastman plant with its regulatory layer, as one stepping engine.

tep-studio's revised TEP kernel (Bathelt, Ricker and Jelali 2015) is a stiff ODE with hidden
state of its own (analyser sample-and-hold, random disturbance processes, the noise
generator), integrated with fixed-step RK4 at 0.0005 h. Ricker's (1996) decentralised PI
layer runs on the same 0.0005 h clock and reads only the 41 measurements, as a DCS does.
This engine advances both together; what the twin sees are the layer's setpoints (its MVs)
and the measurements.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import numpy as np
from tep_studio import ControllerSetpoints, RickerMultiLoopController, TennesseeEastmanProcess

log = logging.getLogger(__name__)

CONTROL_PERIOD_H = 0.0005
"""The regulatory layer's sample time and the kernel's RK4 step (1.8 s), Ricker 1996."""
N_IDV = 28
KERNEL_FLAGS = 0x0F
"""Kernel feature bits: additional measurements and the monitors (cost among them)."""
NOISE_OFF = 0x10
"""Kernel feature bit that turns the measurement noise off."""
_OPERATING_COST_MONITOR = 60  # process monitor: operating cost on measured values, $/h
_TIME_TOLERANCE_H = 1e-7


@dataclass(frozen=True)
class Trip:
    """A shutdown by the plant's interlocks (Downs & Vogel 1993, Table 3)."""

    time_s: float
    """Seconds since the engine's time origin."""
    code: int
    """Kernel shutdown code 1-8 (1: high reactor pressure ... 8: low stripper level)."""
    reason: str
    """The kernel's message."""


class ClosedLoopPlant:
    """The kernel plus Ricker's decentralised layer, started at a state and stepped in time.

    `noise` False turns the kernel's measurement noise off; `overrides` keeps Ricker's
    high-pressure and high-level overrides in the layer (a DCS has them).
    """

    def __init__(self, *, noise: bool = True, overrides: bool = True) -> None:
        flags = KERNEL_FLAGS | (0 if noise else NOISE_OFF)
        self.process = TennesseeEastmanProcess(ms_flag=flags)
        self.controller = RickerMultiLoopController(enable_overrides=overrides)
        self.origin_s = 0.0
        self.measurements = np.zeros(41)
        self.cost_per_h = math.nan
        self.trip: Trip | None = None
        self.started = False

    @property
    def state(self) -> np.ndarray:
        """The kernel's 50 states (holdups, energies, cooling-water temperatures, valves)."""
        return self.process.state.copy()

    @property
    def time_s(self) -> float:
        """Seconds since the engine's time origin."""
        return self.origin_s + self.process.time * 3600.0

    def is_at(self, x: np.ndarray, t_s: float) -> bool:
        """Whether the engine is at state x and time t_s (so it can go on from there)."""
        return (
            self.started
            and abs(self.time_s - t_s) < _TIME_TOLERANCE_H * 3600.0
            and np.array_equal(self.process.state, x)
        )

    def start(
        self, x: np.ndarray, t_s: float, setpoints: ControllerSetpoints, idv: np.ndarray, seed: int
    ) -> None:
        """Restart the kernel at state x (time t_s) and the layer bumplessly around it."""
        measurements, _ = self.process.reset(initial_state=x, seed=float(seed), disturbances=idv)
        self.origin_s = t_s
        self.controller.setpoints = None
        self.controller.reset(measurements, time=0.0)
        self.controller.setpoints = setpoints
        self.measurements = measurements.copy()
        self.cost_per_h = self._cost(self.process.kernel.outputs(0.0, self.process.state))
        self.trip = None
        self.started = True

    def run(self, dt_s: float, setpoints: ControllerSetpoints, idv: np.ndarray) -> None:
        """Advance dt_s seconds (a whole number of 1.8 s layer periods) under these targets.

        After a trip the plant stays down: its state and readings hold where it stopped.
        """
        steps = round(dt_s / (CONTROL_PERIOD_H * 3600.0))
        if steps < 1 or abs(steps * CONTROL_PERIOD_H * 3600.0 - dt_s) > 1e-6:
            raise ValueError(f"tep steps in multiples of 1.8 s, not {dt_s} s")
        if self.trip is not None:
            self.origin_s += dt_s  # a plant that is down still ages on the clock
            return
        self.controller.setpoints = setpoints
        for done in range(1, steps + 1):
            action, _ = self.controller.compute_action(self.measurements, time=self.process.time)
            result = self.process.advance(
                action, control_interval=CONTROL_PERIOD_H, disturbances=idv
            )
            self.measurements = result.measurements
            status = result.shutdown_status
            if status["terminated"]:
                self.trip = Trip(self.time_s, int(status["code"]), str(status["message"]))
                log.warning("tep shut down at %.2f h: %s", self.time_s / 3600, self.trip.reason)
                # The clock still reaches the end of the period, so the caller's time holds.
                self.origin_s += (steps - done) * CONTROL_PERIOD_H * 3600.0
                break
        self.cost_per_h = float(result.objective_terms["operating_cost_measured_per_hour"])

    @staticmethod
    def _cost(outputs: dict[str, np.ndarray]) -> float:
        return float(outputs["process_monitors"][_OPERATING_COST_MONITOR])


def base_case() -> tuple[np.ndarray, ControllerSetpoints]:
    """The Mode 1 base-case state and the layer's targets there (the plant without APC)."""
    process = TennesseeEastmanProcess(ms_flag=KERNEL_FLAGS | NOISE_OFF)
    measurements, _ = process.reset()
    probe = RickerMultiLoopController()
    probe.reset(measurements)
    assert probe.setpoints is not None  # reset fills the base-case targets
    return process.state.copy(), probe.setpoints


def with_targets(base: ControllerSetpoints, targets: dict[str, float]) -> ControllerSetpoints:
    """The layer's setpoints with some fields replaced (field name -> value)."""
    return replace(base, **targets)
