"""SIGReg: near zero for Gaussian latents, large for collapsed or anisotropic ones, differentiable."""

from __future__ import annotations

import torch

from twin.model.sigreg import correlated_gaussian_level, epps_pulley, gaussian_floor, sigreg


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_gaussian_is_near_its_finite_sample_floor():
    z = torch.randn(1024, 32, generator=_gen(1))
    value = float(sigreg(z, 128, None, _gen(2)))
    floor = gaussian_floor(1024)
    assert value < 3 * floor
    assert value < 0.005


def test_collapsed_constant_and_anisotropic_are_large():
    g = _gen(3)
    gauss = float(sigreg(torch.randn(512, 32, generator=g), 128, None, g))
    collapsed = torch.ones(512, 32) * 0.7  # every latent the same point
    zeros = torch.zeros(512, 32)
    line = torch.randn(512, 1, generator=g) * torch.randn(1, 32, generator=g)  # rank one
    squashed = torch.randn(512, 32, generator=g) * 0.05  # isotropic but far too small
    stretched = torch.randn(512, 32, generator=g)
    stretched[:, :4] *= 10.0  # strongly anisotropic
    for z in (collapsed, zeros, line, squashed, stretched):
        assert float(sigreg(z, 128, None, g)) > 20 * gauss


def test_epps_pulley_matches_closed_form_for_a_point_mass():
    # ECF of a point mass at 0 is 1: distance = sum_t w(t) (1 - exp(-t^2/2))^2.
    t = torch.linspace(0, 3, 17, dtype=torch.float64)
    dt = t[1] - t[0]
    trap = torch.full_like(t, float(dt))
    trap[0] = trap[-1] = dt / 2
    expected = float((2 * trap * torch.exp(-0.5 * t**2) * (1 - torch.exp(-0.5 * t**2)) ** 2).sum())
    got = float(epps_pulley(torch.zeros(100, 1))[0])
    assert abs(got - expected) < 1e-5


def test_gradients_flow_and_descent_spreads_a_collapsed_cloud():
    z = (torch.randn(256, 16, generator=_gen(4)) * 0.01).requires_grad_()
    opt = torch.optim.SGD([z], lr=100.0)
    start = float(sigreg(z.detach(), 64, None, _gen(5)))
    for i in range(80):
        loss = sigreg(z, 64, None, _gen(100 + i))  # fresh projections each step
        opt.zero_grad()
        loss.backward()
        assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
        opt.step()
    end = float(sigreg(z.detach(), 64, None, _gen(5)))
    assert end < start / 5
    assert z.detach().std(0).mean() > 0.3


def test_float32_and_fresh_projections():
    z = torch.randn(300, 8, dtype=torch.float64, generator=_gen(6))
    a = sigreg(z, 16, None, _gen(7))
    b = sigreg(z, 16, None, _gen(8))
    assert a.dtype == torch.float32
    assert float(a) != float(b)  # different random directions
    sub = sigreg(torch.randn(5000, 8, generator=_gen(9)), 16, 256, _gen(10))
    assert torch.isfinite(sub)


def _ar1(n: int, d: int, rho: float, g: torch.Generator) -> torch.Tensor:
    """n consecutive samples of d independent stationary AR(1) series, each exactly N(0, 1)."""
    e = torch.randn(n, d, generator=g)
    z = torch.empty(n, d)
    z[0] = e[0]
    for i in range(1, n):
        z[i] = rho * z[i - 1] + (1 - rho**2) ** 0.5 * e[i]
    return z


def test_time_correlated_gaussian_latents_sit_above_the_iid_floor():
    # Why the held-out statistic cannot reach the iid floor: overlapping windows of a slow plant
    # give time-correlated latents. Each coordinate here is exactly N(0, 1) (a stationary AR(1)
    # process), yet the statistic of 847 consecutive samples, the cstr held-out block's count,
    # sits far above gaussian_floor(847) once neighbours are correlated.
    g = _gen(11)
    n, d = 847, 16
    z = _ar1(n, d, 0.98, g)
    iid = float(sigreg(torch.randn(n, d, generator=g), 256, None, _gen(12)))
    correlated = float(sigreg(z, 256, None, _gen(12)))
    assert iid < 2 * gaussian_floor(n)
    assert correlated > 5 * gaussian_floor(n)


def test_the_correlated_level_is_what_a_gaussian_process_scores_on_its_own_series():
    # An exactly Gaussian AR(1) latent scores near its correlated level (the estimate runs up to
    # 2x low), far above the iid floor; independent samples give about the iid floor.
    g = _gen(21)
    n, d = 847, 16
    z = _ar1(n, d, 0.98, g)
    level = correlated_gaussian_level(z, 256, None)
    assert level > 10 * gaussian_floor(n)
    assert level <= float(sigreg(z, 256, None, _gen(22))) < 3 * level
    iid = correlated_gaussian_level(torch.randn(n, d, generator=g), 256, None)
    assert 0.5 * gaussian_floor(n) < iid < 2 * gaussian_floor(n)
