"""Observation-space baseline: the generative alternative to the JEPA, of similar size.

It sees the same window and actions, but predicts the next control interval's samples of
every non-MV tag directly and rolls forward by appending its own predictions (MVs are the
given held values) to the window. Trained on the multi-step rollout error of those samples.
"""

from __future__ import annotations

import torch
from torch import nn

from twin.data import Batch


class ObservationModel(nn.Module):
    def __init__(self, window: int, n_tags: int, mv_idx: list[int], spi: int, hidden: int) -> None:
        super().__init__()
        self.window, self.n_tags, self.spi = window, n_tags, spi
        self.mv_idx = list(mv_idx)
        self.other_idx = [j for j in range(n_tags) if j not in self.mv_idx]
        n_out = spi * len(self.other_idx)
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(window * 2 * n_tags + len(self.mv_idx), hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, n_out),
        )

    def step(self, x: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, W, 2n) window, u (B, n_mv) -> (next window, predicted interval (B, spi, n_tags))."""
        b = x.shape[0]
        inp = torch.cat([x.flatten(1), u], dim=-1)
        last = x[:, -1, : self.n_tags][:, self.other_idx]  # (B, n_other) last values
        delta = self.net(inp).view(b, self.spi, len(self.other_idx))
        vals = x.new_zeros(b, self.spi, self.n_tags)
        vals[..., self.other_idx] = last.unsqueeze(1) + delta
        vals[..., self.mv_idx] = u.unsqueeze(1).expand(b, self.spi, len(self.mv_idx))
        new = torch.cat([vals, torch.ones_like(vals)], dim=-1)  # predictions count as present
        return torch.cat([x[:, self.spi :], new], dim=1), vals

    def rollout(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """x (B, W, 2n), u (B, H, n_mv) -> predicted samples (B, H, spi, n_tags)."""
        out = []
        for k in range(u.shape[1]):
            x, vals = self.step(x, u[:, k])
            out.append(vals)
        return torch.stack(out, dim=1)

    def loss(self, batch: Batch) -> torch.Tensor:
        pred = self.rollout(batch.windows[:, 0], batch.actions)  # (B, H, spi, n)
        m = batch.obs_future_mask[..., self.other_idx].float()
        err = (pred[..., self.other_idx] - batch.obs_future[..., self.other_idx]) ** 2
        return (err * m).sum() / m.sum().clamp_min(1.0)
