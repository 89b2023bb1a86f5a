"""The deliberately small twin the runtime, faults and control-room tests train (seconds to
train, enough to propose with): one model size, and training settings with its checks off."""

from __future__ import annotations

import shutil
from typing import Any

from twin.model.config import ModelConfig
from twin.paths import Home
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


def train_tiny_twin(
    home: Home, plant: str, hours: float, *, keep_history: bool = True, **settings: Any
) -> str:
    """`hours` of generated history of a built-in plant, a tiny twin trained on it and saved in
    `home`: its version. Without `keep_history` the history is removed after training (a runtime
    test's history then starts empty). `settings` go to tiny_training."""
    from twin.data import DataConfig
    from twin.generate import generate_into
    from twin.historian import Historian
    from twin.spec import load_spec
    from twin.train import train_plant

    spec = load_spec(plant)
    generate_into(home, spec, hours=hours, seed=0, progress=False)
    with Historian(home.historian_dir(spec.name)) as h:
        start, end = h.time_range()
        frame = h.read(start, end + (end - start) / 100)
    if not keep_history:
        shutil.rmtree(home.historian_dir(spec.name))
    train = tiny_training(**({"steps_per_epoch": 5, "batch_size": 16} | settings))
    return train_plant(home, spec, TINY_MODEL, DataConfig(horizon=5), train, frame=frame)
