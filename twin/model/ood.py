"""The out-of-distribution gate: k-nearest-neighbour distance among training latents.

The latent z encodes the whole input window (every tag's last W samples and their mask), so a
score on z sees the window, not only the current values. One Gaussian fitted to the latents
(the gate before issue 11) treated the space between operating regions as normal and the
cloud's thin directions as foreign: a plant held still at a steady state in the middle of its
excited region scored 90 against a threshold of 3.8. The mean distance to the k nearest
training latents follows a cloud of any shape and any number of regions.

Distances are taken after whitening with the training covariance, its eigenvalues floored at
a share of the largest so that near-empty directions do not turn noise into alarms. The score
is divided by its median on the calibration latents (about 1 in distribution), and the
threshold is the conformal (1 - false_alarm) quantile of the calibration scores: on windows
from the same distribution as the calibration block, at most `false_alarm` of them score above
it (up to the block's autocorrelation).
"""

from __future__ import annotations

import math

import torch
from torch import nn

EIG_FLOOR = 1e-2
"""Whitening floor, as a share of the largest latent variance."""


class LatentGate(nn.Module):
    center: torch.Tensor
    """(D,) mean of the training latents."""
    whiten: torch.Tensor
    """(D, D) whitening map: (z - center) @ whiten has about unit variance per direction."""
    bank: torch.Tensor
    """(N, D) whitened training latents, the neighbours looked up."""
    scale: torch.Tensor
    """() median raw score of the calibration latents."""

    def __init__(self, latent_dim: int, k: int = 10) -> None:
        super().__init__()
        self.k = k
        self.register_buffer("center", torch.zeros(latent_dim))
        self.register_buffer("whiten", torch.eye(latent_dim))
        self.register_buffer("bank", torch.zeros(0, latent_dim))
        self.register_buffer("scale", torch.tensor(1.0))
        self.threshold: float = math.inf
        self.false_alarm: float = math.nan

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, D) -> (B,) mean whitened distance to the k nearest training latents / median."""
        if len(self.bank) == 0:
            return torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        k = min(self.k, len(self.bank))
        zw = (z - self.center) @ self.whiten  # (B, D)
        out = []
        for chunk in zw.split(4096):  # bounds the (chunk, N) distance matrix of big plan batches
            d = torch.cdist(chunk, self.bank)  # (b, N)
            out.append(d.topk(k, dim=1, largest=False).values.mean(1))
        return torch.cat(out) / self.scale

    def fit(
        self,
        z_train: torch.Tensor,
        z_cal: torch.Tensor,
        false_alarm: float = 0.01,
        bank_size: int = 2048,
    ) -> None:
        """Reference from training latents (N, D); scale and threshold from calibration latents."""
        if not 0 < false_alarm < 1:
            raise ValueError(f"false_alarm must lie in (0, 1), got {false_alarm}")
        z = z_train.double()
        center = z.mean(0)
        evals, evecs = torch.linalg.eigh(torch.cov(z.T).reshape(z.shape[1], z.shape[1]))
        evals = evals.clamp_min(EIG_FLOOR * float(evals.max().clamp_min(1e-12)))
        whiten = evecs / evals.sqrt()  # (D, D)
        idx = torch.linspace(0, len(z) - 1, min(bank_size, len(z))).long()
        self.center.copy_(center.float())
        self.whiten.copy_(whiten.float())
        self.bank = ((z[idx] - center) @ whiten).float()
        self.scale = torch.tensor(1.0)
        self.false_alarm = false_alarm
        if len(z_cal) == 0:
            self.threshold = math.inf
            return
        with torch.no_grad():
            raw = self(z_cal.float())
        self.scale = raw.median().clamp_min(1e-12)
        self.threshold = conformal_quantile(raw / self.scale, 1 - false_alarm)

    def resize_bank(self, n: int) -> None:
        """Make room for a stored bank of n latents before load_state_dict."""
        self.bank = torch.zeros(n, self.center.shape[0])


def conformal_quantile(scores: torch.Tensor, level: float) -> float:
    """The ceil((n + 1) level)-th smallest score (inf when n is too small for the level)."""
    n = len(scores)
    rank = math.ceil((n + 1) * level)
    if rank > n:
        return math.inf
    return float(scores.sort().values[rank - 1])
