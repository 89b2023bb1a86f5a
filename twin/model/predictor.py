"""Action-conditioned latent predictor z_{t+1} = f(z_t, a_t), rolled out autoregressively."""

from __future__ import annotations

import torch
from torch import nn


class Predictor(nn.Module):
    """Residual MLP on [z, a]: the next latent is the current one plus a learned change.

    The residual form makes "nothing happens" the easy default over one interval, which keeps
    long rollouts stable; a linear term next to the MLP captures the linear part of the
    dynamics exactly. Concatenation (rather than AdaLN) is enough at this size.
    """

    def __init__(self, latent_dim: int, action_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim + action_dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, latent_dim),
        )
        self.linear = nn.Linear(latent_dim + action_dim, latent_dim, bias=False)
        # Start as "nothing changes": a random linear term compounds over a 30-step rollout.
        nn.init.zeros_(self.linear.weight)

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """z (B, D), a (B, A) action embedding -> z_next (B, D)."""
        za = torch.cat([z, a], dim=-1)
        return z + self.linear(za) + self.net(za)

    def rollout(
        self, z: torch.Tensor, a: torch.Tensor, drift: torch.Tensor | None = None
    ) -> torch.Tensor:
        """z (B, D), a (B, H, A) -> (B, H, D) latents after each step; `drift` (D,) or (B, D),
        when given, is added after every step (the planner's latent disturbance estimate)."""
        out = []
        for k in range(a.shape[1]):
            z = self(z, a[:, k])
            if drift is not None:
                z = z + drift
            out.append(z)
        return torch.stack(out, dim=1)
