"""Readout heads: latent z -> CV mean and quantiles (normalised units inside the net)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ReadoutHead(nn.Module):
    """One MLP that outputs, per CV, the mean and a non-negative offset per quantile level.

    Quantiles below 0.5 sit below the mean and those above 0.5 above it, so the bands never
    cross the mean whatever the weights. With `n_measured` (= n_cv) the latent's leading
    coordinates are the CVs themselves and the mean is read from them; the MLP gives the
    quantile offsets only.
    """

    sign: torch.Tensor
    """(n_q,) buffer: -1 below the median, +1 above it, 0 at it."""

    def __init__(
        self,
        latent_dim: int,
        hidden: int,
        n_cv: int,
        quantiles: tuple[float, ...],
        n_measured: int = 0,
    ) -> None:
        super().__init__()
        if n_measured not in (0, n_cv):
            raise ValueError(f"n_measured must be 0 or n_cv ({n_cv}), got {n_measured}")
        self.n_cv = n_cv
        self.n_q = len(quantiles)
        self.n_measured = n_measured
        self.n_out = self.n_q + (0 if n_measured else 1)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.GELU(), nn.Linear(hidden, n_cv * self.n_out)
        )
        # The linear part of the mean, exact and cheap (not needed when the mean is measured).
        self.linear = None if n_measured else nn.Linear(latent_dim, n_cv)
        sign = torch.tensor([(-1.0 if q < 0.5 else 1.0 if q > 0.5 else 0.0) for q in quantiles])
        self.register_buffer("sign", sign)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (..., D) -> mean (..., n_cv), quantiles (..., n_cv, n_q)."""
        out = self.net(z).unflatten(-1, (self.n_cv, self.n_out))  # (..., n_cv, n_out)
        if self.linear is None:
            mean = z[..., : self.n_measured]
        else:
            mean, out = out[..., 0] + self.linear(z), out[..., 1:]
        q = mean.unsqueeze(-1) + self.sign * F.softplus(out)
        return mean, q
