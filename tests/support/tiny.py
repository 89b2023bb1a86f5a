"""The deliberately small twin the runtime, faults and control-room tests train (seconds to
train, enough to propose with): one model size, and training settings with its checks off."""

from __future__ import annotations

from typing import Any

from twin.model.config import ModelConfig
from twin.train import TrainConfig

TINY_MODEL = ModelConfig(
    latent_dim=16,
    hidden=32,
    action_dim=8,
    readout_hidden=16,
    sigreg_projections=32,
    sigreg_samples=64,
)


def tiny_training(**settings: Any) -> TrainConfig:
    """A short fit without a progress bar or the collapse checks (a twin this small and this
    briefly trained would fail them); `settings` sets the epochs, budget and the rest."""
    base: dict[str, Any] = {
        "progress": False,
        "val_anchors": 64,
        "min_effective_rank": 0.0,
        "min_latent_std": 0.0,
    }
    return TrainConfig(**(base | settings))
