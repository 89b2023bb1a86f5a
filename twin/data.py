"""Historian frames -> training windows for the twin; per-tag normalisation.

Time base. The model steps one control interval at a time (the planner's decision period).
Its input window is the last W *samples* of every tag at the sample period, W a whole number
of control intervals: the planner hands over the raw recent history as the historian holds
it, and the encoder sees the fast detail (noise level, the start of a response) that a
per-interval summary would average away. The action of step k is the MV value held over
control interval k: the mean of the (forward-filled) MV samples in that interval, which is the
held value itself when moves happen at interval boundaries and a fair summary otherwise.

Missing samples stay missing: values are zero-filled *after* normalisation and a mask channel
says which ones were real; losses skip missing targets. Splits are contiguous time blocks
(train | validation | test), so no window or target crosses from one block into another.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import torch

from twin.errors import BadInput
from twin.paths import Home
from twin.spec import PlantSpec
from twin.window import hold_reported_by_exception

log = logging.getLogger(__name__)


class NotEnoughData(BadInput):
    """The historian holds too little usable data for the request."""


@dataclass(frozen=True)
class DataConfig:
    """How windows, horizons and splits are cut from a plant's history."""

    window_intervals: int = 3
    """Encoder window length in control intervals (W = this x samples per interval)."""
    horizon: int = 30
    """Rollout steps (control intervals) of the readout loss in training."""
    latent_steps: int = 10
    """Leading rollout steps whose future windows are encoded as latent targets (the encoder
    dominates the cost of a step; the readout still covers the whole horizon)."""
    anchor_stride: int = 1
    """Samples between consecutive training anchors (window ends)."""
    val_fraction: float = 0.1
    """Share of the history, just before the test block, used for early stopping and calibration."""
    test_fraction: float = 0.2
    """Share of the history at its end held out for evaluation."""

    def __post_init__(self) -> None:
        if min(self.window_intervals, self.horizon, self.anchor_stride, self.latent_steps) < 1:
            raise BadInput(
                "window_intervals, horizon, latent_steps and anchor_stride must be at least 1"
            )
        if not (0 < self.val_fraction < 1 and 0 < self.test_fraction < 1):
            raise BadInput("val_fraction and test_fraction must lie in (0, 1)")
        if self.val_fraction + self.test_fraction >= 0.9:
            raise BadInput("val_fraction + test_fraction must leave at least 10 % for training")


