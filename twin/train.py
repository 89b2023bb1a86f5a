"""Fit one plant's twin: data -> JEPA + baselines -> checks -> registry.

series = PlantSeries(frame, spec, data_cfg)         # windows, normalisation, splits
net    = fit_jepa(series, model_cfg, train_cfg)     # early-stopped on validation
tw     = wrap + calibrate OOD on validation latents
base   = fit_baselines(series, ...)                 # ARX, observation-space model
report = evaluate(tw, series, base)                 # held-out block
check_collapse(report) ; registry.save(...)          # fails instead of saving a collapsed model
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Generic, TypeVar

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from twin import train_events
from twin.arx import ArxConfig, ArxModel
from twin.data import Batch, DataConfig, NotEnoughData, PlantSeries, load_frame
from twin.errors import BadInput, TwinError
from twin.model.calibration import fit_bands
from twin.model.config import ModelConfig
from twin.model.losses import jepa_losses
from twin.model.net import JepaNet
from twin.model.obs_model import ObservationModel
from twin.model.ood import DESIGN_FALSE_ALARM
from twin.model.twin_model import TwinModel
from twin.paths import Home
from twin.spec import PlantSpec

log = logging.getLogger(__name__)


class CollapsedLatent(TwinError):
    """Training produced a collapsed latent space; nothing was saved."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one training run."""

    epochs: int = 40
    """Length of the cosine schedule and upper bound on epochs; early stopping on the validation
    error may end the fit sooner, but only once the rate has decayed (patience_after)."""
    steps_per_epoch: int = 40
    """Optimiser steps per epoch (an epoch is a validation period, not a full data pass)."""
    batch_size: int = 64
    """Anchors per step; each brings H+1 encoded windows."""
    lr: float = 2e-3
    """AdamW learning rate (cosine-decayed)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    patience: int = 8
    """Epochs without validation improvement before stopping, counted from patience_after on."""
    patience_after: float = 0.5
    """Fraction of the schedule after which epochs without validation gain count towards
    patience (at 0.5 the cosine rate has fallen to about half its peak). Before it the best
    weights are still kept, but a plateau at the peak rate does not end the fit: stopping there
    leaves an unannealed model, and did so for the full twin more often than for its ablations."""
    max_seconds: float = 600.0
    """Wall-clock safety net of each fit (early stopping normally ends first; a run cut short by
    it is not bit-reproducible and says so in its `stopped` note); the best weights are kept."""
    obs_max_seconds: float = 600.0
    """The same safety net for the observation-space baseline, trained by the same rules."""
    ablations: tuple[str, ...] = ()
    """JEPA ablations (twin.model.config.ABLATIONS) trained beside the twin with the same data
    and rules; their held-out figures go into the model card. Each costs one more JEPA fit."""
    ood_false_alarm: float = DESIGN_FALSE_ALARM
    """False-alarm rate the OOD gate is calibrated for (conformal, on the validation block and
    the training block cross-fitted): twin.model.ood.DESIGN_FALSE_ALARM, half the issue-11
    limit on held-out normal operation (FALSE_ALARM_LIMIT), which says why."""
    seed: int = 0
    """Seeds torch, numpy and SIGReg's projections: the same seed and data give the same model."""
    device: str = "cpu"
    """cpu or cuda."""
    threads: int | None = 1
    """torch CPU threads while training; 1 is fastest for these small matrices on a shared
    machine (more threads spin against each other); None leaves torch's default."""
    val_anchors: int = 512
    """Validation anchors used per evaluation (evenly spaced)."""
    progress: bool = True
    """Show progress bars."""
    min_effective_rank: float = 2.0
    """Below this effective rank of held-out latents the model is refused as collapsed."""
    min_latent_std: float = 1e-3
    """Below this largest per-dimension std of held-out latents the model is refused as collapsed."""


M = TypeVar("M", bound=torch.nn.Module)


