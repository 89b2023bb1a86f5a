"""Held-out accuracy of the twin against baselines, and the monitors that say whether to trust it.

Open-loop prediction of every CV from each anchor of the held-out block, under the recorded MV
moves, at horizons of 1, 5, 10 and 30 control intervals. NRMSE = RMSE / std of the CV over the
block, averaged over CVs. Baselines: persistence (the last measurement), least-squares ARX and
an observation-space neural model (the generative alternative), fitted on the same training data.

Also: coverage of the calibrated 5-95 % band and pinball loss per CV and horizon, and the OOD
gate's false-alarm rate on the held-out block with its detection of synthetic sensor faults.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from twin.arx import ArxModel
from twin.data import PlantSeries
from twin.model import faults
from twin.model.obs_model import ObservationModel
from twin.model.ood import FALSE_ALARM_LIMIT
from twin.model.sigreg import correlated_gaussian_level, gaussian_floor, sigreg
from twin.model.twin_model import TwinModel

HORIZONS = (1, 5, 10, 30)
MONITOR_SAMPLES = 1024
MONITOR_PROJECTIONS = 1024
FAULT_ONSETS = 24
"""Fault onsets per fault kind on the held-out block (the faulty CV cycles through the CVs)."""
DETECT_INTERVALS = 5
"""A fault counts as detected when a decision instant within this many intervals flags it."""


@dataclass
class Baselines:
    arx: ArxModel | None = None
    obs_model: ObservationModel | None = None


def effective_rank(z: np.ndarray) -> float:
    """exp(entropy of the normalised singular values) of centred latents (N, D)."""
    s = np.linalg.svd(z - z.mean(0), compute_uv=False)
    if s.sum() <= 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def windows_of(series: PlantSeries, block: str, max_n: int = 4096) -> torch.Tensor:
    """Normalised encoder inputs at (evenly spaced) anchors of a block -> (N, W, 2 n_tags)."""
    a = series.anchors(block, 0)
    if len(a) > max_n:
        a = a[np.linspace(0, len(a) - 1, max_n).astype(int)]
    n = len(series.tag_names)
    if len(a) == 0:
        return torch.zeros(0, series.window, 2 * n)
    return series.batch(a, 0, future_windows=False).windows[:, 0]


def latents_of(tw: TwinModel, series: PlantSeries, block: str, max_n: int = 4096) -> torch.Tensor:
    """Encoded latents at (evenly spaced) anchors of a block -> (N, D)."""
    with torch.no_grad():
        return tw.net.encode(windows_of(series, block, max_n))


def _nrmse(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Per-CV NRMSE of (N, n_cv) arrays."""
    err = np.where(mask, pred - target, 0.0) ** 2
    n = np.maximum(mask.sum(0), 1)
    return np.sqrt(err.sum(0) / n) / std


def _jepa_predictions(tw: TwinModel, windows: torch.Tensor, actions: torch.Tensor) -> np.ndarray:
    """(B, H+1, n_cv) normalised readouts of the encoded and rolled-out latents."""
    with torch.no_grad():
        z0 = tw.net.encode(windows)
        zs = torch.cat([z0.unsqueeze(1), tw.net.rollout(z0, actions)], dim=1)
        return tw.net.readout(zs)[0].numpy()


def _jepa_bands(tw: TwinModel, windows: torch.Tensor, actions: torch.Tensor) -> np.ndarray:
    """(B, H+1, n_cv, n_q) calibrated quantiles at steps 0..H, engineering units."""
    with torch.no_grad():
        z0 = tw.net.encode(windows)
        zs = torch.cat([z0.unsqueeze(1), tw.net.rollout(z0, actions)], dim=1)  # (B, H+1, D)
        steps = torch.arange(zs.shape[1]).expand(zs.shape[:2])
        return tw.readout_at(zs, steps)[1].numpy()


