"""Windows from wide frames: sample grid, masks, normalisation from the training block, splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from twin.data import DataConfig, NotEnoughData, PlantSeries, move_phase, regularise
from twin.errors import BadInput

from .conftest import linear_spec, simulate_linear


def test_regularise_puts_samples_on_the_grid_and_keeps_gaps_missing():
    spec = linear_spec()
    frame = simulate_linear(0.05)
    frame = frame.drop(frame.index[10:20])  # an outage
    frame.index = frame.index + pd.Timedelta(milliseconds=200)  # jittered timestamps
    grid = regularise(frame, spec)
    assert list(grid.columns) == spec.tag_names
    assert grid.index.freq == pd.Timedelta(seconds=1)
    assert grid.iloc[10:20].isna().all().all()
    assert grid.iloc[:10].notna().all().all()


def test_series_masks_missing_values_and_normalises_on_training_block_only():
    spec = linear_spec()
    frame = simulate_linear(0.5, noise=0.1, missing=0.05)
    frame.iloc[-100:, 0] += (
        1000.0  # a shift inside the test block must not leak into the statistics
    )
    s = PlantSeries(frame, spec, DataConfig(horizon=3, window_intervals=2))
    lo, hi = s.blocks["train"]
    assert abs(s.normalizer.mean[0] - np.nanmean(s.raw[lo:hi, 0])) < 1e-9
    assert s.mask.mean() < 1 and not s.mask[np.isnan(s.raw)].any()
    assert (s.values[~s.mask] == 0).all()


def test_blocks_are_contiguous_and_anchors_stay_inside():
    spec = linear_spec()
    s = PlantSeries(simulate_linear(0.5), spec, DataConfig(horizon=4, window_intervals=2))
    tr, va, te = s.blocks["train"], s.blocks["val"], s.blocks["test"]
    assert tr[1] == va[0] and va[1] == te[0] and te[1] == len(s.raw)
    assert te[1] - te[0] == round(0.2 * len(s.raw))
    for name, (lo, hi) in s.blocks.items():
        a = s.anchors(name, 4)
        assert len(a) > 0
        assert a.min() - s.window + 1 >= lo and a.max() + 4 * s.spi <= hi - 1


def test_actions_are_the_held_mv_of_the_next_interval():
    spec = linear_spec()
    frame = simulate_linear(0.3)
    s = PlantSeries(frame, spec, DataConfig(horizon=2, window_intervals=1))
    assert s.phase == 4  # moves first appear at rows 0, 5, 10, ...
    a = s.anchors("train", 2, aligned=True)
    assert (a % 5 == 4).all()
    b = s.batch(a[:10], 2)
    u_mean, u_std = s.normalizer.subset(["u"])
    held = b.actions.numpy()[..., 0] * u_std[0] + u_mean[0]
    raw_u = frame["u"].to_numpy()
    for i, anchor in enumerate(a[:10]):
        for k in range(2):
            assert held[i, k] == pytest.approx(raw_u[anchor + 1 + 5 * k], abs=1e-5)
    assert b.windows.shape == (10, 3, 5, 8)


def test_move_phase_none_for_unaligned_moves():
    rng = np.random.default_rng(0)
    mv = np.cumsum(rng.random((500, 1)) < 0.2, axis=0).astype(float)
    assert move_phase(mv, 5) is None


def test_bad_frames_are_clear_errors():
    spec = linear_spec()
    with pytest.raises(BadInput, match="DatetimeIndex"):
        regularise(pd.DataFrame({"y1": [1.0]}), spec)
    with pytest.raises(NotEnoughData):
        regularise(simulate_linear(0.01).iloc[:0], spec)
    with pytest.raises(BadInput):
        DataConfig(val_fraction=0.5, test_fraction=0.5)