@dataclass
class Normalizer:
    """Per-tag affine normalisation: x_norm = (x - mean) / std, in spec tag order."""

    tags: list[str]
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray, spec: PlantSpec) -> Normalizer:
        """Statistics of values (T, n_tags) ignoring NaN; std floored at 0.1 % of the limits' span."""
        mean = np.zeros(len(spec.tags))
        std = np.ones(len(spec.tags))
        for j, tag in enumerate(spec.tags):
            col = values[:, j]
            col = col[np.isfinite(col)]
            span = tag.limits[1] - tag.limits[0]
            if col.size == 0:
                mean[j], std[j] = (tag.limits[0] + tag.limits[1]) / 2, span / 4
                continue
            mean[j] = col.mean()
            # An MV that never moved has zero spread; the floor keeps its scale sane.
            std[j] = max(float(col.std()), 1e-3 * span)
        return cls(spec.tag_names, mean, std)

    def to_dict(self) -> dict:
        return {"tags": self.tags, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        return cls(list(d["tags"]), np.asarray(d["mean"], float), np.asarray(d["std"], float))

    def subset(self, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) of the named tags."""
        idx = [self.tags.index(n) for n in names]
        return self.mean[idx], self.std[idx]


def regularise(frame: pd.DataFrame, spec: PlantSpec) -> pd.DataFrame:
    """Wide frame (DatetimeIndex, tag columns) -> one row per sample period, spec tag order.

    Timestamps are rounded to the sample grid (the last value wins inside a cell); grid cells
    without data and tags absent from the frame are NaN (missing), never zero.
    """
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise BadInput("a wide frame needs a DatetimeIndex of sample times")
    if frame.empty:
        raise NotEnoughData(f"plant {spec.name!r}: no data")
    unknown = [c for c in frame.columns if c not in spec.tag_names]
    if unknown:
        log.info("ignoring columns not in the spec: %s", unknown)
    period = pd.Timedelta(seconds=spec.plant.sample_period_s)
    idx = frame.index
    if idx.tz is None:
        idx = idx.tz_localize("UTC")
    cols = [c for c in spec.tag_names if c in frame.columns]
    data = frame[cols].apply(pd.to_numeric, errors="coerce").astype(float)
    data.index = idx.round(period)
    data = data.groupby(level=0).last()
    grid = pd.date_range(data.index[0], data.index[-1], freq=period, name="timestamp")
    return hold_reported_by_exception(data.reindex(grid).reindex(columns=spec.tag_names), spec)


def load_frame(
    home: Home, spec: PlantSpec, start: datetime | None = None, end: datetime | None = None
) -> pd.DataFrame:
    """The plant's history from the historian as a wide frame (good-quality values only)."""
    from twin.historian import Historian

    hist = Historian(home.historian_dir(spec.name))
    try:
        span = hist.time_range()
        if span is None:
            raise NotEnoughData(
                f"plant {spec.name!r}: the historian in {home.historian_dir(spec.name)} is empty "
                f"(run `twin generate {spec.name}` or `twin ingest {spec.name}` first)"
            )
        lo = start or span[0]
        hi = end or span[1] + timedelta(seconds=spec.plant.sample_period_s)
        stored = set(hist.tags())
        frame = hist.read(lo, hi, tags=[t for t in spec.tag_names if t in stored])
        return frame.reindex(columns=spec.tag_names)
    finally:
        hist.close()


def move_phase(mv: np.ndarray, spi: int, share: float = 0.9) -> int | None:
    """Sample phase (row index mod spi) of anchors right before MV moves, when moves are aligned.

    mv (T, n_mv) raw MV samples. A move first seen at row k belongs to the interval after
    anchor k-1. When at least `share` of the moves fall on one phase (moves on a control
    interval grid, as a controller or a campaign makes them) that phase is returned, else None.
    """
    filled = pd.DataFrame(mv).ffill().to_numpy()
    if filled.shape[1] == 0 or len(filled) < 2:
        return None
    changed = np.flatnonzero(np.any(np.abs(np.diff(filled, axis=0)) > 1e-9, axis=1)) + 1
    if len(changed) < 3:
        return None
    counts = np.bincount((changed - 1) % spi, minlength=spi)
    return int(counts.argmax()) if counts.max() >= share * len(changed) else None


@dataclass
class Batch:
    """Windows, actions and targets for a set of anchors, normalised, as tensors."""

    windows: torch.Tensor
    """(B, K, W, 2 n_tags) encoder inputs at anchor + k intervals (values, mask), k = 0..K-1."""
    actions: torch.Tensor
    """(B, H, n_mv) MV values held over each of the next H intervals."""
    targets: torch.Tensor
    """(B, H+1, n_cv) measured CVs at anchor + k intervals, k = 0..H (0 where missing)."""
    target_mask: torch.Tensor
    """(B, H+1, n_cv) True where the target was measured."""
    obs_future: torch.Tensor
    """(B, H, spi, n_tags) every sample of the next H intervals (0 where missing)."""
    obs_future_mask: torch.Tensor
    """(B, H, spi, n_tags) True where measured."""

    def to(self, device: torch.device | str) -> Batch:
        return Batch(**{k: v.to(device) for k, v in self.__dict__.items()})


class PlantSeries:
    """A plant's regularised history in normalised units, with block-aware anchor selection."""

    def __init__(
        self,
        frame: pd.DataFrame,
        spec: PlantSpec,
        config: DataConfig,
        normalizer: Normalizer | None = None,
    ) -> None:
        self.spec = spec
        self.config = config
        grid = regularise(frame, spec)
        self.index = grid.index
        raw = grid.to_numpy(dtype=float)  # (T, n_tags) engineering units, NaN = missing
        self.raw = raw
        self.spi = spec.plant.samples_per_interval
        self.window = config.window_intervals * self.spi
        self.tag_names = spec.tag_names
        self.cv_idx = [spec.tag_names.index(t.name) for t in spec.cvs]
        self.mv_idx = [spec.tag_names.index(t.name) for t in spec.mvs]
        n = len(raw)
        n_test = int(round(n * config.test_fraction))
        n_val = int(round(n * config.val_fraction))
        self.blocks = {
            "train": (0, n - n_test - n_val),
            "val": (n - n_test - n_val, n - n_test),
            "test": (n - n_test, n),
        }
        lo, hi = self.blocks["train"]
        self.normalizer = normalizer or Normalizer.fit(raw[lo:hi], spec)
        self.values, self.mask = self._normalise(raw)
        self.actions = self._interval_actions()
        self.phase = move_phase(raw[:, self.mv_idx], self.spi)
        """Phase of the anchors right before MV moves (None: moves not on a grid)."""

    def _normalise(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mask = np.isfinite(raw)
        norm = (raw - self.normalizer.mean) / self.normalizer.std
        return np.where(mask, norm, 0.0).astype(np.float32), mask

    def _interval_actions(self) -> np.ndarray:
        """(T, n_mv): mean normalised MV over samples s+1..s+spi (the interval after s); NaN at the end.

        A sample's MV value is what was applied at that instant; the anchor's own sample is the
        value the window already saw, so the action starts with the next one (a move written
        right after reading the window, one sample of latency as on a real plant).
        """
        mv = pd.DataFrame(np.where(self.mask, self.values, np.nan)[:, self.mv_idx]).ffill()
        held = mv.rolling(self.spi, min_periods=self.spi).mean().to_numpy()  # mean of s-spi+1..s
        out = np.full_like(held, np.nan, dtype=np.float32)
        out[: -self.spi] = held[self.spi :]
        return out

    def block_size(self, name: str) -> int:
        lo, hi = self.blocks[name]
        return hi - lo

    def anchors(
        self, block: str, horizon: int, stride: int | None = None, aligned: bool = False
    ) -> np.ndarray:
        """Window ends whose window, actions and horizon targets all lie inside the block.

        aligned: only anchors right before possible MV moves (the decision instants), when
        the data's moves are on a grid; otherwise every `stride`-th sample.
        """
        lo, hi = self.blocks[block]
        stride = stride or self.config.anchor_stride
        first = lo + self.window - 1
        last = hi - 1 - horizon * self.spi
        if last < first:
            return np.zeros(0, dtype=np.int64)
        if aligned and self.phase is not None:
            first += (self.phase - first) % self.spi
            stride = self.spi
        cand = np.arange(first, last + 1, stride)
        steps = cand[:, None] + self.spi * np.arange(horizon)[None, :]  # (A, H)
        ok = np.isfinite(self.actions[steps]).all(axis=(1, 2))
        win = cand[:, None] + np.arange(-self.window + 1, 1)[None, :]
        ok &= self.mask[win].any(axis=(1, 2))
        return cand[ok]

    def batch(self, anchors: np.ndarray, horizon: int, future_windows: bool = True) -> Batch:
        """Tensors for the given anchors; future_windows adds encoder inputs at the first
        min(latent_steps, horizon) steps."""
        n_future = min(self.config.latent_steps, horizon) if future_windows else 0
        k = np.arange(n_future + 1)
        ends = anchors[:, None] + self.spi * k[None, :]  # (B, K)
        offs = np.arange(-self.window + 1, 1)
        idx = ends[..., None] + offs  # (B, K, W)
        windows = np.concatenate([self.values[idx], self.mask[idx].astype(np.float32)], axis=-1)
        steps = anchors[:, None] + self.spi * np.arange(horizon)[None, :]  # (B, H)
        actions = self.actions[steps]  # (B, H, n_mv)
        tgt_idx = anchors[:, None] + self.spi * np.arange(horizon + 1)[None, :]  # (B, H+1)
        targets = self.values[tgt_idx][..., self.cv_idx]
        tmask = self.mask[tgt_idx][..., self.cv_idx]
        fut = steps[..., None] + np.arange(1, self.spi + 1)  # (B, H, spi)
        return Batch(
            windows=torch.from_numpy(windows),
            actions=torch.from_numpy(np.ascontiguousarray(actions, dtype=np.float32)),
            targets=torch.from_numpy(np.ascontiguousarray(targets)),
            target_mask=torch.from_numpy(np.ascontiguousarray(tmask)),
            obs_future=torch.from_numpy(self.values[fut]),
            obs_future_mask=torch.from_numpy(self.mask[fut]),
        )

    def cv_std(self, block: str) -> np.ndarray:
        """Standard deviation of each CV over a block, engineering units (NRMSE denominator)."""
        lo, hi = self.blocks[block]
        vals = self.raw[lo:hi][:, self.cv_idx]
        std = np.nanstd(vals, axis=0)
        return np.where(std > 0, std, 1.0)

    def describe(self) -> dict:
        """Data window and split for the model card."""

        def ts(i: int) -> str:
            return self.index[min(i, len(self.index) - 1)].isoformat()

        return {
            "start": ts(0),
            "end": ts(len(self.index) - 1),
            "samples": int(len(self.index)),
            "blocks": {
                k: {"start": ts(lo), "end": ts(hi - 1), "samples": hi - lo}
                for k, (lo, hi) in self.blocks.items()
            },
            "missing_fraction": float(1 - self.mask.mean()),
            "config": asdict(self.config),
        }
