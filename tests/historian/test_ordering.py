"""Out-of-order and duplicate timestamps: reads are sorted and the last written value wins,
whether the duplicate is in one flush, another flush, another writer session or a merged file."""

from __future__ import annotations

import random
import time

import pandas as pd
from hist_helpers import at, live_segments

from twin.historian import Historian, HistorianConfig
from twin.sample import Sample


def test_out_of_order_appends_read_sorted(folder):
    order = list(range(200))
    random.Random(1).shuffle(order)
    with Historian(folder) as h:
        for k in range(0, 200, 20):  # ten flushes, each a shuffled slice
            h.append([Sample(at(i), "a", float(i)) for i in order[k : k + 20]])
            h.flush()
    frame = Historian(folder).read(at(0), at(200), tags=["a"])
    assert frame.index.is_monotonic_increasing
    assert list(frame["a"]) == [float(i) for i in range(200)]


def test_duplicates_last_written_wins_everywhere(folder):
    with Historian(folder) as h:
        h.append([Sample(at(1), "a", 1.0), Sample(at(1), "a", 2.0)])  # same flush
        h.flush()
        h.append([Sample(at(2), "a", 3.0)])
        h.flush()
        h.append([Sample(at(2), "a", 4.0)])  # a later flush
    with Historian(folder) as h:  # a later writer session
        h.append([Sample(at(1), "a", 5.0)])
    r = Historian(folder)
    assert list(r.read(at(0), at(3), tags=["a"])["a"]) == [5.0, 4.0]
    assert len(r.read_long(at(0), at(3))) == 2
    with Historian(folder) as h:
        assert h.compact() >= 3
        h.append([Sample(at(2), "a", 6.0)])  # newer than the merged file
    files = list(folder.glob("date=*/seg-*.parquet"))
    assert len(files) == 2
    assert list(Historian(folder).read(at(0), at(3), tags=["a"])["a"]) == [5.0, 6.0]


def test_tail_merges_keep_newest_values(folder):
    config = HistorianConfig(flush_interval_s=60, merge_segments=3)
    h = Historian(folder, config=config)
    for k in range(10):
        h.append([Sample(at(i), "a", float(k * 100 + i)) for i in range(k, k + 5)])
        h.flush()
    deadline = time.monotonic() + 10
    while live_segments(folder) > 4 and time.monotonic() < deadline:
        time.sleep(0.05)  # the merge thread works in the background
    h.close()
    assert len(list(folder.glob("date=*/seg-*.parquet"))) <= 4
    got = Historian(folder).read(at(0), at(20), tags=["a"])["a"]
    # Sample i was last written by flush k = min(i, 9).
    assert list(got) == [float(min(i, 9) * 100 + i) for i in range(14)]


def test_day_boundary_and_closed_day_compaction(folder):
    midnight = pd.Timestamp("2024-05-02T00:00:00Z").to_pydatetime()
    h = Historian(folder, flush_interval_s=60)
    for k in range(5):  # five segments on 1 May
        h.append([Sample(midnight - pd.Timedelta(seconds=10 - k), "a", float(k))])
        h.flush()
    h.append([Sample(midnight + pd.Timedelta(seconds=1), "a", 99.0)])  # 2 May: closes 1 May
    h.flush()
    deadline = time.monotonic() + 10
    while live_segments(folder, "2024-05-01") > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    h.close()
    assert len(list(folder.glob("date=2024-05-01/seg-*.parquet"))) == 1
    frame = Historian(folder).read(
        midnight - pd.Timedelta(seconds=20), midnight + pd.Timedelta(seconds=5)
    )
    assert list(frame["a"]) == [0.0, 1.0, 2.0, 3.0, 4.0, 99.0]
