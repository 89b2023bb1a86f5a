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

    The rollout is written once, in `_steps`, on the layers' tensors (a step is its H = 1
    case): calling the layers as modules cost more than their arithmetic at the planner's batch
    sizes (on one thread, 78 us a step for one plan, most of it module dispatch). The first
    layer and the linear term are split into their latent and action columns: the action's
    part of both (with the biases and the drift) is computed for the whole horizon before the
    loop, and the latent's part of both is one matrix product per step, so a step does no
    concatenation and one product fewer. The sum is the same as on [z, a] up to float rounding
    (about 1e-7 relative), not the same bits. The modules stay for their parameters and
    state-dict keys.
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
        return self.rollout(z, a[:, None])[:, 0]

    def rollout(
        self, z: torch.Tensor, a: torch.Tensor, drift: torch.Tensor | None = None
    ) -> torch.Tensor:
        """z (B, D), a (B, H, A) -> (B, H, D) latents after each step; `drift` (D,) or (B, D),
        when given, is added after every step (the planner's latent disturbance estimate)."""
        return _steps(z, a, drift, self._tensors())

    def _tensors(self) -> tuple[torch.Tensor, ...]:
        """The step's weights and biases, in `_steps`'s order."""
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


def _steps(
    z: torch.Tensor,
    a: torch.Tensor,
    drift: torch.Tensor | None,
    tensors: tuple[torch.Tensor, ...],
) -> torch.Tensor:
    """The predictor rolled over a (B, H, A) from z (B, D) on its tensors (Predictor._tensors):
    each step z + linear([z, a]) + mlp([z, a]) (+ drift).

    What does not depend on z is taken for every step at once before the loop: the action's
    share of the first layer and of the linear term, the first and last biases and the drift.
    The residual z is folded into the linear term's latent share (z (I + W) for z + z W). A
    step is then three matrix products with their additions fused (`addmm`) and two GELUs."""
    w_lin, w1, b1, w2, b2, w3, b3 = tensors
    d, hidden = z.shape[-1], w1.shape[0]
    eye = torch.eye(d, dtype=w_lin.dtype, device=w_lin.device)
    w_z = torch.cat([w1[:, :d], w_lin[:, :d] + eye]).t()  # (D, hidden + D)
    from_a = F.linear(a, torch.cat([w1[:, d:], w_lin[:, d:]]))  # (B, H, hidden + D)
    tail = b3 if drift is None else b3 + drift  # (D,) or (B, D)
    from_a = from_a + torch.cat([b1.expand(*tail.shape[:-1], -1), tail], dim=-1).unsqueeze(-2)
    w2t, w3t = w2.t(), w3.t()
    if torch.is_inference(z) and torch.is_grad_enabled():
        z = z.clone()  # a latent encoded under inference_mode cannot be saved for backward
    out = []
    for a_k in from_a.unbind(1):
        first = torch.addmm(a_k, z, w_z)  # (B, hidden + D): [layer 1, z + linear term]
        h = F.gelu(first[:, :hidden])
        h = F.gelu(torch.addmm(b2, h, w2t))
        z = torch.addmm(first[:, hidden:], h, w3t)
        out.append(z)
    return torch.stack(out, dim=1)
