"""The JEPA network in normalised units: encoder, action encoder, predictor, readout."""

from __future__ import annotations

import torch
from torch import nn

from twin.model.action_encoder import ActionEncoder
from twin.model.config import ModelConfig
from twin.model.encoder import WindowEncoder
from twin.model.predictor import Predictor
from twin.model.readout import ReadoutHead


class JepaNet(nn.Module):
    def __init__(
        self,
        config: ModelConfig,
        window: int,
        n_tags: int,
        n_mv: int,
        n_cv: int,
        cv_idx: list[int] | None = None,
    ) -> None:
        """cv_idx: the CVs' columns in the window, needed with config.measured_latent (a net
        built without it, to load a checkpoint into, gets them from the state dict)."""
        super().__init__()
        self.config = config
        if config.measured_latent is None:
            raise ValueError("measured_latent=None is decided from the data when fitting")
        self.n_measured = n_cv if config.measured_latent else 0
        """Leading latent coordinates that are the CVs' latest measurements."""
        self.latent_size = self.n_measured + config.latent_dim
        """D: the measured coordinates and the latent_dim learned ones."""
        measured = (list(cv_idx) if cv_idx is not None else [0] * n_cv) if self.n_measured else []
        self.encoder = WindowEncoder(
            window, n_tags, config.hidden, self.latent_size, config.batchnorm, measured
        )
        self.action_encoder = ActionEncoder(n_mv, config.action_dim)
        self.predictor = Predictor(self.latent_size, config.action_dim, config.hidden)
        self.readout = ReadoutHead(
            self.latent_size, config.readout_hidden, n_cv, config.quantiles, self.n_measured
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, W, 2 n_tags) -> (B, D)."""
        return self.encoder(x)

    def predict(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """z (B, D), u (B, n_mv) normalised -> (B, D)."""
        return self.predictor(z, self.action_encoder(u))

    def rollout(
        self, z: torch.Tensor, u: torch.Tensor, drift: torch.Tensor | None = None
    ) -> torch.Tensor:
        """z (B, D), u (B, H, n_mv) normalised -> (B, H, D); `drift` added after every step."""
        return self.predictor.rollout(z, self.action_encoder(u), drift)
