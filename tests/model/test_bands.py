"""Calibrated quantile bands: the conformal shift per CV and rollout step reaches the coverage
it is fitted for on fresh data, keeps the bands on their side of the mean, and reaches the
readout verb by rollout step."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from twin.data import PlantSeries
from twin.model.calibration import BandCalibration
from twin.train import train_series

from .conftest import linear_spec, simulate_linear, tiny_configs


def _residual_world(n: int, rng: np.random.Generator):
    """Mean 0, a too-narrow band of +-0.5, truth with spread growing by step: 0.3, 0.6, ... ."""
    steps, n_cv = 4, 2
    spread = 0.3 * np.arange(1, steps + 1)[None, :, None]
    target = torch.as_tensor(rng.standard_normal((n, steps, n_cv)) * spread, dtype=torch.float32)
    mean = torch.zeros(n, steps, n_cv)
    q = torch.stack([mean - 0.5, mean + 0.5], dim=-1)
    return mean, q, target


def test_conformal_shift_reaches_its_coverage_at_every_step():
    rng = np.random.default_rng(0)
    cal = BandCalibration(2, 2)
    mean, q, target = _residual_world(3000, rng)
    cal.fit(mean, q, target, torch.ones_like(target, dtype=torch.bool), (0.05, 0.95))
    mean, q, target = _residual_world(3000, rng)
    steps = torch.arange(4).expand(3000, 4)
    qc = cal(mean, q, steps)
    inside = ((target >= qc[..., 0]) & (target <= qc[..., 1])).float().mean(dim=(0, 2))
    raw = ((target >= q[..., 0]) & (target <= q[..., 1])).float().mean(dim=(0, 2))
    assert raw[-1] < 0.5  # the uncalibrated band is far too narrow at the last step
    assert torch.all(inside > 0.8) and torch.all(inside < 0.97), inside
    assert torch.all(qc[..., 0] <= mean) and torch.all(qc[..., 1] >= mean)


@pytest.mark.timeout(120)
def test_trained_twin_reports_band_coverage_and_ood_rates():
    spec = linear_spec()
    model_cfg, data_cfg, cfg = tiny_configs()
    series = PlantSeries(simulate_linear(1.5, noise=0.05, seed=7), spec, data_cfg)
    out = train_series(series, model_cfg, replace(cfg, epochs=8))
    bands = out.report["bands"]
    for h in map(str, out.report["horizons"]):
        assert set(bands["coverage"][h]) == {"y1", "y2"}
        assert 0.7 <= bands["coverage_mean"][h] <= 1.0, (h, bands["coverage_mean"])
        assert bands["pinball_mean"][h] > 0
    ood = out.report["ood"]
    assert ood["false_alarm_target"] == cfg.ood_false_alarm
    assert 0 <= ood["false_alarm"] <= 0.1
    assert set(ood["detection"]) == {"stuck", "drift", "bias"}
    assert set(ood["detection_margin"]) == set(ood["detection"])
    for kind, rate in ood["detection"].items():  # the median onset detected <=> margin > 1
        assert (ood["detection_margin"][kind] > 1) == (rate > 0.5) or rate == 0.5, kind
    # The readout verb applies the shift by rollout step: a rollout's band is wider than now's.
    tw = out.twin
    z0 = tw.net.encode(series.batch(series.anchors("test", 1)[:4], 1).windows[:, 0])
    zs = z0.unsqueeze(1).expand(4, 5, -1)  # the same latent read at steps 1..5
    _, q_now = tw.readout(z0)
    _, q_roll = tw.readout(zs.contiguous())
    width_now = (q_now[..., 1] - q_now[..., 0]).mean()
    width_5 = (q_roll[:, -1, :, 1] - q_roll[:, -1, :, 0]).mean()
    assert width_5 > width_now
