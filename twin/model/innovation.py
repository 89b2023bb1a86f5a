"""The twin's own prediction error as a detector of what it cannot see (issue 11, issue 12).

A disturbance nobody measures (jacket fouling on the cstr, a leak in a tank) moves the CVs
in a way the MVs do not explain. The latent k-NN gate and the raw-window checks may still
pass the window: the runaway that cstr fouling sets off looks like the coolant-step runaways
of the training data. But the twin did not expect it. The innovation is the measured CVs at
the window's last sample minus the twin's one-interval prediction of them, made from the
window without its last interval and the MVs actually applied over that interval:

    e = y_last - readout(predict(encode(x_prev), u_last))

x_prev is the window cut one interval short, its first sample repeated over the interval it
lacks (the gate sees only the W samples its caller hands it).

Local scale. On the cstr the twin predicts its runaways far worse than its ordinary operation
(held-out innovations 1.5 at the median, 37-260 at the 98th percentile, at the far end of
runaways), so one global scale puts the threshold past what a fresh disturbance makes in
five intervals. Each innovation is therefore divided by the twin's own typical error in that
part of its state space: the RMS innovation of the K nearest training windows in latent space
(floored at the median of all). A runaway the twin knows it predicts badly is not a surprise;
a jump of 10-20x the local error where the twin is accurate is.

The score is the largest per-CV ratio over its conformal threshold, set on the validation
windows and the training windows (each fold against a bank without it), like the other
checks of the gate. It is stateless: a constant disturbance that leaves the plant at a steady
state still shows as an innovation when the twin's model of that steady state is off by more
than its local error (the planner's offset-free observer absorbs it; the gate does not).
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import nn

from twin.model.ood import (
    FOLDS,
    LOCAL_BANK,
    LOCAL_K,
    conformal_quantile,
    local_rms,
    outside_fold,
)


class OneStep(Protocol):
    """The parts of the network the innovation needs (normalised units throughout)."""

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...

    def predict(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor: ...

    def readout(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class InnovationCheck(nn.Module):
    bank_z: torch.Tensor
    """(N, D) latents of reference training windows (empty: the check is off)."""
    bank_err: torch.Tensor
    """(N, n_cv) squared innovations of those windows, normalised units."""
    floor: torch.Tensor
    """(n_cv,) least local scale per CV: the median absolute innovation of all windows."""
    scale: torch.Tensor
    """() conformal threshold of the score."""

    def __init__(
        self, latent_dim: int, n_tags: int, spi: int, cv_idx: list[int], mv_idx: list[int]
    ) -> None:
        super().__init__()
        self.n_tags, self.spi = n_tags, spi
        self.cv_idx, self.mv_idx = list(cv_idx), list(mv_idx)
        self.register_buffer("bank_z", torch.zeros(0, latent_dim))
        self.register_buffer("bank_err", torch.zeros(0, len(self.cv_idx)))
        self.register_buffer("floor", torch.ones(len(self.cv_idx)))
        self.register_buffer("scale", torch.tensor(math.inf))

    def resize(self, n: int) -> None:
        """Make room for a stored bank of n windows before load_state_dict."""
        self.bank_z = torch.zeros(n, self.bank_z.shape[1])
        self.bank_err = torch.zeros(n, len(self.cv_idx))

    @property
    def active(self) -> bool:
        return len(self.bank_z) > 0 and math.isfinite(float(self.scale))

    def innovation(
        self, net: OneStep, x: torch.Tensor, z: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, W, 2n) normalised window + mask -> innovation (B, n_cv) (0 where the last CV
        sample is missing) and the window's own latent (B, D): z when given."""
        spi, n = self.spi, self.n_tags
        head = x[:, :-spi]  # (B, W - spi, 2n)
        prev = torch.cat([head[:, :1].expand(-1, spi, -1), head], 1)  # (B, W, 2n)
        last = x[:, -spi:]  # (B, spi, 2n)
        seen = last[..., [n + j for j in self.mv_idx]]  # (B, spi, n_mv)
        u = (last[..., self.mv_idx] * seen).sum(1) / seen.sum(1).clamp_min(1.0)  # (B, n_mv)
        y_hat = net.readout(net.predict(net.encode(prev), u))[0]  # (B, n_cv)
        y = x[:, -1, self.cv_idx]
        ok = x[:, -1, [n + j for j in self.cv_idx]]
        return (y - y_hat) * ok, net.encode(x) if z is None else z

    def raw(self, net: OneStep, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """(B, W, 2n) -> (B,) largest per-CV |innovation| over its local scale."""
        e, z = self.innovation(net, x, z)
        return (e.abs() / local_rms(z, self.bank_z, self.bank_err, self.floor)).amax(1)

    def forward(self, net: OneStep, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """(B, W, 2n) -> (B,) score over its threshold (> 1: the plant is not doing what the
        twin expects); 0 when the check was never fitted (checkpoints from before it)."""
        if not self.active:
            return x.new_zeros(x.shape[0])
        return self.raw(net, x, z) / self.scale

    def fit(
        self, net: OneStep, x_train: torch.Tensor, x_cal: torch.Tensor, false_alarm: float
    ) -> None:
        """Bank from training windows (N, W, 2n, in time order); floor and threshold from the
        calibration windows and the training windows scored out of fold."""
        if x_train.shape[1] <= self.spi:
            return  # a one-interval window leaves nothing to predict the interval from: off
        with torch.no_grad():
            e_tr, z_tr = self.innovation(net, x_train)
            e_cal, z_cal = self.innovation(net, x_cal)
            self.floor = torch.cat([e_tr, e_cal]).abs().median(0).values.clamp_min(1e-6)
            idx = torch.linspace(0, len(x_train) - 1, min(LOCAL_BANK, len(x_train))).long()
            self.bank_z, self.bank_err = z_tr[idx].clone(), e_tr[idx].pow(2)
            local = local_rms(z_cal, self.bank_z, self.bank_err, self.floor)
            scores = [(e_cal.abs() / local).amax(1)]
            for fold in torch.arange(len(x_train)).chunk(FOLDS):
                keep = outside_fold(idx, fold)
                if keep.sum() < LOCAL_K:
                    continue
                local = local_rms(z_tr[fold], self.bank_z[keep], self.bank_err[keep], self.floor)
                scores.append((e_tr[fold].abs() / local).amax(1))
            self.scale = torch.tensor(conformal_quantile(torch.cat(scores), 1 - false_alarm))
