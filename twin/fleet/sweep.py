"""`twin fleet sweep`: Ray Tune over the twin's config; the best trial by validation score is
trained again through `twin.train.train_plant` (same seed and data: the same model) and
registered exactly as `twin train` registers a version.

trials = Tuner(trial_fn, search_space(...), num_samples=N).fit()   # each: train_series, report val
best   = lowest "val" (the JEPA's validation readout error, as early stopping uses it)
version = train_plant(home, spec, *apply(base, best.config))
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from tqdm.auto import tqdm

from twin.errors import BadInput, TwinError
from twin.fleet.configs import Configs, apply, search_space, train_configs
from twin.fleet.jobs import TrainOptions
from twin.paths import Home

log = logging.getLogger(__name__)


class SweepFailed(TwinError):
    """No trial of a sweep produced a validation score."""


@dataclass
class SweepResult:
    plant: str
    version: str
    best: dict[str, Any]
    """The best trial's parameters."""
    best_val: float
    """Its validation score (lower is better)."""
    registered_val: float
    """The registered version's validation score (equal to best_val: same seed, same data)."""
    trials: list[dict[str, Any]] = field(default_factory=list)
    """Every trial: parameters, val (None when it failed) and error."""


def _trial(config: dict[str, Any], plant: str, home: str, base: Configs) -> None:
    """One Tune trial: fit and evaluate on the plant's history, report the validation score."""
    from ray import tune

    from twin.data import PlantSeries, load_frame
    from twin.spec import load_spec
    from twin.train import train_series

    model_cfg, data_cfg, cfg = apply(base, config)
    spec = load_spec(plant)
    series = PlantSeries(load_frame(Home.at(home), spec), spec, data_cfg)
    outcome = train_series(series, model_cfg, cfg)
    tune.report({"val": float(outcome.train_info["best_val"])})


def sweep(
    ray: ModuleType,
    plant: str,
    home: Home,
    trials: int,
    options: TrainOptions,
    seed: int = 0,
    progress: bool = True,
) -> SweepResult:
    """Run `trials` Tune trials (one CPU each) and register the best as a new version."""
    from ray import tune

    from twin.spec import load_spec
    from twin.train import train_plant

    if trials < 1:
        raise BadInput(f"--trials must be at least 1, not {trials}")
    spec = load_spec(plant)
    base = train_configs(options, seed)
    bar = tqdm(total=trials, desc=f"sweep {spec.name}", unit="trial", disable=not progress)

    class _Bar(tune.Callback):
        """Ticks the bar per finished trial. Tune pickles its callbacks (for restores): the
        bar, which writes to this terminal, stays behind."""

        def __init__(self, bar: Any) -> None:
            self.bar = bar

        def __getstate__(self) -> dict[str, Any]:
            return {}

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            if getattr(self, "bar", None):
                self.bar.update(1)

        on_trial_error = on_trial_complete

    trainable = tune.with_resources(
        tune.with_parameters(_trial, plant=plant, home=str(home.root), base=base),
        {"cpu": 1, "gpu": 1 if options.device == "cuda" else 0},
    )
    tuner = tune.Tuner(
        trainable,
        param_space=search_space(tune, options.quick),
        tune_config=tune.TuneConfig(metric="val", mode="min", num_samples=trials),
        run_config=tune.RunConfig(
            name=f"{spec.name}-{time.strftime('%Y%m%dT%H%M%S')}",
            storage_path=str(home.runs_dir / "sweeps"),
            verbose=0,
            callbacks=[_Bar(bar)],
        ),
    )
    # Tune reports to stdout; the command's stdout carries only its result (the version id).
    with bar, contextlib.redirect_stdout(sys.stderr):
        grid = tuner.fit()
    rows = [_trial_row(grid[i]) for i in range(len(grid))]
    scored = [r for r in rows if r["val"] is not None]
    if not scored:
        errors = "; ".join(sorted({str(r["error"]) for r in rows}))
        raise SweepFailed(f"plant {spec.name!r}: no sweep trial finished ({errors})")
    best = min(scored, key=lambda r: r["val"])
    model_cfg, data_cfg, cfg = apply(base, best["params"])
    version = train_plant(home, spec, model_cfg, data_cfg, cfg)
    from twin import registry

    card = registry.load_checkpoint(home, spec, version)["card"]
    return SweepResult(
        spec.name,
        version,
        best["params"],
        best["val"],
        float(card["training"]["best_val"]),
        rows,
    )


def _trial_row(result: Any) -> dict[str, Any]:
    val = (result.metrics or {}).get("val")
    err = result.error
    return {
        "params": dict(result.config),
        "val": None if val is None or err is not None else float(val),
        "error": None if err is None else str(err).strip().splitlines()[-1],
    }
