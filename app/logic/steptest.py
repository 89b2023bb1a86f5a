"""Designing a step test from the control room: a staircase of MV moves inside the limits.

The design is only a request: twin.api.request_steptest validates it (operating limits and
max_move between moves), an engineer approves it, and the runtime runs it with every move guarded.
"""

from __future__ import annotations

from dataclasses import dataclass

from twin.errors import BadInput
from twin.spec import PlantSpec


@dataclass(frozen=True)
class StepDesign:
    """A symmetric step test on one MV: up, back, down, back around a centre value."""

    mv: str
    """The MV to step."""
    centre: float
    """Value the steps are taken around (the live value, usually)."""
    amplitude: float
    """Size of each step; at most the MV's max_move."""
    hold_intervals: int = 6
    """Control intervals each level is held (long enough for the CVs to respond)."""
    repeats: int = 1
    """How many times the up-back-down-back cycle is run."""


def max_amplitude(spec: PlantSpec, mv: str) -> float:
    """The largest step the design allows on an MV: its max_move."""
    max_move = spec.tag(mv).max_move
    if max_move is None:  # the spec requires max_move of every MV, so this is not one
        raise BadInput(f"step test: {mv!r} is not an MV of {spec.name!r}")
    return max_move


def design_moves(
    spec: PlantSpec, d: StepDesign, operating: dict[str, tuple[float, float]] | None = None
) -> dict:
    """The campaign design dict twin.api.request_steptest takes."""
    if d.mv not in [t.name for t in spec.mvs]:
        raise BadInput(f"step test: {d.mv!r} is not an MV of {spec.name!r}")
    t = spec.tag(d.mv)
    if not 0 < d.amplitude <= (t.max_move or 0):
        raise BadInput(
            f"step test: amplitude {d.amplitude:g} must lie in (0, max_move {t.max_move:g}]"
        )
    if d.hold_intervals < 1 or d.repeats < 1:
        raise BadInput("step test: hold_intervals and repeats must be at least 1")
    lo, hi = (operating or {}).get(d.mv, t.operating_limits)
    if not lo <= d.centre - d.amplitude or not d.centre + d.amplitude <= hi:
        raise BadInput(
            f"step test: {d.centre:g} +/- {d.amplitude:g} leaves the operator limits [{lo:g}, {hi:g}] of {d.mv}"
        )
    step_s = spec.plant.control_interval_s * d.hold_intervals
    levels = [d.centre + d.amplitude, d.centre, d.centre - d.amplitude, d.centre] * d.repeats
    moves = [{"at_s": step_s * i, "values": {d.mv: round(v, 6)}} for i, v in enumerate(levels)]
    return {
        "moves": moves,
        "mv": d.mv,
        "amplitude": d.amplitude,
        "hold_intervals": d.hold_intervals,
    }
