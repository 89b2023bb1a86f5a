"""TwinModel: the world-model verbs in engineering units (normalisation lives inside).

    z  = tw.encode(window, mask)   # (B, W, n_tags) -> (B, D)
    z1 = tw.predict(z, u)          # u (B, n_mv): MV values held over the next control interval
    zs = tw.rollout(z, U)          # U (B, H, n_mv) -> (B, H, D)
    y, q = tw.readout(zs)          # (..., n_cv), (..., n_cv, n_q); bands calibrated per step
    tw.ood_score(z) -> (B,)        # k-NN distance to the training latents (~1 in distribution)
    tw.ood_threshold               # its conformal threshold (trust region of the planner)
    tw.ood_ratio(window, mask)     # (B,) the gate: whole window + latent; > 1 is out of distribution

The planner uses only these verbs; all of them are differentiable in U for gradient refinement.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import nn

from twin.data import DataConfig, Normalizer
from twin.errors import BadInput
from twin.model.calibration import BandCalibration
from twin.model.config import ModelConfig
from twin.model.innovation import InnovationCheck
from twin.model.net import JepaNet
from twin.model.ood import DESIGN_FALSE_ALARM, LatentGate
from twin.model.window_check import WindowCheck

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 2


class TwinModel(nn.Module):
    # Buffers (registered in __init__, saved in the state dict); declared for the type checker.
    x_mean: torch.Tensor
    """(n_tags,) training mean of every tag, engineering units."""
    x_std: torch.Tensor
    """(n_tags,) training std of every tag."""
    u_mean: torch.Tensor
    """(n_mv,) the MV entries of x_mean."""
    u_std: torch.Tensor
    """(n_mv,) the MV entries of x_std."""
    y_mean: torch.Tensor
    """(n_cv,) the CV entries of x_mean."""
    y_std: torch.Tensor
    """(n_cv,) the CV entries of x_std."""

    def __init__(
        self,
        net: JepaNet,
        normalizer: Normalizer,
        tag_roles: Mapping[str, str],
        window: int,
        samples_per_interval: int,
        data_config: DataConfig,
        version: str = "",
    ) -> None:
        super().__init__()
        self.net = net
        self.normalizer = normalizer
        self.tag_names = list(normalizer.tags)
        self.cv_names = [t for t in self.tag_names if tag_roles[t] == "cv"]
        self.mv_names = [t for t in self.tag_names if tag_roles[t] == "mv"]
        self.tag_roles = dict(tag_roles)
        self.window = window
        self.samples_per_interval = samples_per_interval
        self.data_config = data_config
        self.version = version
        self.quantile_levels = tuple(net.config.quantiles)
        f32 = torch.float32
        self.register_buffer("x_mean", torch.tensor(normalizer.mean, dtype=f32))
        self.register_buffer("x_std", torch.tensor(normalizer.std, dtype=f32))
        u_mean, u_std = normalizer.subset(self.mv_names)
        y_mean, y_std = normalizer.subset(self.cv_names)
        self.register_buffer("u_mean", torch.tensor(u_mean, dtype=f32))
        self.register_buffer("u_std", torch.tensor(u_std, dtype=f32))
        self.register_buffer("y_mean", torch.tensor(y_mean, dtype=f32))
        self.register_buffer("y_std", torch.tensor(y_std, dtype=f32))
        self.gate = LatentGate(net.latent_size)
        cv_idx = [self.tag_names.index(t) for t in self.cv_names]
        mv_idx = [self.tag_names.index(t) for t in self.mv_names]
        self.window_check = WindowCheck(
            window, len(self.tag_names), samples_per_interval, cv_idx, mv_idx
        )
        self.innovation = InnovationCheck(
            net.latent_size, len(self.tag_names), samples_per_interval, cv_idx, mv_idx
        )
        self._false_alarm = float("nan")
        self.bands = BandCalibration(len(self.cv_names), len(self.quantile_levels))
        self.spec_hash = ""
        self.metrics: dict[str, Any] = {}
        self.eval()

    # ---- the verbs ----------------------------------------------------------------------

    def normalise_window(
        self, window: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, W, n_tags) engineering units -> (B, W, 2 n_tags) encoder input."""
        window = window.to(self.x_mean.dtype)
        if window.shape[-2:] != (self.window, len(self.tag_names)):
            raise ValueError(
                f"window must be (B, {self.window}, {len(self.tag_names)}) "
                f"[samples x tags {self.tag_names}], got {tuple(window.shape)}"
            )
        ok = torch.isfinite(window)
        if mask is not None:
            ok = ok & mask.bool()
        x = torch.where(ok, (window - self.x_mean) / self.x_std, torch.zeros_like(window))
        return torch.cat([x, ok.to(x.dtype)], dim=-1)

    def encode(self, window: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """window (B, W, n_tags) eng units, mask (B, W, n_tags) bool (True = measured) -> z (B, D)."""
        return self.net.encode(self.normalise_window(window, mask))

    def predict(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """z (B, D), u (B, n_mv) absolute MV values held over the next interval -> (B, D)."""
        return self.net.predict(z, (u.to(z.dtype) - self.u_mean) / self.u_std)

    def rollout(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """z (B, D), U (B, H, n_mv) -> latents after each interval (B, H, D)."""
        return self.net.rollout(z, (u.to(z.dtype) - self.u_mean) / self.u_std)

    def rollout_drifting(
        self, z: torch.Tensor, u: torch.Tensor, drift: torch.Tensor
    ) -> torch.Tensor:
        """rollout with `drift` (D,) or (B, D) added to the latent after every interval (the
        planner's disturbance estimate), in one call: the MVs are normalised and embedded once."""
        return self.net.rollout(z, (u.to(z.dtype) - self.u_mean) / self.u_std, drift)

    def readout(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (..., D) -> CV means (..., n_cv) and quantiles (..., n_cv, n_q), engineering units.

        Bands are calibrated per rollout step: latents (B, H, D) from rollout are steps 1..H;
        latents (B, D) from encode are step 0 (the now-cast).
        """
        if z.dim() >= 3:
            steps = torch.arange(1, z.shape[-2] + 1, device=z.device).expand(z.shape[:-1])
        else:
            steps = torch.zeros(z.shape[:-1], dtype=torch.long, device=z.device)
        return self.readout_at(z, steps)

    def readout_at(self, z: torch.Tensor, steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """readout with explicit rollout steps (...) for latents z (..., D)."""
        mean, q = self.net.readout(z)
        q = self.bands(mean, q, steps)
        return mean * self.y_std + self.y_mean, q * self.y_std.unsqueeze(
            -1
        ) + self.y_mean.unsqueeze(-1)

    def ood_score(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B,) out-of-distribution score of encoded (or rolled-out) latents.

        The one score the planner's gate, its trust region and the write guard all use: the
        whitened distance to the k nearest training latents over its median on the validation
        block (about 1 in distribution); above ood_threshold the twin has not seen the state.
        """
        return self.gate(z)

    @property
    def ood_threshold(self) -> float:
        """Conformal threshold: ood_false_alarm of held-out normal windows score above it."""
        return self.gate.threshold

    @ood_threshold.setter
    def ood_threshold(self, value: float) -> None:
        self.gate.threshold = float(value)

    @property
    def ood_false_alarm(self) -> float:
        """The false-alarm rate ood_ratio was calibrated for (latent gate and window checks together)."""
        return self._false_alarm

    def ood_ratio(
        self,
        window: torch.Tensor,
        mask: torch.Tensor | None = None,
        latent: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """window (B, W, n_tags) eng units -> (B,) out-of-distribution ratio; above 1 refuses.

        The gate of the planner and of the write guard (through twin.plan.gating.ood_ratio):
        the larger of the latent k-NN score over its threshold, the window checks
        (consistency of the CVs with the MVs, liveness of every CV, range) over theirs, and the
        twin's own one-interval innovation over its local error (twin.model.innovation: a
        disturbance nobody measures). Calibrated so that about ood_false_alarm of held-out
        normal windows exceed 1. `latent`: the window's encoding when the caller has it
        already (self.encode(window, mask)).
        """
        x = self.normalise_window(window, mask)
        z = self.net.encode(x) if latent is None else latent
        out = torch.maximum(self.gate(z) / self.gate.threshold, self.window_check(x))
        return torch.maximum(out, self.innovation(self.net, x, z))

    # ---- calibration and persistence ---------------------------------------------------

    def set_ood_reference(
        self,
        x_train: torch.Tensor,
        x_val: torch.Tensor,
        false_alarm: float = DESIGN_FALSE_ALARM,
        local_consistency: bool = True,
    ) -> None:
        """Fit the gate on normalised training windows (N, W, 2n) and calibrate it on validation
        windows for `false_alarm` in all (twin.model.ood.DESIGN_FALSE_ALARM: why it is half the
        promised limit): a third of the false-alarm budget to the latent gate, a twentieth to the
        innovation check (the disturbances it is there for score 1.8-4x its threshold by the
        second interval, so it can afford a high one: at a tenth of the budget a four_tank
        seed refused a window of the hour held still), the rest to the window checks.
        `local_consistency=False`: the window consistency check with one global residual scale,
        as before it had a local one (the predict benchmark's before/after on the same twins)."""
        with torch.no_grad():
            z_train, z_val = self.net.encode(x_train), self.net.encode(x_val)
            self.gate.fit(z_train, z_val, false_alarm / 3)
            self.window_check.fit(
                x_train, x_val, 2 * false_alarm / 3 - false_alarm / 20, local=local_consistency
            )
            self.innovation.fit(self.net, x_train, x_val, false_alarm / 20)
        self._false_alarm = false_alarm

    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to use the model again, as plain types and tensors."""
        return {
            "format": CHECKPOINT_FORMAT,
            "version": self.version,
            "model_config": asdict(self.net.config),
            "data_config": asdict(self.data_config),
            "normalizer": self.normalizer.to_dict(),
            "tag_roles": self.tag_roles,
            "window": self.window,
            "samples_per_interval": self.samples_per_interval,
            "state_dict": self.state_dict(),
            "ood_threshold": self.ood_threshold,
            "ood_false_alarm": self.ood_false_alarm,
            "spec_hash": self.spec_hash,
            "metrics": self.metrics,
        }

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> TwinModel:
        if ckpt.get("format", 1) < CHECKPOINT_FORMAT:
            raise BadInput(
                f"model {ckpt.get('version', '?')} was saved in checkpoint format "
                f"{ckpt.get('format', 1)} (before the k-NN OOD gate and calibrated bands); "
                "retrain it with `twin train`"
            )
        cfg = dict(ckpt["model_config"])
        cfg["quantiles"] = tuple(cfg["quantiles"])
        config = ModelConfig(**cfg)
        normalizer = Normalizer.from_dict(ckpt["normalizer"])
        roles = ckpt["tag_roles"]
        n_mv = sum(r == "mv" for r in roles.values())
        n_cv = sum(r == "cv" for r in roles.values())
        cv_idx = [i for i, t in enumerate(normalizer.tags) if roles[t] == "cv"]
        net = JepaNet(config, ckpt["window"], len(normalizer.tags), n_mv, n_cv, cv_idx)
        tw = cls(
            net,
            normalizer,
            roles,
            ckpt["window"],
            ckpt["samples_per_interval"],
            DataConfig(**ckpt["data_config"]),
            ckpt["version"],
        )
        state = ckpt["state_dict"]
        tw.gate.resize_bank(len(state["gate.bank"]))
        tw.bands.shift = torch.zeros_like(state["bands.shift"])
        if "innovation.bank_z" in state:
            tw.innovation.resize(len(state["innovation.bank_z"]))
        else:  # saved before the innovation check: load with it off, as the twin was calibrated
            log.warning(
                "model %s predates the innovation check of the OOD gate: it cannot see "
                "unmeasured disturbances; refit its gate (retrain with `twin train`)",
                ckpt.get("version", "?"),
            )
            state = dict(state) | {
                f"innovation.{k}": v for k, v in tw.innovation.state_dict().items()
            }
        tw.load_state_dict(state)
        tw.ood_threshold = float(ckpt["ood_threshold"])
        tw._false_alarm = float(ckpt.get("ood_false_alarm", float("nan")))
        tw.spec_hash = ckpt.get("spec_hash", "")
        tw.metrics = ckpt.get("metrics", {})
        tw.eval()
        return tw


def latents_numpy(z: torch.Tensor) -> np.ndarray:
    return z.detach().cpu().double().numpy()
