"""The out-of-distribution gate: k-nearest-neighbour distance among training latents.

The latent z encodes the whole input window (every tag's last W samples and their mask), so a
score on z sees the window, not only the current values. One Gaussian fitted to the latents
(the gate before issue 11) treated the space between operating regions as normal and the
cloud's thin directions as foreign: a plant held still at a steady state in the middle of its
excited region scored 90 against a threshold of 3.8. The mean distance to the k nearest
training latents follows a cloud of any shape and any number of regions.

Distances are Euclidean in the latent space itself: SIGReg shapes it towards an isotropic
Gaussian, and whitening by the global covariance would shrink the very gaps between regions
that make a state foreign (a unit test shows it). The score is divided by its median on the calibration latents (about 1 in distribution), and the
threshold is the conformal (1 - false_alarm) quantile of the calibration scores: on windows
from the same distribution as the calibration block, at most `false_alarm` of them score above
it (up to the block's autocorrelation).
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

log = logging.getLogger(__name__)

FOLDS = 5
"""Contiguous folds of the training latents scored out-of-fold for calibration."""

LOCAL_K = 10
"""Neighbours whose errors set a check's local scale (twin.model.innovation, the window
consistency check in twin.model.window_check)."""
LOCAL_BANK = 2048
"""Most training windows a local scale keeps as reference (evenly spaced in time)."""

FALSE_ALARM_LIMIT = 0.02
"""The promise (issue 11): at most this fraction of held-out normal windows refused, on every
held-out block, not on average over blocks."""

DESIGN_FALSE_ALARM = FALSE_ALARM_LIMIT / 2
"""The rate the whole gate is calibrated for (TrainConfig.ood_false_alarm, `twin train
--ood-false-alarm`): half the limit, so that a single held-out block stays under the limit.

The conformal threshold bounds the *expected* rate on windows exchangeable with the
calibration windows; the limit is on the *realised* rate of one held-out block. Three things
spread the realised rate around the design rate:

- autocorrelation: windows overlap (consecutive windows share all but a sample or two), so
  alarms come in runs of L windows, and both the threshold (an order statistic of n
  calibration scores) and the held-out count behave as if drawn from n / L independent
  windows; the spread of a clustered count is about sqrt(alpha L / n), comparable to alpha
  itself when n / L is a few hundred and alpha a few per cent;
- the calibration windows are finite (the validation block and FOLDS out-of-fold training
  stretches), and fewer still in independent runs;
- the held-out block is the plant's later life, not exchangeable with the training block.

