"""Window encoder: the last W samples of every tag (values + mask) -> latent z."""

from __future__ import annotations

import torch
from torch import nn


class WindowEncoder(nn.Module):
    """MLP over the flattened window, then a BatchNorm projector; no LayerNorm at the end.

    A linear skip from the window is added to the projector's output. The latent is what SIGReg shapes towards N(0, I); a final LayerNorm would pin
    every latent's norm and fight that target.
    """

    def __init__(
        self, window: int, n_tags: int, hidden: int, latent_dim: int, batchnorm: bool = True
    ) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Flatten(),
            nn.Linear(window * 2 * n_tags, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
        )
        self.projector = nn.Sequential(
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden) if batchnorm else nn.Identity(),
            nn.GELU(),
            nn.Linear(hidden, latent_dim),
        )
        # A linear path from the window keeps the (nearly) linear part of the plant's state,
        # e.g. the latest levels, exact and easy to fit; the MLP adds what is not linear.
        self.skip = nn.Linear(window * 2 * n_tags, latent_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, W, 2 n_tags) normalised values and mask -> z (B, D)."""
        return self.projector(self.backbone(x)) + self.skip(x.flatten(1))
