"""MV excitation signals for data collection: PRBS, generalised binary noise, random steps.

A schedule is a pure function of the spec, its length and a random generator: one row per
control interval, one column per MV (the spec's MV order), absolute values. The signal lives
in the chosen band (operating limits by default, engineering limits on request; a start
outside it is brought in at the max_move rate), every row lies within the engineering limits,
and no row moves an MV by more than its `max_move` from the row before, starting from `start`.
Hold times follow the plant's dominant time constant, so each level lasts long enough to
show the plant's response but short enough to cover many levels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from twin.errors import BadInput
from twin.spec import PlantSpec

Kind = Literal["prbs", "gbn", "steps", "none"]
Band = Literal["operating", "engineering"]
KINDS: tuple[str, ...] = ("prbs", "gbn", "steps", "none")

# Feedback taps of maximum-length Fibonacci LFSRs (bit positions, 1-based), by register length.
_LFSR_TAPS = {5: (5, 3), 6: (6, 5), 7: (7, 6), 8: (8, 6, 5, 4), 9: (9, 5), 10: (10, 7), 11: (11, 9)}


@dataclass(frozen=True)
class ExcitationConfig:
    """How an excitation campaign moves the MVs."""

    band: Band = "operating"
    """Which limits bound the signal: the operator limits (default) or the engineering limits."""
    amplitude: float = 1.0
    """Fraction of the half-band the binary signals swing around the band's centre, in (0, 1]."""
    hold_s: float | None = None
    """Shortest time a level is held, seconds; default the plant's time constant (or 3 intervals)."""
    time_constant_s: float | None = None
    """The plant's dominant time constant, seconds, when known (sets the default hold)."""

    def __post_init__(self) -> None:
        if self.band not in ("operating", "engineering"):
            raise BadInput(f"excitation band {self.band!r} must be 'operating' or 'engineering'")
        if not 0.0 < self.amplitude <= 1.0:
            raise BadInput(f"excitation amplitude {self.amplitude} must lie in (0, 1]")
        if self.hold_s is not None and not self.hold_s > 0:
            raise BadInput(f"excitation hold_s {self.hold_s} must be positive")


def hold_intervals(spec: PlantSpec, config: ExcitationConfig) -> int:
    """Control intervals per level: the hold time rounded to whole intervals, at least one."""
    interval = spec.plant.control_interval_s
    hold = config.hold_s or config.time_constant_s or 3 * interval
    return max(1, round(hold / interval))


def mv_bands(spec: PlantSpec, band: Band = "operating") -> np.ndarray:
    """(n_mv, 2) lower and upper bound of each MV for the chosen band."""
    return np.array(
        [t.operating_limits if band == "operating" else t.limits for t in spec.mvs], dtype=float
    )


def design(
    spec: PlantSpec,
    n_intervals: int,
    kind: Kind = "prbs",
    rng: np.random.Generator | None = None,
    *,
    start: np.ndarray | None = None,
    config: ExcitationConfig | None = None,
) -> np.ndarray:
    """An MV schedule of shape (n_intervals, n_mv) in engineering units.

    kind: "prbs" (maximum-length binary sequence between the band's edges), "gbn" (binary,
    random switching), "steps" (random levels in the band) or "none" (hold `start`).
    `start` is the MV values before the first interval (default the band centre); the first
    row moves at most max_move from it, and a start outside the band is brought into it at
    the max_move rate. Every row lies within the engineering limits. Deterministic for a
    given rng state.
    """
    if kind not in KINDS:
        raise BadInput(f"excitation kind {kind!r} is not one of {', '.join(KINDS)}")
    config = config or ExcitationConfig()
    rng = rng if rng is not None else np.random.default_rng(0)
    bands = mv_bands(spec, config.band)
    n_mv = len(bands)
    if n_intervals < 0:
        raise BadInput(f"n_intervals {n_intervals} must not be negative")
    if n_mv == 0 or n_intervals == 0:
        return np.zeros((n_intervals, n_mv))
    centre = bands.mean(axis=1)
    hard = mv_bands(spec, "engineering")
    # A start outside the band is left at the max_move rate, never by a jump.
    x0 = (
        np.clip(np.asarray(start, dtype=float), hard[:, 0], hard[:, 1])
        if start is not None
        else centre
    )
    hold = hold_intervals(spec, config)
    if kind == "none":
        targets = np.tile(x0, (n_intervals, 1))
    elif kind == "steps":
        targets = np.column_stack([_steps(n_intervals, hold, lo, hi, rng) for lo, hi in bands])
    else:
        half = config.amplitude * (bands[:, 1] - bands[:, 0]) / 2.0
        make = _prbs_bits if kind == "prbs" else _gbn_bits
        bits = np.column_stack([make(n_intervals, hold, rng) for _ in range(n_mv)])
        targets = centre + half * (2.0 * bits - 1.0)
    max_move = np.array([t.max_move for t in spec.mvs], dtype=float)
    return _rate_limit(targets, x0, max_move, hard)


def _rate_limit(
    targets: np.ndarray, x0: np.ndarray, max_move: np.ndarray, bands: np.ndarray
) -> np.ndarray:
    """Follow the targets as fast as max_move allows, never leaving the (engineering) bands.

    Targets lie inside the chosen band, so a path that starts inside it stays inside it.
    """
    out = np.empty_like(targets)
    prev = x0
    for i, target in enumerate(targets):
        # The 1e-12 margin keeps the float result of prev + move within max_move of prev.
        move = np.clip(target - prev, -max_move * (1 - 1e-12), max_move * (1 - 1e-12))
        prev = np.clip(prev + move, bands[:, 0], bands[:, 1])
        out[i] = prev
    return out


def _prbs_bits(n: int, hold: int, rng: np.random.Generator) -> np.ndarray:
    """A maximum-length LFSR sequence (random seed state), each bit held `hold` intervals."""
    n_bits = math.ceil(n / hold)
    # A register long enough that the sequence does not repeat within the campaign.
    order = min(max(5, math.ceil(math.log2(n_bits + 1))), max(_LFSR_TAPS))
    return np.repeat(lfsr_sequence(order, n_bits, rng), hold)[:n]


def lfsr_sequence(order: int, n_bits: int, rng: np.random.Generator) -> np.ndarray:
    """n_bits of the maximum-length sequence of a Fibonacci LFSR of `order` bits (period 2^order - 1)."""
    taps = _LFSR_TAPS[order]
    state = [int(b) for b in rng.integers(0, 2, size=order)]
    if not any(state):
        state[0] = 1  # the all-zero state is the one state outside the cycle
    bits = np.empty(n_bits)
    for i in range(n_bits):
        bits[i] = state[-1]
        feedback = 0
        for tap in taps:
            feedback ^= state[tap - 1]
        state = [feedback] + state[:-1]
    return bits


def _gbn_bits(n: int, hold: int, rng: np.random.Generator) -> np.ndarray:
    """Generalised binary noise: after `hold` intervals, switch with probability 1/hold each interval."""
    bits = np.empty(n)
    level = float(rng.integers(0, 2))
    held = 0
    for i in range(n):
        if held >= hold and rng.random() < 1.0 / hold:
            level = 1.0 - level
            held = 0
        bits[i] = level
        held += 1
    return bits


def _steps(n: int, hold: int, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    """Random levels, uniform in [lo, hi], each held between hold and 3 * hold intervals."""
    out = np.empty(n)
    i = 0
    while i < n:
        length = int(rng.integers(hold, 3 * hold + 1))
        out[i : i + length] = rng.uniform(lo, hi)
        i += length
    return out
