"""Readout heads: latent z -> CV mean and quantiles (normalised units inside the net)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ReadoutHead(nn.Module):
    """One MLP that outputs, per CV, the mean and a non-negative offset per quantile level.

    Quantiles below 0.5 sit below the mean and those above 0.5 above it, so the bands never
    cross the mean whatever the weights.
    """

    sign: torch.Tensor
    """(n_q,) buffer: -1 below the median, +1 above it, 0 at it."""

    def __init__(
        self, latent_dim: int, hidden: int, n_cv: int, quantiles: tuple[float, ...]
    ) -> None:
        super().__init__()
        self.n_cv = n_cv
        self.n_q = len(quantiles)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.GELU(), nn.Linear(hidden, n_cv * (1 + self.n_q))
        )
        self.linear = nn.Linear(latent_dim, n_cv)  # the linear part of the mean, exact and cheap
        sign = torch.tensor([(-1.0 if q < 0.5 else 1.0 if q > 0.5 else 0.0) for q in quantiles])
        self.register_buffer("sign", sign)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (..., D) -> mean (..., n_cv), quantiles (..., n_cv, n_q)."""
        out = self.net(z).unflatten(-1, (self.n_cv, 1 + self.n_q))  # (..., n_cv, 1+n_q)
        mean = out[..., 0] + self.linear(z)
        q = mean.unsqueeze(-1) + self.sign * F.softplus(out[..., 1:])
        return mean, q
