"""Training lowers every loss term; evaluation reports the known truth on a linear plant."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from twin.arx import ArxConfig, ArxModel
from twin.data import DataConfig, PlantSeries
from twin.evaluate import Baselines, collapse_problem, effective_rank, evaluate
from twin.model.losses import jepa_losses
from twin.model.net import JepaNet
from twin.model.twin_model import TwinModel
from twin.train import CollapsedLatent, fit_jepa, torch_threads, train_series

from .conftest import linear_spec, simulate_linear, tiny_configs


@pytest.mark.timeout(120)
def test_short_training_lowers_every_loss_term():
    spec = linear_spec()
    model_cfg, data_cfg, cfg = tiny_configs()
    series = PlantSeries(simulate_linear(1.0, noise=0.05, seed=1), spec, data_cfg)
    batch = series.batch(series.anchors("val", data_cfg.horizon)[:128], data_cfg.horizon)

    def terms(net: JepaNet) -> dict[str, float]:
        net.train()  # BatchNorm on batch statistics, as in training
        with torch.no_grad():
            out = jepa_losses(net, batch, torch.Generator().manual_seed(0))
        return {k: float(v) for k, v in out.items()}

    torch.manual_seed(cfg.seed)
    untrained = JepaNet(model_cfg, series.window, 4, 1, 2)
    before = terms(untrained)
    with torch_threads(1):
        fit = fit_jepa(series, model_cfg, replace(cfg, epochs=8))
    after = terms(fit.module)
    for key in ("pred", "rollout", "sigreg", "readout", "total"):
        assert after[key] < before[key], (key, before[key], after[key])
    assert fit.history[-1]["val"] < fit.history[0]["val"]


def test_training_is_reproducible_with_a_seed():
    spec = linear_spec()
    model_cfg, data_cfg, cfg = tiny_configs()
    series = PlantSeries(simulate_linear(0.5, noise=0.05, seed=2), spec, data_cfg)
    cfg = replace(cfg, epochs=2, steps_per_epoch=5)
    with torch_threads(1):
        a = fit_jepa(series, model_cfg, cfg).module
        b = fit_jepa(series, model_cfg, cfg).module
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(va, vb), ka


def test_evaluation_reports_the_true_linear_prediction():
    """Noise-free linear plant, moves on the interval grid: ARX(1,1) is the exact model, so the
    evaluation must report ~zero error for it, and persistence's error as computed by hand."""
    spec = linear_spec()
    frame = simulate_linear(1.0, noise=0.0, seed=3, disturbance=False)
    series = PlantSeries(frame, spec, DataConfig(horizon=5, window_intervals=3))
    lo, hi = series.blocks["train"]
    arx = ArxModel.fit_grid(series.raw, spec, ArxConfig(na=1, nb=1), spans=[(lo, hi)])
    # The identified interval-level dynamics are the per-sample ones over 5 samples.
    from .conftest import A, B

    a5 = np.linalg.matrix_power(A, 5)
    g5 = sum(np.linalg.matrix_power(A, j) @ B for j in range(5))
    assert np.allclose(arx.A[0], a5, atol=1e-6) and np.allclose(arx.B[0][:, 0], g5, atol=1e-6)

    model_cfg, _, _ = tiny_configs()
    net = JepaNet(model_cfg, series.window, 4, 1, 2)
    tw = TwinModel(
        net, series.normalizer, {t.name: t.role for t in spec.tags}, series.window, 5, series.config
    )
    report = evaluate(tw, series, Baselines(arx=arx))
    assert report["horizons"] == [1, 5, 10, 30]
    for h in ("1", "5", "10", "30"):
        assert report["models"]["arx"]["nrmse"][h] < 1e-5
    anchors = series.anchors("test", 30, aligned=True)
    y = frame[["y1", "y2"]].to_numpy()
    std = y[series.blocks["test"][0] :].std(0)
    for h in (1, 10):
        err = y[anchors + 5 * h] - y[anchors]
        expected = float((np.sqrt((err**2).mean(0)) / std).mean())
        assert report["models"]["persistence"]["nrmse"][str(h)] == pytest.approx(expected, rel=1e-6)
    assert report["models"]["observation_model"]["nrmse"]["1"] is None  # not given


