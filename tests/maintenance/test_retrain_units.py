"""The pieces of `twin retrain`: --since parsing, the shortest trainable window, excitation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from twin.data import DataConfig
from twin.errors import BadInput
from twin.maintain.retrain import excitation, parse_since, retrain_command, shortest_window
from twin.spec import load_spec

NEWEST = datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_since_is_a_plant_time_or_a_duration_back_from_the_newest_sample() -> None:
    assert parse_since("90m", NEWEST) == NEWEST - timedelta(minutes=90)
    assert parse_since("2d", NEWEST) == NEWEST - timedelta(days=2)
    assert parse_since("2026-01-01T06:00:00", NEWEST) == datetime(2026, 1, 1, 6, tzinfo=UTC)
    at = datetime(2026, 1, 1, 6, tzinfo=UTC)
    assert parse_since(retrain_command("cstr", at).split("--since ")[1], NEWEST) == at
    with pytest.raises(BadInput, match="--since 'yesterday'"):
        parse_since("yesterday", NEWEST)


def test_the_shortest_window_holds_a_validation_block_of_window_plus_horizon() -> None:
    spec = load_spec("cstr")  # 30 s intervals
    cfg = DataConfig(window_intervals=3, horizon=30, val_fraction=0.1)
    # (3 + 30) intervals / 0.1 = 330 intervals, 10 % spare: 363 x 30 s
    assert shortest_window(spec, cfg) == timedelta(seconds=363 * 30)


def test_excitation_counts_moves_and_spread_per_mv() -> None:
    spec = load_spec("four_tank")  # v1, v2 operating [1.5, 4.0]: half-band 1.25 V
    idx = pd.date_range(NEWEST, periods=200, freq="1s")
    v1 = np.repeat([3.0, 3.5], 100)  # one move
    v2 = np.tile(np.repeat([2.5, 3.5], 5), 20)  # 39 moves, std 0.5 V
    ex = excitation(pd.DataFrame({"v1": v1, "v2": v2}, index=idx), spec)
    assert ex.moves == {"v1": 1, "v2": 39}
    assert ex.spread["v2"] == pytest.approx(0.5 / 1.25)
    assert ex.poor == ["v1"]
