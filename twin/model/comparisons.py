"""The models a twin is compared with, fitted by the same rules: the observation-space model
at the JEPA's parameter count, and the JEPA's own ablations (twin.model.config.ABLATIONS)."""

from __future__ import annotations

from dataclasses import replace

from twin.data import PlantSeries
from twin.errors import BadInput
from twin.evaluate import evaluate
from twin.model.config import ABLATIONS, ModelConfig
from twin.model.obs_model import ObservationModel
from twin.model.twin_model import TwinModel
from twin.train import (
    FitResult,
    TrainConfig,
    fit_jepa,
    fit_loop,
    param_count,
    resolve_device,
    seed_everything,
    val_anchors,
)


def obs_hidden_for(series: PlantSeries, n_params: int) -> int:
    """Hidden width at which the observation-space model has about n_params parameters."""

    def count(hidden: int) -> int:
        om = ObservationModel(
            series.window, len(series.tag_names), series.mv_idx, series.spi, hidden
        )
        return param_count(om)

    lo, hi = 4, 4096
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) <= n_params else (lo, mid)
    return lo


def fit_observation_model(
    series: PlantSeries, hidden: int, cfg: TrainConfig
) -> FitResult[ObservationModel]:
    """Train the observation-space baseline on the same data, horizon, epochs and early stopping."""
    seed_everything(cfg.seed + 1)
    device = resolve_device(cfg.device)
    h = series.config.horizon
    om = ObservationModel(
        series.window, len(series.tag_names), series.mv_idx, series.spi, hidden
    ).to(device)
    train = series.anchors("train", h)
    val_batch = series.batch(val_anchors(series, h, cfg.val_anchors), h, future_windows=False).to(
        device
    )

    def val_fn() -> float:
        return float(om.loss(val_batch))

    return fit_loop(
        om,
        train,
        lambda a: series.batch(a, h, future_windows=False),
        lambda b: {"total": om.loss(b)},
        val_fn,
        cfg,
        cfg.obs_max_seconds,
        "observation model",
    )


def ablation_report(
    series: PlantSeries, model_cfg: ModelConfig, cfg: TrainConfig, name: str
) -> dict:
    """Train one JEPA ablation on the same series and rules; its held-out NRMSE and monitors."""
    if name not in ABLATIONS:
        raise BadInput(f"unknown ablation {name!r}; known: {', '.join(ABLATIONS)}")
    fit = fit_jepa(series, replace(model_cfg, **ABLATIONS[name]), cfg)  # type: ignore[arg-type]
    roles = {t.name: t.role for t in series.spec.tags}
    tw = TwinModel(
        fit.module.cpu(), series.normalizer, roles, series.window, series.spi, series.config
    )
    rep = evaluate(tw, series)
    return {
        "overrides": ABLATIONS[name],
        "nrmse": rep["models"]["jepa"]["nrmse"],
        "sigreg_heldout": rep["monitors"]["sigreg_heldout"],
        "effective_rank": rep["monitors"]["effective_rank"],
        "seconds": round(fit.seconds, 1),
        "stopped": fit.stopped,
    }
