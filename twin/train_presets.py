"""How `twin train`'s options become the model, data and training configs: one function, used by
`twin train` and by the fleet (`twin fleet train` / `sweep`), so a twin trained either way with the
same options and seed is the same twin."""

from __future__ import annotations

from dataclasses import replace

from twin.data import DataConfig
from twin.model.config import ModelConfig
from twin.train import TrainConfig, resolve_device

Configs = tuple[ModelConfig, DataConfig, TrainConfig]


def train_configs(
    *,
    device: str,
    seed: int,
    quick: bool = False,
    epochs: int | None = None,
    max_seconds: float | None = None,
) -> Configs:
    """The configs of `twin train --device D --seed S [--quick] [--epochs N] [--max-seconds T]`.

    The full recipe leaves ModelConfig.measured_latent to the data (twin.train.measured_latent_for:
    the latent leads with the CVs as measured when the history holds few training windows per
    value of the encoder's window), so the latent's size follows the plant: n_cv + 32 then, 32
    otherwise. The quick recipe keeps its tiny learned latent (it is for trying the tool out).
    """
    resolve_device(device)
    model_cfg, data_cfg = ModelConfig(measured_latent=None), DataConfig()
    cfg = TrainConfig(device=device, seed=seed)
    if quick:  # a seconds-long twin for trying the tool out, not for control
        model_cfg = replace(
            model_cfg,
            latent_dim=8,
            hidden=32,
            action_dim=8,
            readout_hidden=16,
            measured_latent=False,
        )
        data_cfg = replace(data_cfg, horizon=5, window_intervals=2)
        cfg = replace(
            cfg,
            epochs=3,
            steps_per_epoch=5,
            batch_size=16,
            max_seconds=5,
            obs_max_seconds=3,
            val_anchors=64,
            min_effective_rank=1.0,
        )
    if epochs is not None:
        cfg = replace(cfg, epochs=epochs)
    if max_seconds is not None:
        cfg = replace(cfg, max_seconds=max_seconds, obs_max_seconds=max_seconds)
    return model_cfg, data_cfg, cfg
