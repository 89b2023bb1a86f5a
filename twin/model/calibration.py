"""Conformal calibration of the readout's quantile bands, per CV and rollout step.

The readout heads learn quantiles with the pinball loss on the training block, where the
rollout errors are smaller than on unseen data, so their bands come out too narrow, more so
the further ahead. On the validation block each quantile level tau of each CV at each rollout
step h gets a shift c such that a share tau of the measurements lies below q_tau + c (split
conformal, one-sided per level). Far steps are pooled with their neighbours (+-h/5, where the
error grows slowly) so that a short validation block still gives each shift enough residuals;
near steps, where the error grows fastest, stand alone.

Training-conditional level. Plain split conformal covers tau on average over calibration draws;
with a short calibration block that average hides a wide spread, and the validation block is
also the early-stopping block and can be quieter than what follows (cstr, 6 h of data: 40
decision instants whose CV spread is a third of the held-out block's; plain conformal covered
0.82 of the held-out 5-95 % band). So each level is set, from the number n of independent
decision instants, so that with probability 1 - DELTA over the calibration draw its miss rate
is at most its nominal tail (Vovk 2012, PAC conformal): the k-th largest residual with k the
largest count a Binomial(n, tail) stays at or below with probability DELTA. The margin shrinks
as n grows (n = 40: 0.976 instead of 0.95 per side; n = 1000: 0.959).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from scipy import stats
from torch import nn

if TYPE_CHECKING:
    from twin.data import PlantSeries
    from twin.model.net import JepaNet
    from twin.model.twin_model import TwinModel

POOL_SHARE = 0.2
"""Step h's shift pools the residuals of steps h +- floor(POOL_SHARE * h)."""
DELTA = 0.1
"""Probability that a calibrated level misses more than its nominal tail (training-conditional)."""


class BandCalibration(nn.Module):
    shift: torch.Tensor
    """(S, n_cv, n_q) normalised shifts added to the quantiles at rollout steps 0..S-1."""

    def __init__(self, n_cv: int, n_q: int, steps: int = 1) -> None:
        super().__init__()
        self.register_buffer("shift", torch.zeros(steps, n_cv, n_q))

    def forward(self, mean: torch.Tensor, q: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """mean (..., n_cv), q (..., n_cv, n_q), steps (...) long -> calibrated q, never crossing the mean."""
        shifted = q + self.shift[steps.clamp(0, len(self.shift) - 1)]
        below = q <= mean.unsqueeze(-1)  # a level's side of the mean is kept
        m = mean.unsqueeze(-1).expand_as(q)
        return torch.where(below, torch.minimum(shifted, m), torch.maximum(shifted, m))

    def fit(
        self,
        mean: torch.Tensor,
        q: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor,
        levels: tuple[float, ...],
        n_independent: int | None = None,
    ) -> None:
        """Residuals of N anchors over S steps: mean (N, S, n_cv), q (N, S, n_cv, n_q), target and
        mask (N, S, n_cv). Fits shift (S, n_cv, n_q). n_independent: how many independent
        decision instants the anchors hold (default N), which sets the training-conditional level."""
        n_ind = max(int(n_independent or len(q)), 1)
        adjusted = [pac_level(tau, n_ind) for tau in levels]
        n_steps, n_cv, n_q = q.shape[1:]
        shift = torch.zeros(n_steps, n_cv, n_q)
        for s in range(n_steps):
            pool = int(POOL_SHARE * s)
            lo, hi = max(0, s - pool), min(n_steps, s + pool + 1)
            for c in range(n_cv):
                ok = mask[:, lo:hi, c].bool()
                if ok.sum() < 2:
                    continue
                for j, level in enumerate(adjusted):
                    resid = (target[:, lo:hi, c] - q[:, lo:hi, c, j])[ok].double()
                    shift[s, c, j] = float(torch.quantile(resid, level))
        self.shift = shift


def pac_level(tau: float, n: int, delta: float = DELTA) -> float:
    """The residual quantile level for nominal level tau from n independent calibration points:
    the tail t = min(tau, 1 - tau) is cut at the k-th of n + 1 order statistics, k + 1 the
    smallest count with P(Binomial(n, t) <= k) > delta (at least the plain conformal 1/(n+1),
    and never inside the nominal level)."""
    tail = min(tau, 1 - tau)
    k = int(stats.binom.ppf(delta, n, tail))  # smallest k with cdf(k) >= delta
    if stats.binom.cdf(k, n, tail) > delta:
        k -= 1  # largest k with cdf(k) <= delta
    out = min((max(k, 0) + 1) / (n + 1), tail)
    return out if tau < 0.5 else 1 - out


def rollout_readout(
    net: JepaNet, windows: torch.Tensor, actions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw (uncalibrated, normalised) readout at steps 0..H from windows (B, W, 2n), actions (B, H, n_mv)
    -> mean (B, H+1, n_cv), q (B, H+1, n_cv, n_q)."""
    with torch.no_grad():
        z0 = net.encode(windows)  # (B, D)
        zs = torch.cat([z0.unsqueeze(1), net.rollout(z0, actions)], dim=1)  # (B, H+1, D)
        return net.readout(zs)


def fit_bands(
    tw: TwinModel, series: PlantSeries, block: str = "val", min_anchors: int = 100
) -> int:
    """Calibrate tw.bands on a block of a PlantSeries over the training horizon; returns the
    number of anchors used. Decision instants (aligned anchors) are used when there are enough
    of them, else every anchor of the block."""
    h = series.config.horizon
    anchors = series.anchors(block, h, aligned=True)
    # Anchors one control interval apart start nearly the same rollout: count instants.
    n_independent = len(anchors) if series.phase is not None else len(anchors) // series.spi
    if len(anchors) < min_anchors:
        anchors = series.anchors(block, h)
    if len(anchors) == 0:
        return 0
    b = series.batch(anchors, h, future_windows=False)
    mean, q = rollout_readout(tw.net, b.windows[:, 0], b.actions)
    tw.bands.fit(mean, q, b.targets, b.target_mask, tw.quantile_levels, max(n_independent, 1))
    return int(len(anchors))
