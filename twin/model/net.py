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
    def __init__(self, config: ModelConfig, window: int, n_tags: int, n_mv: int, n_cv: int) -> None:
        super().__init__()
        self.config = config
        self.encoder = WindowEncoder(
            window, n_tags, config.hidden, config.latent_dim, config.batchnorm
        )
        self.action_encoder = ActionEncoder(n_mv, config.action_dim)
        self.predictor = Predictor(config.latent_dim, config.action_dim, config.hidden)
        self.readout = ReadoutHead(config.latent_dim, config.readout_hidden, n_cv, config.quantiles)

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