The union of the three checks (shares in TwinModel.set_ood_reference) adds up to at most the
design rate and lands below it when they overlap. Before this margin (calibrated to the limit
itself, benchmarks/results/predict.json, 6 plant-seed blocks) the realised rate was 1.36 % on
average and 2.44 % at worst: the worst block 1.8x the mean, with a spread across blocks (sd
0.8 %) of the order of the mean, as clustered counts give. With the clusters unchanged the
realised rate scales with the design rate, so half the limit leaves a factor 2 for a worst
block that was 1.8x the mean. The price is thresholds further out in the tail (each check's
share halves); at 2 % every synthetic fault was detected within 5 intervals on all 6 blocks
(an unmeasured disturbance by the innovation check at 1.8-4.2x its threshold by the second
interval, twin.model.innovation), and a plant held still only gains from higher thresholds. The factor was chosen from that earlier
run, before the one that measures it (benchmarks/results/predict_gate.json, same twins): there
the refused held-out windows came in 1-16 runs per block (2-3 on the cstr's 847 windows), and
the one block still over the limit (four_tank seed 0, 2.2 %) is a stretch where the plant
left the range its training data covered (0.2 % on the windows inside it): no design rate
fixes that (2.44 % at 2 %, 1.86 % at 0.5 %)."""


class LatentGate(nn.Module):
    center: torch.Tensor
    """(D,) mean of the training latents."""
    bank: torch.Tensor
    """(N, D) centred training latents, the neighbours looked up."""
    scale: torch.Tensor
    """() median raw score of the calibration latents."""

    def __init__(self, latent_dim: int, k: int = 10) -> None:
        super().__init__()
        self.k = k
        self.register_buffer("center", torch.zeros(latent_dim))
        self.register_buffer("bank", torch.zeros(0, latent_dim))
        self.register_buffer("scale", torch.tensor(1.0))
        self.threshold: float = math.inf
        self.false_alarm: float = math.nan

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, D) -> (B,) mean distance to the k nearest training latents / calibration median."""
        if len(self.bank) == 0:
            return torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        k = min(self.k, len(self.bank))
        zc = z - self.center  # (B, D)
        out = []
        for chunk in zc.split(4096):  # bounds the (chunk, N) distance matrix of big plan batches
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
        """Reference from training latents (N, D, in time order); scale and threshold from the
        calibration latents and, cross-fitted, from the training latents themselves: each of
        FOLDS contiguous stretches scored against a bank without it. The validation block alone
        is a short stretch of the plant's life, and a threshold set on it alone let through
        about 3 % false alarms at a 0.5 % target on the later held-out block."""
        if not 0 < false_alarm < 1:
            raise ValueError(f"false_alarm must lie in (0, 1), got {false_alarm}")
        z = z_train.float()
        center = z.mean(0)
        idx = torch.linspace(0, len(z) - 1, min(bank_size, len(z))).long()
        self.center.copy_(center)
        self.bank = z[idx] - center
        self.scale = torch.tensor(1.0)
        self.false_alarm = false_alarm
        with torch.no_grad():
            raw = torch.cat([self(z_cal.float()), self._cross_fitted(z - center, idx)])
        self.scale = raw.median().clamp_min(1e-12)
        self.threshold = conformal_quantile(raw / self.scale, 1 - false_alarm)

    def _cross_fitted(self, zc: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Raw scores of centred training latents, each fold against the bank outside it."""
        full, k = self.bank, self.k
        out = []
        for fold in torch.arange(len(zc)).chunk(FOLDS):
            keep = outside_fold(idx, fold)
            if keep.sum() < k:
                continue
            d = torch.cdist(zc[fold], full[keep])  # (n_fold, n_bank)
            out.append(d.topk(k, dim=1, largest=False).values.mean(1))
        return torch.cat(out) if out else zc.new_zeros(0)

    def resize_bank(self, n: int) -> None:
        """Make room for a stored bank of n latents before load_state_dict."""
        self.bank = torch.zeros(n, self.center.shape[0])


def conformal_quantile(scores: torch.Tensor, level: float) -> float:
    """The ceil((n + 1) level)-th smallest score.

    With fewer than level / (1 - level) scores no rank guarantees the level; the largest score
    is then used (a false-alarm rate of about 1 / (n + 1)) and a warning says so, rather than
    an infinite threshold that would switch the check off unnoticed. inf when there are none.
    """
    n = len(scores)
    if n == 0:
        return math.inf
    rank = math.ceil((n + 1) * level)
    if rank > n:
        log.warning(
            "only %d calibration windows: too few for a %.2f %% false-alarm threshold; using "
            "the largest score (about %.2f %%)",
            n,
            100 * (1 - level),
            100 / (n + 1),
        )
        rank = n
    return float(scores.sort().values[rank - 1])


def local_rms(
    query: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor, floor: torch.Tensor
) -> torch.Tensor:
    """A check's error scale where the plant is now: query (B, D) points -> (B, C) RMS of the
    squared errors bank_sq (N, C) of the LOCAL_K bank points (N, D) nearest each, never below
    floor (C,). Used by the checks whose normal error differs across the state space (the
    cstr predicts its runaways far worse than its ordinary operation), so that one global
    scale neither hides a fault where the plant is quiet nor flags the plant where it is not."""
    k = min(LOCAL_K, len(bank))
    out = []
    for chunk in query.split(4096):  # bounds the (chunk, N) distance matrix of big batches
        idx = torch.cdist(chunk, bank).topk(k, dim=1, largest=False).indices  # (b, k)
        out.append(bank_sq[idx].mean(1).sqrt())
    return torch.cat(out).maximum(floor)


def outside_fold(idx: torch.Tensor, fold: torch.Tensor) -> torch.Tensor:
    """(N,) bool: which bank entries (training-window indices idx, in time order) lie outside
    the contiguous fold, so that the fold is scored against references it did not provide."""
    return (idx < int(fold[0])) | (idx > int(fold[-1]))