def band_quality(
    tw: TwinModel,
    q: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray,
    std: np.ndarray,
    horizons: tuple[int, ...],
) -> dict:
    """Coverage of the outermost band and pinball loss (in CV std units) per CV and horizon."""
    levels = np.asarray(tw.quantile_levels)
    lo, hi = int(levels.argmin()), int(levels.argmax())
    cover: dict[str, dict[str, float]] = {}
    pin: dict[str, dict[str, float]] = {}
    for h in horizons:
        cover[str(h)], pin[str(h)] = {}, {}
        for c, name in enumerate(tw.cv_names):
            ok = mask[:, h, c].astype(bool)
            y, qq = target[ok, h, c], q[ok, h, c]  # (n,), (n, n_q)
            inside = (y >= qq[:, lo]) & (y <= qq[:, hi])
            diff = (y[:, None] - qq) / std[c]
            loss = np.maximum(levels * diff, (levels - 1) * diff)
            cover[str(h)][name] = float(inside.mean()) if len(y) else float("nan")
            pin[str(h)][name] = float(loss.mean()) if len(y) else float("nan")
    return {
        "band": [float(levels[lo]), float(levels[hi])],
        "coverage": cover,
        "pinball": pin,
        "coverage_mean": {h: float(np.nanmean(list(v.values()))) for h, v in cover.items()},
        "pinball_mean": {h: float(np.nanmean(list(v.values()))) for h, v in pin.items()},
    }


def gate_false_alarms(tw: TwinModel, series: PlantSeries, block: str = "test") -> dict:
    """False alarms of the whole OOD gate on a block's windows (the union of the latent, window
    and innovation checks) and of each check on its own; false_alarm_episodes counts runs of
    consecutive refused windows (alarms come in runs: the spread twin.model.ood allows for);
    false_alarm_inside_range is the rate among the windows whose every sample lies inside the
    training block's range (windows_outside_range of them do not: the held-out block reached
    levels the twin never saw, where a refusal is the gate doing its job; the promise of
    twin.model.ood.FALSE_ALARM_LIMIT is on false_alarm, all windows)."""
    x = windows_of(series, block)
    with torch.no_grad():
        z = tw.net.encode(x)
        latent = tw.ood_score(z) > tw.ood_threshold
        check = tw.window_check(x) > 1
        innovation = tw.innovation(tw.net, x, z) > 1
        inside = tw.window_check.inside_training_range(x)
    n = max(len(x), 1)

    def rate(flags: torch.Tensor) -> float | None:
        return float(flags.float().sum() / n) if len(x) else None

    refused = latent | check | innovation
    starts = refused & ~torch.cat([refused.new_zeros(1), refused[:-1]])
    return {
        "false_alarm": rate(refused),
        "false_alarm_episodes": int(starts.sum()),
        "false_alarm_latent": rate(latent),
        "false_alarm_window_checks": rate(check),
        "false_alarm_innovation": rate(innovation),
        "false_alarm_inside_range": float((refused & inside).sum() / inside.sum().clamp_min(1)),
        "windows_outside_range": int((~inside).sum()),
        "windows": int(len(x)),
    }


