"""Scenarios: disturbances and CV setpoints as profiles over time (what a simulated plant's
`scenarios` map holds)."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field


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
