"""Action-conditioned latent predictor z_{t+1} = f(z_t, a_t), rolled out autoregressively."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn


class Predictor(nn.Module):
    """Residual MLP on [z, a]: the next latent is the current one plus a learned change.

    The residual form makes "nothing happens" the easy default over one interval, which keeps
    long rollouts stable; a linear term next to the MLP captures the linear part of the
    dynamics exactly. Concatenation (rather than AdaLN) is enough at this size.

    One step is written once, in `_step`, on the layers' tensors: a rollout calls it H times,
    and calling the layers as modules cost more than their arithmetic at the planner's batch
    sizes (on one thread, 78 us a step for one plan, most of it module dispatch). The modules
    stay for their parameters and state-dict keys; the arithmetic is the modules' own
    (F.linear, exact GELU, the same order of additions), so the results are the same bits.
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
        return _step(z, a, self._tensors())

    def rollout(
        self, z: torch.Tensor, a: torch.Tensor, drift: torch.Tensor | None = None
    ) -> torch.Tensor:
        """z (B, D), a (B, H, A) -> (B, H, D) latents after each step; `drift` (D,) or (B, D),
        when given, is added after every step (the planner's latent disturbance estimate)."""
        tensors = self._tensors()
        out = []
        for k in range(a.shape[1]):
            z = _step(z, a[:, k], tensors)
            if drift is not None:
                z = z + drift
            out.append(z)
        return torch.stack(out, dim=1)

    def _tensors(self) -> tuple[torch.Tensor, ...]:
        """The step's weights and biases, in `_step`'s order."""
        first, second, last = (cast(nn.Linear, self.net[i]) for i in (0, 2, 4))
        return (
            self.linear.weight,
            first.weight,
            first.bias,
            second.weight,
            second.bias,
            last.weight,
            last.bias,
        )


def _step(z: torch.Tensor, a: torch.Tensor, tensors: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """One predictor step on its tensors (Predictor._tensors): z + linear(za) + mlp(za)."""
    w_lin, w1, b1, w2, b2, w3, b3 = tensors
    za = torch.cat([z, a], dim=-1)
    h = F.gelu(F.linear(za, w1, b1))
    h = F.gelu(F.linear(h, w2, b2))
    return z + F.linear(za, w_lin) + F.linear(h, w3, b3)