@pytest.mark.timeout(120)
def test_trained_twin_beats_persistence_and_uses_actions():
    spec = linear_spec()
    model_cfg, data_cfg, cfg = tiny_configs()
    series = PlantSeries(simulate_linear(1.0, noise=0.02, seed=4), spec, data_cfg)
    out = train_series(series, model_cfg, replace(cfg, epochs=10))
    n = out.report["models"]
    assert n["jepa"]["nrmse"]["10"] < 0.5 * n["persistence"]["nrmse"]["10"]
    assert out.report["monitors"]["action_usage"]["5"] > 2
    assert out.report["monitors"]["effective_rank"] >= 2
    assert np.isfinite(out.twin.ood_threshold)


def test_collapse_fails_training_with_a_clear_message():
    spec = linear_spec()
    model_cfg, data_cfg, cfg = tiny_configs()
    series = PlantSeries(simulate_linear(0.5, seed=5), spec, data_cfg)
    with pytest.raises(CollapsedLatent, match="collapsed .*effective rank"):
        train_series(
            series, model_cfg, replace(cfg, epochs=1, steps_per_epoch=3, min_effective_rank=1e6)
        )


def test_collapse_monitors():
    z = np.random.default_rng(0).standard_normal((2000, 16))
    assert effective_rank(z) > 14
    line = np.outer(np.arange(100.0), np.ones(16))
    assert effective_rank(line) < 1.01
    ok = {"max_dim_std": 1.0, "effective_rank": 8.0}
    assert collapse_problem(ok, 2.0, 1e-3) is None
    assert "std" in collapse_problem({"max_dim_std": 1e-6, "effective_rank": 8.0}, 2.0, 1e-3)
    assert "rank" in collapse_problem({"max_dim_std": 1.0, "effective_rank": 1.2}, 2.0, 1e-3)


def test_missing_data_does_not_break_training():
    spec = linear_spec()
    model_cfg, data_cfg, cfg = tiny_configs()
    frame = simulate_linear(0.5, noise=0.05, seed=6, missing=0.1)
    frame = frame.drop(frame.index[600:700])
    assert isinstance(frame.index, pd.DatetimeIndex)
    series = PlantSeries(frame, spec, data_cfg)
    with torch_threads(1):
        fit = fit_jepa(series, model_cfg, replace(cfg, epochs=2, steps_per_epoch=5))
    assert all(np.isfinite(h["total"]) for h in fit.history)


class _NoBatch:
    def to(self, _device: torch.device) -> _NoBatch:
        return self


def _constant_fit(vals: list[float], **overrides: float):  # type: ignore[no-untyped-def]
    from twin.train import TrainConfig, fit_loop

    lin = torch.nn.Linear(2, 1)
    cfg = TrainConfig(epochs=20, steps_per_epoch=2, patience=3, progress=False)
    it = iter(vals)
    return fit_loop(
        lin,
        np.arange(8),
        lambda _a: _NoBatch(),  # type: ignore[arg-type,return-value]
        lambda _b: {"total": (lin(torch.ones(4, 2)) ** 2).mean()},
        lambda: next(it),
        replace(cfg, **overrides),  # type: ignore[arg-type]
        60.0,
        "t",
    )


def test_patience_counts_only_after_the_rate_has_decayed():
    """A validation error that never improves ends the fit patience epochs after the schedule's
    patience_after point, not patience epochs after the start; the best weights are kept."""
    fit = _constant_fit([1.0, *([2.0] * 30)], patience_after=0.5)
    # Epochs ending at step 20 (half of 20 x 2) or later count: 9, 10, 11; stop at 11.
    assert len(fit.history) == 12, fit.stopped
    assert fit.stopped.startswith("early stop at epoch 11"), fit.stopped
    assert fit.best_val == 1.0
    assert fit.history[0]["lr"] > fit.history[-1]["lr"]
    early = _constant_fit([1.0] * 30, patience_after=0.0)
    assert len(early.history) == 4, early.stopped  # epoch 0 best, 1-3 without gain