def ood_quality(tw: TwinModel, series: PlantSeries, block: str = "test") -> dict:
    """False-alarm rate of the OOD gate on a block's windows (false_alarm_target: the rate it
    was calibrated for; false_alarm_limit: the rate promised, twin.model.ood), and its
    detection of synthetic sensor faults (twin.model.faults) within DETECT_INTERVALS decision
    instants of onset (detection: the rate; detection_margin: the median over onsets of the
    largest OOD ratio in that time, above 1 detected)."""
    out: dict = {
        "latent_threshold": float(tw.ood_threshold),
        "false_alarm_target": float(tw.ood_false_alarm),
        "false_alarm_limit": FALSE_ALARM_LIMIT,
        **gate_false_alarms(tw, series, block),
        "faults": faults.describe(),
        "detection": {},
        "detection_margin": {},
    }
    lo, hi = series.blocks[block]
    w, spi = series.window, series.spi
    first, last = lo + w, hi - DETECT_INTERVALS * spi - 1
    if last <= first:
        return out
    onsets = np.linspace(first, last, FAULT_ONSETS).astype(int)
    sigma = series.normalizer.std
    for kind in faults.SENSOR_FAULTS:
        hits, peaks = [], []
        for i, onset in enumerate(onsets):
            tag = series.cv_idx[i % len(series.cv_idx)]
            seg = series.raw[onset - w : onset + DETECT_INTERVALS * spi]
            bad = faults.inject(seg, kind, tag, w, float(sigma[tag]), spi)
            ends = w - 1 + spi * np.arange(1, DETECT_INTERVALS + 1)  # window ends after onset
            wins = np.stack([bad[e - w + 1 : e + 1] for e in ends])  # (k, W, n_tags)
            x = torch.as_tensor(wins, dtype=torch.float32)
            with torch.no_grad():
                s = tw.ood_ratio(torch.nan_to_num(x), torch.isfinite(x))
            hits.append(bool((s > 1).any()))
            peaks.append(float(s.max()))
        out["detection"][kind] = float(np.mean(hits))
        # How far past its threshold the gate's largest ratio within DETECT_INTERVALS goes
        # (median over onsets; above 1 is detected): a rate near 100 % can hide a thin margin.
        out["detection_margin"][kind] = float(np.median(peaks))
    return out


def evaluate(
    tw: TwinModel,
    series: PlantSeries,
    baselines: Baselines | None = None,
    block: str = "test",
    horizons: tuple[int, ...] = HORIZONS,
) -> dict:
    """NRMSE per model and horizon on a block of the series, and the twin's monitors."""
    baselines = baselines or Baselines()
    h_max = max(horizons)
    # Predictions are made at decision instants: right before MV moves when the data shows
    # where those are, so "the MV held over the next interval" is exactly what was applied.
    anchors = series.anchors(block, h_max, aligned=True)
    while len(anchors) == 0 and h_max > 1:  # a short block still reports the horizons it can
        horizons = tuple(h for h in horizons if h < h_max)
        h_max = max(horizons)
        anchors = series.anchors(block, h_max, aligned=True)
    if len(anchors) == 0:
        raise ValueError(f"the {block} block is too short to evaluate any horizon")
    b = series.batch(anchors, h_max, future_windows=False)
    y_mean, y_std = series.normalizer.subset([series.tag_names[i] for i in series.cv_idx])
    to_eng = lambda y: y * y_std + y_mean  # noqa: E731
    target = to_eng(b.targets.numpy())  # (N, H+1, n_cv)
    mask = b.target_mask.numpy()
    std = series.cv_std(block)

    preds: dict[str, np.ndarray] = {}  # name -> (N, H+1, n_cv) engineering units (index 0 unused)
    preds["jepa"] = to_eng(_jepa_predictions(tw, b.windows[:, 0], b.actions))
    filled = pd.DataFrame(series.raw).ffill().bfill().to_numpy()
    last = filled[anchors][:, series.cv_idx]
    preds["persistence"] = np.repeat(last[:, None], h_max + 1, axis=1)
    u_mean, u_std = series.normalizer.subset([series.tag_names[i] for i in series.mv_idx])
    u_eng = b.actions.numpy() * u_std + u_mean
    if baselines.arx is not None:
        hist = baselines.arx.history_from_grid(series.raw, series.tag_names, series.spi, anchors)
        y = baselines.arx.rollout(hist, u_eng)
        preds["arx"] = np.concatenate([last[:, None], y], axis=1)
    if baselines.obs_model is not None:
        with torch.no_grad():
            o = baselines.obs_model.rollout(b.windows[:, 0], b.actions).numpy()
        y = o[:, :, -1][..., series.cv_idx]  # last sample of each predicted interval
        preds["observation_model"] = np.concatenate([last[:, None], to_eng(y)], axis=1)

    def table(p: np.ndarray) -> dict:
        per = {str(h): _nrmse(p[:, h], target[:, h], mask[:, h], std) for h in horizons}
        return {
            "nrmse": {h: float(v.mean()) for h, v in per.items()},
            "nrmse_per_cv": {
                h: dict(zip(tw.cv_names, map(float, v), strict=True)) for h, v in per.items()
            },
        }

    models = {name: table(p) for name, p in preds.items()}
    for name in ("arx", "observation_model"):
        models.setdefault(name, {"nrmse": {str(h): None for h in horizons}})
    monitors = _monitors(tw, series, b, anchors, preds["jepa"], target, mask, std, horizons, block)
    q = _jepa_bands(tw, b.windows[:, 0], b.actions)  # engineering units
    return {
        "horizons": list(horizons),
        "block": block,
        "anchors": int(len(anchors)),
        "aligned_phase": series.phase,
        "models": models,
        "monitors": monitors,
        "bands": band_quality(tw, q, target, mask, std, horizons),
        "ood": ood_quality(tw, series, block),
    }


