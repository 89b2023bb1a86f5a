"""Training losses of the JEPA twin, all in normalised units.

total = w_pred * teacher-forced latent prediction
      + w_rollout * multi-step latent rollout
      + lambda * SIGReg(encoded latents)
      + w_readout * (MSE + pinball) of the readout, on encoded and on rolled-out latents

No EMA teacher. Gradients flow into both sides of the latent losses by default; SIGReg keeps
the encoder from collapsing. ModelConfig.target_stop_grad puts the targets under stop-gradient
(LeJEPA-style): it helped cstr on one seed (h10 NRMSE 0.146 vs 0.240) but over 3 seeds it lost
on both plants (four_tank h10 0.089 vs 0.024 with the latent losses off; see
benchmarks/results/predict_stopgrad.json), so it is an option, not the default. With
readout_detach the readout learns on detached latents (the probe ablation).
"""

from __future__ import annotations

import torch

from twin.data import Batch
from twin.model.net import JepaNet
from twin.model.sigreg import sigreg


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.float()
    return ((pred - target) ** 2 * m).sum() / m.sum().clamp_min(1.0)


def pinball(
    q: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, levels: torch.Tensor
) -> torch.Tensor:
    """Quantile loss of q (..., n_cv, n_q) against target (..., n_cv), masked."""
    diff = target.unsqueeze(-1) - q  # (..., n_cv, n_q)
    loss = torch.maximum(levels * diff, (levels - 1) * diff)
    m = mask.float().unsqueeze(-1).expand_as(loss)
    return (loss * m).sum() / m.sum().clamp_min(1.0)


def readout_loss(
    net: JepaNet, z: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    mean, q = net.readout(z)
    levels = torch.tensor(net.config.quantiles, dtype=q.dtype, device=q.device)
    return masked_mse(mean, target, mask) + pinball(q, target, mask, levels)


def jepa_losses(
    net: JepaNet, batch: Batch, generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """Every loss term and the weighted total for one batch with future windows."""
    cfg = net.config
    b, k1 = batch.windows.shape[:2]  # K = L + 1 encoded windows per anchor (L latent steps)
    z = net.encode(batch.windows.flatten(0, 1)).unflatten(0, (b, k1))  # (B, L+1, D)
    a = net.action_encoder(batch.actions)  # (B, H, A)
    n_lat = k1 - 1
    target = z[:, 1:].detach() if cfg.target_stop_grad else z[:, 1:]  # (B, L, D)
    z_tf = net.predictor(z[:, :-1].flatten(0, 1), a[:, :n_lat].flatten(0, 1))
    pred = ((z_tf.unflatten(0, (b, n_lat)) - target) ** 2).mean()
    z_roll = net.predictor.rollout(z[:, 0], a)  # (B, H, D)
    roll = ((z_roll[:, :n_lat] - target) ** 2).mean()
    learned = z.flatten(0, 1)[:, net.n_measured :]  # measured coordinates are not shaped
    reg = sigreg(learned, cfg.sigreg_projections, cfg.sigreg_samples, generator)
    z_read, z_roll_read = (z.detach(), z_roll.detach()) if cfg.readout_detach else (z, z_roll)
    read = readout_loss(
        net, z_read, batch.targets[:, :k1], batch.target_mask[:, :k1]
    ) + readout_loss(net, z_roll_read, batch.targets[:, 1:], batch.target_mask[:, 1:])
    total = (
        cfg.w_pred * pred + cfg.w_rollout * roll + cfg.sigreg_lambda * reg + cfg.w_readout * read
    )
    return {"total": total, "pred": pred, "rollout": roll, "sigreg": reg, "readout": read}
