"""Window encoder: the last W samples of every tag (values + mask) -> latent z."""

from __future__ import annotations

import torch
from torch import nn


class WindowEncoder(nn.Module):
    """MLP over the flattened window, then a BatchNorm projector; no LayerNorm at the end.

    A linear skip from the window is added to the projector's output. The latent is what SIGReg
    shapes towards N(0, I); a final LayerNorm would pin every latent's norm and fight that target.

    With `n_measured` > 0 the latent starts with that many measured coordinates: the latest
    measured value in the window of each tag in `measured_idx` (0, the training mean, when the
    window holds none), followed by latent_dim - n_measured learned ones.
    """

    measured_idx: torch.Tensor
    """(n_measured,) long buffer, when n_measured > 0: the window columns (tags) whose latest
    values lead the latent."""

    def __init__(
        self,
        window: int,
        n_tags: int,
        hidden: int,
        latent_dim: int,
        batchnorm: bool = True,
        measured_idx: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.n_tags = n_tags
        self.n_measured = len(measured_idx or [])
        if self.n_measured:  # only then, so that checkpoints from before it load unchanged
            self.register_buffer("measured_idx", torch.tensor(measured_idx, dtype=torch.long))
        learned = latent_dim - self.n_measured
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
            nn.Linear(hidden, learned),
        )
        # A linear path from the window keeps the (nearly) linear part of the plant's state,
        # e.g. the latest levels, exact and easy to fit; the MLP adds what is not linear.
        self.skip = nn.Linear(window * 2 * n_tags, learned, bias=False)

    def measured(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, W, 2 n_tags) -> (B, n_measured) latest measured normalised values."""
        vals = x[..., : self.n_tags][..., self.measured_idx]  # (B, W, m)
        seen = x[..., self.n_tags :][..., self.measured_idx] > 0.5  # (B, W, m)
        order = torch.arange(1, x.shape[1] + 1, device=x.device).view(1, -1, 1)
        last = (seen * order).argmax(dim=1, keepdim=True)  # (B, 1, m); 0 when none is seen
        return vals.gather(1, last).squeeze(1)  # missing values are 0 in x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, W, 2 n_tags) normalised values and mask -> z (B, D)."""
        z = self.projector(self.backbone(x)) + self.skip(x.flatten(1))  # (B, D - m)
        if not self.n_measured:
            return z
        return torch.cat([self.measured(x), z], dim=-1)