def _monitors(
    tw: TwinModel,
    series: PlantSeries,
    b,
    anchors: np.ndarray,
    jepa: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray,
    std: np.ndarray,
    horizons: tuple[int, ...],
    block: str,
) -> dict:
    gen = torch.Generator().manual_seed(0)
    z_held = latents_of(tw, series, block)
    z_train = latents_of(tw, series, "train", max_n=MONITOR_SAMPLES)
    zn = z_held.numpy().astype(float)
    # Action usage: the same anchors with the action sequences of other anchors.
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(anchors)))
    y_mean, y_std = series.normalizer.subset([series.tag_names[i] for i in series.cv_idx])
    shuffled = _jepa_predictions(tw, b.windows[:, 0], b.actions[perm]) * y_std + y_mean
    usage = {}
    for h in horizons:
        true_err = _nrmse(jepa[:, h], target[:, h], mask[:, h], std).mean()
        shuf_err = _nrmse(shuffled[:, h], target[:, h], mask[:, h], std).mean()
        usage[str(h)] = float(shuf_err / max(true_err, 1e-12))
    with torch.no_grad():
        scores = tw.ood_score(z_held)
    n_sig = min(MONITOR_SAMPLES, len(z_held))
    return {
        "sigreg_train": float(sigreg(z_train, MONITOR_PROJECTIONS, MONITOR_SAMPLES, gen)),
        "sigreg_heldout": float(sigreg(z_held, MONITOR_PROJECTIONS, MONITOR_SAMPLES, gen)),
        "sigreg_gaussian_floor": gaussian_floor(n_sig),
        # What an exactly Gaussian latent moving in time as these do would score: held-out
        # windows overlap, so even that sits above the iid floor (twin.model.sigreg).
        "sigreg_correlated_level": correlated_gaussian_level(
            z_held, MONITOR_PROJECTIONS, MONITOR_SAMPLES
        ),
        "latent_dim": int(zn.shape[1]),
        "latent_samples": int(zn.shape[0]),
        "min_dim_std": float(zn.std(0).min()) if len(zn) else 0.0,
        "max_dim_std": float(zn.std(0).max()) if len(zn) else 0.0,
        "effective_rank": effective_rank(zn) if len(zn) > 1 else 0.0,
        "action_usage": usage,
        "readout_nrmse_now": float(_nrmse(jepa[:, 0], target[:, 0], mask[:, 0], std).mean()),
        "ood_threshold": float(tw.ood_threshold),
        "ood_score_median": float(scores.median()) if len(scores) else None,
        "ood_fraction_above": float((scores > tw.ood_threshold).float().mean())
        if len(scores)
        else None,
    }


def collapse_problem(monitors: dict, min_rank: float, min_std: float) -> str | None:
    """A message when the held-out latents have collapsed, else None."""
    if monitors["max_dim_std"] < min_std:
        return f"largest per-dimension std {monitors['max_dim_std']:.2e} < {min_std:g}"
    if monitors["effective_rank"] < min_rank:
        return f"effective rank {monitors['effective_rank']:.2f} < {min_rank:g}"
    return None
