"""The configs a sweep starts from, and the part of them it searches.

`train_configs` mirrors how `twin train` turns its options into configs (its --quick preset
included); tests/fleet checks the two against a version `twin train` registered, so they cannot
drift apart unnoticed. (The preset belongs in one shared function; see docs/fleet.md.)
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from twin.data import DataConfig
from twin.errors import BadInput
from twin.fleet.jobs import TrainOptions
from twin.model.config import ModelConfig
from twin.train import TrainConfig, resolve_device

Configs = tuple[ModelConfig, DataConfig, TrainConfig]


def train_configs(options: TrainOptions, seed: int) -> Configs:
    """The configs `twin train --seed SEED` uses with these options."""
    resolve_device(options.device)
    model_cfg, data_cfg = ModelConfig(), DataConfig()
    cfg = TrainConfig(device=options.device, seed=seed)
    if options.quick:
        model_cfg = replace(model_cfg, latent_dim=8, hidden=32, action_dim=8, readout_hidden=16)
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
    if options.epochs is not None:
        cfg = replace(cfg, epochs=options.epochs)
    if options.max_seconds is not None:
        cfg = replace(cfg, max_seconds=options.max_seconds, obs_max_seconds=options.max_seconds)
    return model_cfg, data_cfg, cfg


def search_space(tune: Any, quick: bool) -> dict[str, Any]:
    """What a sweep varies: latent size, width, learning rate and the SIGReg weight.

    Keys are `model.<field>` / `train.<field>`; --quick keeps the widths tiny.
    """
    widths = [16, 32] if quick else [64, 128, 256]
    latents = [4, 8] if quick else [16, 32, 64]
    return {
        "model.latent_dim": tune.choice(latents),
        "model.hidden": tune.choice(widths),
        "model.sigreg_lambda": tune.choice([0.03, 0.1, 0.3]),
        "train.lr": tune.loguniform(5e-4, 5e-3),
    }


def apply(configs: Configs, trial: dict[str, Any]) -> Configs:
    """configs with a trial's `model.*` / `train.*` values put in; unknown keys are refused."""
    model_cfg, data_cfg, cfg = configs
    groups: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    for key, value in trial.items():
        group, _, name = key.partition(".")
        known = {"model": _names(ModelConfig), "train": _names(TrainConfig)}.get(group, set())
        if name not in known:
            raise BadInput(f"sweep parameter {key!r}: no such model.* or train.* field")
        groups[group][name] = value
    return replace(model_cfg, **groups["model"]), data_cfg, replace(cfg, **groups["train"])


def _names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}
