"""The configs a sweep starts from, and the part of them it searches.

`train_configs` is `twin train`'s own option handling (twin.train_presets) applied to a fleet
job's options.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from twin import train_presets as presets
from twin.errors import BadInput
from twin.fleet.jobs import TrainOptions
from twin.model.config import ModelConfig
from twin.train import TrainConfig

Configs = presets.Configs


def train_configs(options: TrainOptions, seed: int) -> Configs:
    """The configs `twin train --seed SEED` uses with these options (twin.train_presets)."""
    return presets.train_configs(
        device=options.device,
        seed=seed,
        quick=options.quick,
        epochs=options.epochs,
        max_seconds=options.max_seconds,
    )


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
