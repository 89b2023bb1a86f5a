"""SIGReg: Sketched Isotropic Gaussian Regularisation (LeJEPA, arXiv 2511.08544).

The latents of a batch are projected on fresh random unit directions; each 1-D projection is
compared with N(0, 1) by the Epps-Pulley statistic, a weighted L2 distance between the
empirical characteristic function (ECF) and the Gaussian one:

    EP = N * integral |phi_N(t) - exp(-t^2/2)|^2 w(t) dt,   w(t) = exp(-t^2/2)

By the Cramer-Wold theorem, all 1-D projections being N(0, 1) means the latents are N(0, I),
which rules out collapse (a constant or low-rank cloud is far from Gaussian along most
directions) without an EMA teacher or stop-gradient.

We return the mean over projections of EP / N (the distance itself): it is about 1/N for
Gaussian samples, O(1) for collapsed ones, and its scale, hence lambda, does not depend on
the batch size. Multiply by N for the test statistic of the paper.
"""

from __future__ import annotations

import math

import numpy as np
import torch

# The integrand is even in t (the ECF of real data is conjugate-symmetric), so we integrate
# over [0, T_MAX] and double. Beyond t = 3 the Gaussian weight is below 1.1 % and the ECF of
# a finite sample is noise, as in the paper's default quadrature.
T_MAX = 3.0
N_POINTS = 17
EPS = 1e-6


def _quadrature(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    t = torch.linspace(0.0, T_MAX, N_POINTS, device=device, dtype=torch.float32)  # (P,)
    dt = T_MAX / (N_POINTS - 1)
    trap = torch.full_like(t, dt)
    trap[0] = trap[-1] = dt / 2
    gauss_cf = torch.exp(-0.5 * t**2)  # (P,) CF of N(0,1), also the weight w(t)
    weights = 2.0 * trap * gauss_cf  # (P,) doubled for the negative half-line
    return t, gauss_cf, weights


def epps_pulley(x: torch.Tensor) -> torch.Tensor:
    """Epps-Pulley distance (statistic / N) of each column of x (N, K) against N(0, 1) -> (K,)."""
    x = x.float()
    t, gauss_cf, weights = _quadrature(x.device)
    xt = x.unsqueeze(-1) * t  # (N, K, P)
    ecf_re = torch.cos(xt).mean(0)  # (K, P)
    ecf_im = torch.sin(xt).mean(0)  # (K, P)
    err = (ecf_re - gauss_cf) ** 2 + ecf_im**2  # (K, P)
    return err @ weights  # (K,)


def random_directions(
    dim: int, num: int, device: torch.device, generator: torch.Generator | None = None
) -> torch.Tensor:
    """num random unit vectors in R^dim as columns (dim, num)."""
    a = torch.randn(dim, num, device=device, dtype=torch.float32, generator=generator)
    return a / (a.norm(dim=0, keepdim=True) + EPS)


def sigreg(
    z: torch.Tensor,
    num_projections: int = 128,
    max_samples: int | None = 256,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """SIGReg of latents z (N, D): mean Epps-Pulley distance over fresh random projections.

    A subset of at most max_samples rows is used (sampled afresh) to keep the cost linear in
    a few hundred latents x num_projections, whatever the batch size. Computed in float32.
    """
    if z.dim() != 2:
        raise ValueError(f"sigreg expects latents of shape (N, D), got {tuple(z.shape)}")
    z = z.float()
    n = z.shape[0]
    if max_samples is not None and n > max_samples:
        idx = torch.randperm(n, device=z.device, generator=generator)[:max_samples]
        z = z[idx]
    directions = random_directions(z.shape[1], num_projections, z.device, generator)  # (D, K)
    return epps_pulley(z @ directions).mean()


def gaussian_floor(n: int) -> float:
    """Expected sigreg() of n exact N(0, I) samples: sum_t w(t)(1 - exp(-t^2)) / n."""
    t = torch.linspace(0.0, T_MAX, N_POINTS, dtype=torch.float64)
    dt = T_MAX / (N_POINTS - 1)
    trap = torch.full_like(t, dt)
    trap[0] = trap[-1] = dt / 2
    val = (2 * trap * torch.exp(-0.5 * t**2) * (1 - torch.exp(-(t**2)))).sum().item()
    return val / n if n > 0 else math.inf


def correlated_gaussian_level(
    z: torch.Tensor, projections: int, samples: int | None, draws: int = 5, seed: int = 0
) -> float:
    """What sigreg() gives for a latent whose every projection is exactly N(0, 1) but which moves
    in time as `z` does (rows in time order): the mean over `draws` Gaussian surrogates of z.

    Held-out latents come from overlapping windows of a slow plant, so they are not independent
    samples, and even an exactly Gaussian process scores above gaussian_floor() on them. Each
    surrogate whitens z (its mean and covariance removed), then gives every column a stationary
    Gaussian series with that column's power spectrum (Fourier amplitudes kept, phases and
    magnitudes drawn afresh), so the sample mean and variance fluctuate as they would for such a
    process. The estimate is on the low side: on AR(1) test series with known correlation it
    came out up to 2x low (benchmarks/predict_sigreg.py)."""
    u = z.detach().double().cpu().numpy()
    if len(u) < 4:
        return math.inf
    u = whiten(u)
    rng = np.random.default_rng(seed)
    levels = []
    for k in range(draws):
        g = torch.from_numpy(gaussian_surrogate(u, rng)).float()
        gen = torch.Generator().manual_seed(k)
        levels.append(float(sigreg(g, projections, samples, gen)))
    return float(np.mean(levels))


def whiten(z: np.ndarray) -> np.ndarray:
    """Remove the sample mean and covariance (ZCA); near-null directions stay near zero."""
    c = z - z.mean(0)
    w, v = np.linalg.eigh(np.atleast_2d(np.cov(c, rowvar=False)))
    inv = np.where(w > 1e-9 * w.max(), 1.0 / np.sqrt(np.maximum(w, 1e-30)), 0.0)
    return c @ v @ np.diag(inv) @ v.T


def gaussian_surrogate(u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A stationary Gaussian series per column with the power spectrum of u's column (the mean
    term gets its lowest frequency's amplitude)."""
    f = np.abs(np.fft.rfft(u, axis=0))
    f[0] = f[1]
    coef = f * (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) / np.sqrt(2)
    coef[0] = f[0] * rng.standard_normal(f.shape[1])
    return np.fft.irfft(coef, n=len(u), axis=0)