@dataclass
class FitResult(Generic[M]):
    module: M
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    best_val: float = math.inf
    stopped: str = ""
    capped: bool = False
    """True when the wall-clock safety net, not convergence, ended the fit."""


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed)
    return torch.Generator().manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise BadInput("--device cuda: no CUDA device is available here")
    if name not in ("cpu", "cuda"):
        raise BadInput(f"--device must be cpu or cuda, not {name!r}")
    return torch.device(name)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with n torch CPU threads, restoring the previous setting after."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def val_anchors(series: PlantSeries, horizon: int, n: int) -> np.ndarray:
    a = series.anchors("val", horizon)
    if len(a) == 0:
        raise NotEnoughData(
            f"plant {series.spec.name!r}: the validation block ({series.block_size('val')} samples) is "
            f"shorter than a window plus {horizon} control intervals; record more history"
        )
    return a[np.linspace(0, len(a) - 1, min(n, len(a))).astype(int)]


def fit_loop(
    module: M,
    train_anchors: np.ndarray,
    make_batch: Callable[[np.ndarray], Batch],
    loss_fn: Callable[[Batch], dict[str, torch.Tensor]],
    val_fn: Callable[[], float],
    cfg: TrainConfig,
    max_seconds: float,
    desc: str,
) -> FitResult[M]:
    """Generic loop: AdamW + cosine decay, validation each epoch, early stopping, time budget."""
    device = resolve_device(cfg.device)
    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.epochs * cfg.steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
    )
    res = FitResult(module)
    best_state, since_best = copy.deepcopy(module.state_dict()), 0
    count_from = cfg.patience_after * total
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.epochs), desc=desc, disable=not cfg.progress, leave=False)
    for epoch in bar:
        module.train()
        sums: dict[str, float] = {}
        n_steps = 0
        for _ in range(cfg.steps_per_epoch):
            if time.perf_counter() - t0 > max_seconds:
                break  # the budget holds mid-epoch too; validation still runs below
            n_steps += 1
            idx = rng.choice(
                len(train_anchors), size=min(cfg.batch_size, len(train_anchors)), replace=False
            )
            batch = make_batch(np.sort(train_anchors[idx])).to(device)
            terms = loss_fn(batch)
            opt.zero_grad(set_to_none=True)
            terms["total"].backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), 5.0)
            opt.step()
            sched.step()
            res.steps += 1
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
        module.eval()
        with torch.no_grad():
            val = val_fn()
        row = {k: v / max(n_steps, 1) for k, v in sums.items()} | {
            "val": val,
            "epoch": epoch,
            "lr": sched.get_last_lr()[0],
        }
        res.history.append(row)
        train_events.emit("epoch", stage=desc, epochs=cfg.epochs, **row)
        bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k != "epoch"})
        if not math.isfinite(res.best_val) or val < res.best_val * (1 - 1e-4):
            res.best_val, since_best = val, 0
            best_state = copy.deepcopy(module.state_dict())
        elif res.steps >= count_from:
            since_best += 1
        if since_best >= cfg.patience:
            res.stopped = (
                f"early stop at epoch {epoch} (no validation gain for {cfg.patience}, "
                f"rate {sched.get_last_lr()[0] / cfg.lr:.2f} of its peak)"
            )
            break
        if time.perf_counter() - t0 > max_seconds:
            res.stopped = f"wall-clock safety net of {max_seconds:.0f} s bound at epoch {epoch}"
            res.capped = True
            log.warning("%s: %s (not converged)", desc, res.stopped)
            break
    else:
        res.stopped = f"all {cfg.epochs} epochs (validation still improving: not converged)"
    module.load_state_dict(best_state)
    module.eval()
    res.seconds = time.perf_counter() - t0
    train_events.emit("stage_end", stage=desc, stopped=res.stopped, best_val=res.best_val)
    return res


WINDOWS_PER_VALUE = 10.0
"""Below this many training windows per value of the encoder's input (window samples x tags),
the twin's latent leads with the measured CVs (ModelConfig.measured_latent None)."""


