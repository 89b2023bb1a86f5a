"""The default recipe lets the data decide whether the latent leads with the CVs as measured
(few training windows per window value: yes); then its size follows the plant's CV count, the
now-cast is the latest measurement at any operating point, and it survives a checkpoint round
trip."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from twin.data import DataConfig, Normalizer, PlantSeries
from twin.model.net import JepaNet
from twin.model.twin_model import TwinModel
from twin.train import measured_latent_for
from twin.train_presets import train_configs

from .conftest import linear_spec, simulate_linear


def test_the_data_decides_whether_the_latent_leads_with_the_measured_cvs():
    model_cfg, data_cfg, _ = train_configs(device="cpu", seed=0)
    assert model_cfg.measured_latent is None  # left to the data
    spec = linear_spec()  # 4 tags, 15-sample windows: 60 values per window
    long = PlantSeries(simulate_linear(1.0, seed=0), spec, data_cfg)  # ~2350 training windows
    short = PlantSeries(simulate_linear(0.25, seed=0), spec, data_cfg)  # ~460
    assert not measured_latent_for(long, data_cfg.horizon)
    assert measured_latent_for(short, data_cfg.horizon)
    quick, _, _ = train_configs(device="cpu", seed=0, quick=True)
    assert quick.measured_latent is False  # the quick twin keeps its tiny learned latent


def _measured_twin() -> TwinModel:
    spec = linear_spec()  # tags y1, y2 (CVs), d (DV), u (MV)
    model_cfg, _, _ = train_configs(device="cpu", seed=0)
    model_cfg = replace(model_cfg, measured_latent=True)  # as the data decides for a short history
    window = 10
    cv_idx = [spec.tag_names.index(t.name) for t in spec.cvs]
    torch.manual_seed(0)
    net = JepaNet(model_cfg, window, 4, 1, 2, cv_idx)
    norm = Normalizer(
        spec.tag_names, np.array([1.0, 2.0, 0.0, 0.5]), np.array([2.0, 3.0, 1.0, 1.5])
    )
    return TwinModel(net, norm, {t.name: t.role for t in spec.tags}, window, 5, DataConfig())


def test_latent_size_is_the_cv_count_plus_the_learned_part():
    model_cfg, _, _ = train_configs(device="cpu", seed=0)
    tw = _measured_twin()
    z = tw.encode(torch.randn(3, tw.window, 4))
    assert z.shape == (3, len(tw.cv_names) + model_cfg.latent_dim)


def test_nowcast_is_the_latest_measurement_even_far_outside_the_training_range():
    tw = _measured_twin()
    window = torch.randn(4, tw.window, 4) * 3
    window[1] *= 1000.0  # an operating point nothing was trained on
    mask = torch.ones_like(window, dtype=torch.bool)
    mask[2, -1, 0] = False  # y1's last sample missing: the one before it is the latest
    mask[3, :, 1] = False  # y2 never measured in the window: the training mean
    y, q = tw.readout(tw.encode(window, mask))
    expect = window[:, -1, :2].clone()
    expect[2, 0] = window[2, -2, 0]
    expect[3, 1] = 2.0
    torch.testing.assert_close(y, expect, rtol=1e-5, atol=1e-3)
    assert torch.all(q[..., 0] <= y + 1e-4) and torch.all(y <= q[..., 1] + 1e-4)


def test_measured_coordinates_survive_a_checkpoint():
    tw = _measured_twin()
    x = tw.normalise_window(torch.randn(300, tw.window, 4))
    tw.set_ood_reference(x[:200], x[200:])
    back = TwinModel.from_checkpoint(tw.checkpoint())
    window = torch.randn(5, tw.window, 4)
    u = torch.randn(5, 3, 1)
    torch.testing.assert_close(back.encode(window), tw.encode(window))
    torch.testing.assert_close(
        back.readout(back.rollout(back.encode(window), u))[0],
        tw.readout(tw.rollout(tw.encode(window), u))[0],
    )
