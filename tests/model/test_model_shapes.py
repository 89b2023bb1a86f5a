"""The world-model verbs: shapes, engineering units, quantile order, gradients, checkpoints."""

from __future__ import annotations

import numpy as np
import torch

from twin.data import DataConfig, Normalizer
from twin.model.config import ModelConfig
from twin.model.net import JepaNet
from twin.model.ood import DESIGN_FALSE_ALARM, FALSE_ALARM_LIMIT
from twin.model.twin_model import TwinModel

from .conftest import linear_spec


def _twin(latent: int = 16) -> TwinModel:
    spec = linear_spec()
    cfg = ModelConfig(latent_dim=latent, hidden=32, action_dim=8, readout_hidden=16)
    window = 10
    net = JepaNet(cfg, window, 4, 1, 2)
    norm = Normalizer(
        spec.tag_names, np.array([1.0, 2.0, 0.0, 0.5]), np.array([2.0, 3.0, 1.0, 1.5])
    )
    roles = {t.name: t.role for t in spec.tags}
    return TwinModel(net, norm, roles, window, 5, DataConfig(), "v001")


def test_verbs_have_documented_shapes():
    tw = _twin()
    assert (
        tw.cv_names == ["y1", "y2"]
        and tw.mv_names == ["u"]
        and tw.tag_names == ["y1", "y2", "d", "u"]
    )
    window = torch.randn(6, tw.window, 4) * 3
    mask = torch.ones(6, tw.window, 4, dtype=torch.bool)
    z = tw.encode(window, mask)
    assert z.shape == (6, 16)
    assert tw.predict(z, torch.full((6, 1), 0.5)).shape == (6, 16)
    zs = tw.rollout(z, torch.zeros(6, 7, 1))
    assert zs.shape == (6, 7, 16)
    y, q = tw.readout(zs)
    assert y.shape == (6, 7, 2) and q.shape == (6, 7, 2, 2)
    assert tw.quantile_levels == (0.05, 0.95)
    assert torch.all(q[..., 0] <= y + 1e-6) and torch.all(y <= q[..., 1] + 1e-6)
    assert tw.ood_score(z).shape == (6,)


def test_missing_samples_are_masked_not_used():
    tw = _twin()
    window = torch.randn(2, tw.window, 4)
    mask = torch.ones_like(window, dtype=torch.bool)
    mask[:, 3, 0] = False
    a = tw.encode(window, mask)
    window2 = window.clone()
    window2[:, 3, 0] = float("nan")  # a NaN where the mask says missing changes nothing
    b = tw.encode(window2, mask)
    assert torch.allclose(a, b)
    c = tw.encode(window2, None)  # NaN alone also counts as missing
    assert torch.allclose(a, c)


def test_rollout_is_differentiable_in_the_actions():
    tw = _twin()
    z = tw.encode(torch.randn(3, tw.window, 4))
    u = torch.zeros(3, 5, 1, requires_grad=True)
    y, _ = tw.readout(tw.rollout(z, u))
    y[:, -1, 0].sum().backward()
    assert u.grad is not None and torch.isfinite(u.grad).all()


def test_predictor_consistency_rollout_equals_repeated_predict():
    tw = _twin()
    z = tw.encode(torch.randn(2, tw.window, 4))
    u = torch.randn(2, 3, 1)
    zs = tw.rollout(z, u)
    step = z
    for k in range(3):
        step = tw.predict(step, u[:, k])
        assert torch.allclose(step, zs[:, k], atol=1e-5)


def test_checkpoint_round_trip_reproduces_outputs():
    tw = _twin()
    windows = torch.randn(300, tw.window, 4)
    x = tw.normalise_window(windows)
    tw.set_ood_reference(x[:200], x[200:])
    ckpt = tw.checkpoint()
    back = TwinModel.from_checkpoint(ckpt)
    window = torch.randn(4, tw.window, 4)
    assert torch.allclose(tw.encode(window), back.encode(window))
    assert torch.allclose(tw.ood_ratio(window), back.ood_ratio(window))
    _, q = tw.readout(tw.rollout(tw.encode(window), torch.zeros(4, 3, 1)))
    _, q_back = back.readout(back.rollout(back.encode(window), torch.zeros(4, 3, 1)))
    assert torch.allclose(q, q_back)
    assert back.ood_threshold == tw.ood_threshold and back.version == "v001"
    assert back.ood_false_alarm == tw.ood_false_alarm == DESIGN_FALSE_ALARM < FALSE_ALARM_LIMIT
    assert back.normalizer.tags == tw.normalizer.tags


def test_a_drifting_rollout_is_one_predict_per_interval_plus_the_drift():
    """The planner's disturbed rollout in one call (Drifting) is the per-interval arithmetic."""
    from twin.plan.observer import Drifting, rollout_disturbed

    tw = _twin()
    tw.eval()
    dim = tw.net.predictor.linear.out_features
    z = torch.randn(5, dim)
    u = torch.randn(5, 7, 1) * 2 + 3
    drift = 0.1 * torch.randn(dim)
    step, by_step = z, []
    with torch.no_grad():
        for k in range(u.shape[1]):
            step = tw.predict(step, u[:, k]) + drift
            by_step.append(step)
        one_call = rollout_disturbed(tw, z, u, drift)
    assert isinstance(tw, Drifting)
    torch.testing.assert_close(one_call, torch.stack(by_step, dim=1), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(one_call, tw.rollout(z, u))  # the drift is in it