def measured_latent_for(series: PlantSeries, horizon: int) -> bool:
    """Whether the latent should lead with the measured CVs, from the data alone.

    With few training windows per input value a now-cast learned end to end does not carry
    over to held-out data, least of all when the plant drifts past the training block's range:
    on tep (51 tags, 30-sample windows, 48 h: 2 windows per value) the held-out now-cast missed
    the current measurement by 0.53 of the CVs' spread and h1 was 2x persistence. With many
    (cstr 6 h: 33, four_tank 6 h: 83) the learned readout is the better one (cstr seed 0 with
    the measured latent: h1 0.138 against 0.089), so it stays.
    """
    windows = len(series.anchors("train", horizon))
    return windows < WINDOWS_PER_VALUE * series.window * len(series.tag_names)


def fit_jepa(series: PlantSeries, model_cfg: ModelConfig, cfg: TrainConfig) -> FitResult[JepaNet]:
    """Train the JEPA on the series' training block; early stopping on validation readout error.
    A config whose measured_latent is None gets it from the data (measured_latent_for)."""
    gen = seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    h = series.config.horizon
    if model_cfg.measured_latent is None:
        model_cfg = replace(model_cfg, measured_latent=measured_latent_for(series, h))
    net = JepaNet(
        model_cfg,
        series.window,
        len(series.tag_names),
        len(series.mv_idx),
        len(series.cv_idx),
        series.cv_idx,
    ).to(device)
    train = series.anchors("train", h)
    if len(train) < cfg.batch_size:
        raise NotEnoughData(
            f"plant {series.spec.name!r}: only {len(train)} training windows with a {h}-interval "
            "horizon; record more history"
        )
    val_batch = series.batch(val_anchors(series, h, cfg.val_anchors), h, future_windows=False).to(
        device
    )
    sig_gen = gen if device.type == "cpu" else torch.Generator(device).manual_seed(cfg.seed)

    def val_fn() -> float:
        z0 = net.encode(val_batch.windows[:, 0])
        zs = torch.cat([z0.unsqueeze(1), net.rollout(z0, val_batch.actions)], dim=1)
        mean, _ = net.readout(zs)
        m = val_batch.target_mask.float()
        return float(((mean - val_batch.targets) ** 2 * m).sum() / m.sum().clamp_min(1))

    return fit_loop(
        net,
        train,
        lambda a: series.batch(a, h),
        lambda b: jepa_losses(net, b, sig_gen),
        val_fn,
        cfg,
        cfg.max_seconds,
        "jepa",
    )


def param_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@dataclass
class TrainOutcome:
    """Everything a training run produced (before it is saved)."""

    twin: TwinModel
    arx: ArxModel
    obs_model: ObservationModel
    series: PlantSeries
    report: dict
    train_info: dict


def train_series(
    series: PlantSeries, model_cfg: ModelConfig, cfg: TrainConfig, arx_cfg: ArxConfig | None = None
) -> TrainOutcome:
    """Fit the JEPA and its baselines on a series, calibrate, evaluate, check for collapse."""

    with torch_threads(cfg.threads):
        return _train_series(series, model_cfg, cfg, arx_cfg)


