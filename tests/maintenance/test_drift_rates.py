"""The disturbance-trend test's stated rates, without a plant: its threshold follows from a
false-alarm probability per day (Siegmund's run length, checked here by simulation), a stream
without drift commissioned as the runtime commissions it raises no alarm over a day, and a bias
of one card RMSE (twice the allowance) alarms within a stated number of intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twin.health.arl import bias_threshold, cusum_arl
from twin.health.commissioning import Commissioning
from twin.health.drift import BiasState
from twin.health.drift_config import DriftConfig

CVS = ("h1", "h2", "h3", "h4")
CARD = 0.05
"""Each CV's one-step held-out RMSE (the card's): the four_tank's order of magnitude."""
INTERVAL_S = 10.0
"""The four_tank's control interval: a day is 8,640 intervals."""


def _innovations(n: int, rng: np.random.Generator, std: float, rho: float) -> np.ndarray:
    """(n, CVs) AR(1) innovations with marginal std `std` and lag-1 autocorrelation `rho`."""
    w = rng.normal(0.0, std * math.sqrt(1 - rho * rho), (n, len(CVS)))
    x = np.empty_like(w)
    x[0] = rng.normal(0.0, std, len(CVS))
    for k in range(1, n):
        x[k] = rho * x[k - 1] + w[k]
    return x


def _commission(x: np.ndarray, cfg: DriftConfig) -> tuple[BiasState, int]:
    """Commissioning as the runtime runs it: at least min_commission predictions, then on until
    the means are precise (or its longest stretch); the trend test it sets and its length."""
    c = Commissioning(cfg)
    card = dict.fromkeys(CVS, CARD)
    longest = int(cfg.commission_longest_s / INTERVAL_S)
    k = 0
    while True:
        c.add([1.0], dict(zip(CVS, map(float, x[k]), strict=True)))
        k += 1
        if k >= cfg.min_commission and (k >= longest or c.precise(card, INTERVAL_S)):
            break
    ref = c.reference(card)
    bias = BiasState(
        ref.innovation_mean,
        ref.innovation_scale,
        cfg,
        interval_s=INTERVAL_S,
        mean_se=ref.innovation_mean_se,
    )
    return bias, k


def test_the_threshold_meets_its_run_length() -> None:
    """Siegmund's in-control run length, which the threshold is solved from, against a
    simulated one-sided CUSUM (allowance 0.5)."""
    rng = np.random.default_rng(0)
    h = 4.0
    lengths = []
    for _ in range(300):
        s, n = 0.0, 0
        while s < h:
            s = max(0.0, s + rng.normal() - 0.5)
            n += 1
        lengths.append(n)
    assert cusum_arl(0.5, h) == pytest.approx(float(np.mean(lengths)), rel=0.2)
    # The stated rate: 1 % per day over 4 CVs at 10 s, means known exactly.
    cfg = DriftConfig()
    exact = bias_threshold(cfg, INTERVAL_S, [0.0] * 4)
    arl = cusum_arl(cfg.bias_slack, exact)
    assert 8 * 8640 / arl == pytest.approx(cfg.bias_false_alarm, rel=0.05)
    # Means estimated with error raise it; the commissioning stops where it at most doubles.
    assert bias_threshold(cfg, INTERVAL_S, [0.1] * 4) > exact


def test_no_drift_no_alarm_over_a_day() -> None:
    """10 days of four CVs' autocorrelated innovations at the card's level, each day
    commissioned afresh from its own first predictions: no alarm (stated: 1 % per day; 30
    days, run once, raised none either)."""
    cfg = DriftConfig()
    fired, lengths = 0, []
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        x = _innovations(8640 + 400, rng, std=CARD, rho=0.3)
        bias, k = _commission(x, cfg)
        lengths.append(k)
        for row in x[k : k + 8640]:
            if bias.update(dict(zip(CVS, map(float, row), strict=True))):
                fired += 1
                break
    assert fired == 0
    # The commissioning outgrew its 15 minutes (90 intervals) only as far as the means needed.
    assert min(lengths) >= cfg.min_commission and max(lengths) <= 4 * 90


def test_a_bias_of_one_scale_unit_alarms_within_100_intervals() -> None:
    """After commissioning, one CV's innovations take a standing bias of one unit of the trend
    test's scale (here its long-run std, about 1.4 card RMSE with lag-1 autocorrelation 0.3; a
    ramp the offset-free observer absorbs leaves such a bias): twice the allowance, so the
    CUSUM climbs about 0.5 per interval to a threshold under 30: about 60 intervals (10 plant
    minutes on the four_tank), under 100 with the noise."""
    cfg = DriftConfig()
    for seed in range(5):
        rng = np.random.default_rng(200 + seed)
        x = _innovations(600, rng, std=CARD, rho=0.3)
        bias, k = _commission(x, cfg)
        assert bias.threshold < 2 * cfg.max_delay_factor * 15
        x[k:, 2] += bias.std["h3"]
        fired = next(
            (
                i
                for i, row in enumerate(x[k:])
                if bias.update(dict(zip(CVS, map(float, row), strict=True)))
            ),
            None,
        )
        assert fired is not None and fired < 100, (seed, fired, bias.threshold)
        assert bias.worst() == "h3"


def test_a_quiet_loop_is_judged_at_the_card_scale() -> None:
    """Innovations a tenth of the card's RMSE (a quiet closed loop) are scaled at the card's
    RMSE: commissioning ends within a few predictions of its minimum, and a bias of a third of the card (three times the
    live std, which the old unfloored scale called significant) raises no alarm."""
    cfg = DriftConfig()
    rng = np.random.default_rng(7)
    x = _innovations(3000, rng, std=0.1 * CARD, rho=0.3)
    bias, k = _commission(x, cfg)
    assert k <= 2 * cfg.min_commission
    assert bias.std == pytest.approx(dict.fromkeys(CVS, CARD))
    x[k:, 0] += CARD / 3
    assert not any(bias.update(dict(zip(CVS, map(float, r), strict=True))) for r in x[k:])
