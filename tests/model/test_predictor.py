"""The predictor's step function is its layers' own arithmetic (up to float rounding: the action's
share of the first layer is taken for the whole horizon before the loop)."""

from __future__ import annotations

import torch

from twin.model.predictor import Predictor


def _as_modules(p: Predictor, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """One step with the layers called as modules: z + linear([z, a]) + mlp([z, a])."""
    za = torch.cat([z, a], dim=-1)
    return z + p.linear(za) + p.net(za)


def test_step_and_rollout_equal_the_layers_called_as_modules_up_to_rounding():
    torch.manual_seed(0)
    p = Predictor(latent_dim=12, action_dim=5, hidden=24)
    torch.nn.init.normal_(p.linear.weight, std=0.1)  # zero at init: give it a value to check
    z0, a = torch.randn(9, 12), torch.randn(9, 7, 5)
    drift = torch.randn(12) * 0.01
    close = {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(p(z0, a[:, 0]), _as_modules(p, z0, a[:, 0]), **close)
    z, expected = z0, []
    for k in range(a.shape[1]):
        z = _as_modules(p, z, a[:, k]) + drift
        expected.append(z)
    torch.testing.assert_close(p.rollout(z0, a, drift), torch.stack(expected, dim=1), **close)


def test_gradients_reach_every_layer_through_the_step_function():
    torch.manual_seed(1)
    p = Predictor(latent_dim=6, action_dim=3, hidden=8)
    p.rollout(torch.randn(4, 6), torch.randn(4, 5, 3)).square().sum().backward()
    grads = {name: param.grad for name, param in p.named_parameters()}
    assert set(grads) == {
        "linear.weight",
        "net.0.weight",
        "net.0.bias",
        "net.2.weight",
        "net.2.bias",
        "net.4.weight",
        "net.4.bias",
    }
    assert all(g is not None and bool(g.abs().sum() > 0) for g in grads.values())


def test_a_rollout_from_an_inference_latent_differentiates_by_its_actions():
    """The planner's autograd refinement: the latent is encoded under inference_mode, the
    actions carry the gradient; it must match the layers called as modules."""
    torch.manual_seed(2)
    p = Predictor(latent_dim=6, action_dim=3, hidden=8)
    torch.nn.init.normal_(p.linear.weight, std=0.1)
    with torch.inference_mode():
        z0 = torch.randn(4, 6)
    a = torch.randn(4, 5, 3, requires_grad=True)
    (grad,) = torch.autograd.grad(p.rollout(z0, a).square().sum(), a)
    z, expected = z0.clone(), []
    for k in range(a.shape[1]):
        z = _as_modules(p, z, a[:, k])
        expected.append(z)
    (want,) = torch.autograd.grad(torch.stack(expected, dim=1).square().sum(), a)
    torch.testing.assert_close(grad, want, rtol=1e-5, atol=1e-6)