def _train_series(
    series: PlantSeries, model_cfg: ModelConfig, cfg: TrainConfig, arx_cfg: ArxConfig | None
) -> TrainOutcome:
    from twin.evaluate import Baselines, collapse_problem, evaluate, windows_of
    from twin.model.comparisons import ablation_report, fit_observation_model, obs_hidden_for

    spec = series.spec
    fit = fit_jepa(series, model_cfg, cfg)
    net = fit.module.cpu()
    roles = {t.name: t.role for t in spec.tags}
    tw = TwinModel(net, series.normalizer, roles, series.window, series.spi, series.config)
    tw.spec_hash = spec.spec_hash()
    tw.set_ood_reference(
        windows_of(series, "train"), windows_of(series, "val"), cfg.ood_false_alarm
    )
    band_anchors = fit_bands(tw, series, "val")
    # Equal size: the observation-space model gets the JEPA's parameter count.
    obs = fit_observation_model(series, obs_hidden_for(series, param_count(net)), cfg)
    lo, hi = series.blocks["train"]
    if arx_cfg is not None:
        arx = ArxModel.fit_grid(series.raw, spec, arx_cfg, spans=[(lo, hi)])
    else:
        arx = ArxModel.select(series.raw, spec, (lo, hi), series.blocks["val"])
    report = evaluate(tw, series, Baselines(arx=arx, obs_model=obs.module.cpu()))
    report["ablations"] = {
        name: ablation_report(series, model_cfg, cfg, name) for name in cfg.ablations
    }
    problem = collapse_problem(report["monitors"], cfg.min_effective_rank, cfg.min_latent_std)
    if problem:
        raise CollapsedLatent(
            f"plant {spec.name!r}: the latent space collapsed ({problem}); the model was not saved. "
            "Try another --seed, more data or a larger sigreg_lambda."
        )
    info = {
        "seconds": round(fit.seconds, 2),
        "obs_model_seconds": round(obs.seconds, 2),
        "obs_model_steps": obs.steps,
        "obs_model_stopped": obs.stopped,
        "steps": fit.steps,
        "stopped": fit.stopped,
        "capped": fit.capped,
        "obs_model_capped": obs.capped,
        "band_calibration_anchors": band_anchors,
        "ood_false_alarm_target": cfg.ood_false_alarm,
        "best_val": fit.best_val,
        "history": fit.history,
        "device": cfg.device,
        "device_name": torch.cuda.get_device_name() if cfg.device == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "params": {"jepa": param_count(net), "observation_model": param_count(obs.module)},
        "seed": cfg.seed,
        "train_config": asdict(cfg),
        "arx_config": asdict(arx.config),
    }
    tw.metrics = {"evaluation": report, "train": {k: v for k, v in info.items() if k != "history"}}
    return TrainOutcome(tw, arx, obs.module, series, report, info)


def train_plant(
    home: Home,
    spec: PlantSpec,
    model_cfg: ModelConfig | None = None,
    data_cfg: DataConfig | None = None,
    cfg: TrainConfig | None = None,
    frame: pd.DataFrame | None = None,
) -> str:
    """Train on the plant's history in the historian (or a given wide frame); returns the new version."""
    from twin import registry

    model_cfg, data_cfg, cfg = (
        model_cfg or ModelConfig(),
        data_cfg or DataConfig(),
        cfg or TrainConfig(),
    )
    if frame is None:
        frame = load_frame(home, spec)
    series = PlantSeries(frame, spec, data_cfg)
    outcome = train_series(series, model_cfg, cfg)
    version = registry.save(home, spec, outcome)
    _log_mlflow(spec, version, model_cfg, data_cfg, cfg, outcome)
    return version


def _log_mlflow(
    spec: PlantSpec,
    version: str,
    model_cfg: ModelConfig,
    data_cfg: DataConfig,
    cfg: TrainConfig,
    outcome: TrainOutcome,
) -> None:
    """Log the run to MLflow when it is installed and MLFLOW_TRACKING_URI is set; never fail training."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return
    try:
        import mlflow
    except ImportError:
        log.info("MLFLOW_TRACKING_URI is set but mlflow is not installed; skipping")
        return
    mlflow.set_experiment(f"twin-{spec.name}")
    with mlflow.start_run(run_name=version):
        mlflow.log_params({f"model.{k}": v for k, v in asdict(model_cfg).items() if k != "extra"})
        mlflow.log_params({f"data.{k}": v for k, v in asdict(data_cfg).items()})
        mlflow.log_params({f"train.{k}": v for k, v in asdict(cfg).items()})
        for name, res in outcome.report["models"].items():
            for h, v in res["nrmse"].items():
                if v is not None:
                    mlflow.log_metric(f"{name}.nrmse.h{h}", v)
        mlflow.log_metric("train_seconds", outcome.train_info["seconds"])
