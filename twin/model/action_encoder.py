"""Action encoder: the MV values held over one control interval -> an embedding."""

from __future__ import annotations

import torch
from torch import nn


class ActionEncoder(nn.Module):
    def __init__(self, n_mv: int, action_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(max(n_mv, 1), action_dim), nn.GELU(), nn.Linear(action_dim, action_dim)
        )
        self.n_mv = n_mv

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (..., n_mv) normalised MV values -> (..., action_dim)."""
        if self.n_mv == 0:  # a monitoring-only plant: the predictor still steps in time
            u = torch.zeros(*u.shape[:-1], 1, dtype=u.dtype, device=u.device)
        return self.net(u)
