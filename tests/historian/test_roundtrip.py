"""Round trips through the historian API: what goes in comes out, in every read shape."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hist_helpers import T0, at

from twin.historian import Historian
from twin.sample import Quality, Sample


def test_samples_round_trip_exactly(folder):
    written = [
        Sample(at(i * 0.5), tag, i + k / 10) for i in range(40) for k, tag in enumerate("abc")
    ]
    with Historian(folder) as h:
        h.append(written)
    r = Historian(folder)
    frame = r.read(at(0), at(20), tags=["a", "b", "c"])
    assert frame.index.name == "timestamp"
    assert str(frame.index.tz) == "UTC"
    assert len(frame) == 40
    for s in written:
        assert frame.loc[pd.Timestamp(s.ts), s.tag] == s.value
    long = r.read_long(at(0), at(20))
    assert len(long) == 120
    assert list(long.columns) == ["ts", "tag", "value", "quality"]
    assert long["ts"].is_monotonic_increasing
    assert r.time_range() == (at(0), at(19.5))


def test_window_is_half_open_and_tags_filter(folder):
    with Historian(folder) as h:
        h.append([Sample(at(i), t, float(i)) for i in range(10) for t in ("x", "y")])
    r = Historian(folder)
    frame = r.read(at(2), at(5), tags=["y", "missing"])
    assert list(frame.columns) == ["y", "missing"]
    assert list(frame["y"]) == [2.0, 3.0, 4.0]
    assert frame["missing"].isna().all()
    assert list(r.read(at(2), at(5)).columns) == ["x", "y"]  # None: tags with data
    assert r.read(at(100), at(200), tags=["x"]).empty


def test_frames_round_trip_and_nan_cells_are_missing(folder):
    index = pd.date_range(T0, periods=6, freq="1s", tz="UTC")
    wide = pd.DataFrame({"p": [1.0, np.nan, 3.0, 4.0, 5.0, 6.0], "q": [0.5] * 6}, index=index)
    long = pd.DataFrame(
        {
            "ts": index[:2] + pd.Timedelta(hours=1),
            "tag": ["p", "q"],
            "value": [7.0, 8.0],
            "quality": [0, 1],
        }
    )
    with Historian(folder) as h:
        h.append_wide(wide)
        h.append_frame(long)
    r = Historian(folder)
    back = r.read(index[0], index[-1] + pd.Timedelta(seconds=1), tags=["p", "q"])
    pd.testing.assert_frame_equal(
        back, wide, check_freq=False, check_names=False, check_index_type=False
    )
    stored = r.read_long(index[0], index[-1] + pd.Timedelta(seconds=1), tags=["p"])
    assert len(stored) == 5  # the NaN cell was not stored
    hour = r.read_long(index[0] + pd.Timedelta(hours=1), index[0] + pd.Timedelta(hours=2))
    assert list(hour["quality"]) == [0, 1]


def test_bad_quality_and_nonfinite_never_read_as_good(folder):
    with Historian(folder) as h:
        h.append(
            [
                Sample(at(0), "a", 1.0),
                Sample(at(1), "a", float("nan")),  # NaN offered as GOOD -> stored BAD
                Sample(at(2), "a", math.inf),
                Sample(at(3), "a", 4.0, Quality.OUT_OF_RANGE),
                Sample(at(4), "a", 5.0, Quality.UNCERTAIN),
                Sample(at(5), "a", float("nan"), Quality.GAP),
                Sample(at(6), "a", 7.0),
            ]
        )
    r = Historian(folder)
    good = r.read(at(0), at(10), tags=["a"])["a"]
    assert list(good.dropna()) == [1.0, 7.0]
    raw = r.read(at(0), at(10), tags=["a"], good_only=False)["a"]
    assert raw.iloc[3] == 4.0 and raw.iloc[4] == 5.0
    qualities = r.read_long(at(0), at(10))["quality"].tolist()
    assert qualities == [
        0,
        Quality.BAD,
        Quality.BAD,
        Quality.OUT_OF_RANGE,
        Quality.UNCERTAIN,
        Quality.GAP,
        0,
    ]
    assert r.latest()["a"].value == 7.0


@pytest.mark.parametrize("overlap", [False, True], ids=["in-duckdb", "after-dedup"])
def test_resample_means_good_values_on_an_aligned_grid(folder, overlap):
    with Historian(folder) as h:
        h.append([Sample(at(i), "a", float(i)) for i in range(3, 25)])
        if overlap:  # a second segment over the same time: duplicates resolved before averaging
            h.flush()
        h.append([Sample(at(7), "a", 1e9, Quality.BAD)])  # replaces 7.0; excluded from the mean
    r = Historian(folder)
    frame = r.read(at(1), at(31), tags=["a", "b"], resample="10s")
    # T0 is on the 10 s grid: bins start at T0, T0+10, T0+20, T0+30.
    assert list(frame.index) == [pd.Timestamp(at(s)) for s in (0, 10, 20, 30)]
    a = frame["a"]
    assert a.iloc[0] == pytest.approx(np.mean([3, 4, 5, 6, 8, 9]))
    assert a.iloc[1] == pytest.approx(14.5)
    assert a.iloc[2] == pytest.approx(22.0)
    assert math.isnan(a.iloc[3]) and frame["b"].isna().all()
    raw = r.read(at(1), at(31), tags=["a"], resample="10s", good_only=False)["a"]
    assert raw.iloc[0] == pytest.approx(np.mean([3, 4, 5, 6, 1e9, 8, 9]))


def test_latest_is_newest_by_timestamp_not_by_write_order(folder):
    with Historian(folder) as h:
        h.append([Sample(at(10), "a", 10.0), Sample(at(5), "b", 5.0)])
        h.flush()
        h.append([Sample(at(3), "a", 3.0), Sample(at(6), "b", 6.0)])  # "a" arrives late
    latest = Historian(folder).latest()
    assert latest["a"].value == 10.0 and latest["a"].ts == at(10)
    assert latest["b"].value == 6.0
    assert Historian(folder).latest(["b"]).keys() == {"b"}


def test_annotations(folder):
    h = Historian(folder)
    h.annotate(at(0), at(60), "campaign", "step test 1", {"mv": "v1"})
    h.annotate(at(100), at(110), "gap", "link down", {})
    all_ = h.annotations()
    assert list(all_["kind"]) == ["campaign", "gap"]
    assert all_["meta"].iloc[0] == {"mv": "v1"}
    assert list(h.annotations(kind="gap")["label"]) == ["link down"]
    assert list(h.annotations(start=at(70), end=at(200))["label"]) == ["link down"]


def test_segments_are_sorted_by_tag_then_time(folder):
    with Historian(folder) as h:
        h.append([Sample(at(9 - i), t, float(i)) for i in range(10) for t in ("b", "a")])
    files = list(folder.glob("date=*/seg-*.parquet"))
    assert len(files) == 1
    table = pq.read_table(files[0]).to_pandas()
    assert table.sort_values(["tag_id", "ts"]).index.tolist() == list(range(len(table)))
