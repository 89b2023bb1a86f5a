"""The disturbance-trend test's decision level from a stated false-alarm rate.

A one-sided CUSUM's average run length (ARL) without drift follows Siegmund's approximation. The
commissioning means the test is centred on are estimates, so the test runs on a small standing
bias: the false-alarm probability over a window averages the run length over that bias's normal
distribution, summed over CVs and both directions. The threshold is the lowest level whose
probability is the stated rate.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

from twin.health.drift_config import DriftConfig


def cusum_arl(slack: float, threshold: float, mean: float = 0.0) -> float:
    """Average run length (intervals) of a one-sided CUSUM max(0, S + z - slack) >= threshold
    on z ~ N(mean, 1) (Siegmund's approximation)."""
    d, b = mean - slack, threshold + 1.166
    if abs(d) < 1e-9:
        return b * b
    x = -2.0 * d * b
    if x > 700:  # in control and far below the threshold: never, in any run
        return math.inf
    return (math.exp(x) - x - 1.0) / (2.0 * d * d)


_GRID = [i / 10 for i in range(-60, 61)]
_WEIGHTS = [math.exp(-x * x / 2) for x in _GRID]
_WSUM = sum(_WEIGHTS)


def false_alarm(
    config: DriftConfig, threshold: float, intervals: float, mean_se: Sequence[float]
) -> float:
    """Probability that the trend test fires within `intervals` without drift: the sum over
    its CVs (standard error `mean_se` of each commissioning mean, in scale units) and both
    directions of 1 - exp(-intervals / ARL), the ARL taken at the standing bias the mean's
    estimation error leaves and averaged over that error (normal)."""
    total = 0.0
    for se in mean_se:
        p = 0.0
        for x, w in zip(_GRID, _WEIGHTS, strict=True):
            arl = cusum_arl(config.bias_slack, threshold, x * se)
            p += w * (-math.expm1(-intervals / arl) if math.isfinite(arl) else 0.0)
        total += 2.0 * p / _WSUM
    return total


def bias_threshold(config: DriftConfig, interval_s: float, mean_se: Sequence[float]) -> float:
    """The trend test's decision level: the lowest whose false-alarm probability over
    `bias_window_s` (`false_alarm`, allowing for the commissioning means' estimation error) is
    `bias_false_alarm`. With the means known exactly and two CVs at a 30 s interval: 12.1."""
    intervals = config.bias_window_s / interval_s
    ses = list(mean_se) or [0.0]
    lo, hi = 0.0, 1.0
    while false_alarm(config, hi, intervals, ses) > config.bias_false_alarm and hi < 1e4:
        lo, hi = hi, 2.0 * hi
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if false_alarm(config, mid, intervals, ses) > config.bias_false_alarm:
            lo = mid
        else:
            hi = mid
    return hi


@functools.lru_cache(maxsize=64)
def exact_threshold(config: DriftConfig, interval_s: float, cvs: int) -> float:
    """`bias_threshold` with every commissioning mean known exactly (no estimation error)."""
    return bias_threshold(config, interval_s, [0.0] * cvs)
