"""The read path's footer cache and row-group layout: never a stale footer, same results.

A long-lived reader (the control room, the runtime) keeps Parquet footers between reads. These
tests keep one reader open while segments land, merge, are vacuumed and are written again
under the same names, and check every read against what was written.
"""

from __future__ import annotations

import os
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hist_helpers import T0, at

from twin.historian import Historian
from twin.historian.retention import vacuum
from twin.historian.scan import FOOTERS, FooterCache
from twin.historian.segments import row_groups
from twin.sample import Sample


def _wide(seconds: int, tags: list[str], offset: float, start: int = 0) -> pd.DataFrame:
    index = pd.date_range(at(start), periods=seconds, freq="1s", tz="UTC", name="timestamp")
    index = pd.DatetimeIndex(index.as_unit("ns"), freq=None)  # as reads return it
    values = offset + np.arange(seconds * len(tags), dtype=float).reshape(seconds, len(tags))
    return pd.DataFrame(values, index=index, columns=tags)


def test_a_long_lived_reader_sees_new_segments_merges_and_rewrites(folder):
    reader = Historian(folder)
    assert reader.read(at(0), at(100), tags=["a"]).empty
    first = _wide(60, ["a", "b"], 0.0)
    with Historian(folder) as w:
        w.append_wide(first)
        w.flush()
        pd.testing.assert_frame_equal(reader.read(at(0), at(100), tags=["a", "b"]), first)
        more = _wide(30, ["a", "b"], 1000.0, start=60)
        w.append_wide(more)
        w.flush()  # a new segment lands beside the first
        both = pd.concat([first, more])
        pd.testing.assert_frame_equal(reader.read(at(0), at(100), tags=["a", "b"]), both)
        assert w.compact() >= 1  # the two become one file under a new name
        pd.testing.assert_frame_equal(reader.read(at(0), at(100), tags=["a", "b"]), both)
    # The day vacuumed away, then written again: a new writer numbers its segments from the
    # start, so the same file names come back with other rows in them.
    vacuum(folder, before=T0.date() + timedelta(days=1))
    assert reader.read(at(0), at(100), tags=["a"]).empty
    again = _wide(90, ["a", "b"], -5000.0)
    with Historian(folder) as w:
        w.append_wide(again)
    pd.testing.assert_frame_equal(reader.read(at(0), at(100), tags=["a", "b"]), again)
    reader.close()


def test_the_footer_of_a_replaced_file_is_read_again(tmp_path):
    path = tmp_path / "seg.parquet"
    cache = FooterCache(size=2)
    pq.write_table(pa.table({"tag_id": pa.array([1], pa.int32()), "ts": [1]}), path)
    old = cache.get(path)
    assert cache.get(path) is old and cache.reads == 1
    tmp = tmp_path / "new.parquet"
    pq.write_table(pa.table({"tag_id": pa.array([7, 8], pa.int32()), "ts": [5, 6]}), tmp)
    os.replace(tmp, path)  # what a merge or a rewrite after vacuum does to a name
    new = cache.get(path)
    assert new is not old and cache.reads == 2 and new.metadata.num_rows == 2
    assert int(new.tag_lo[0]) == 7 and int(new.tag_hi[0]) == 8
    for k in range(3):  # bounded: the least recently used footer goes
        other = tmp_path / f"o{k}.parquet"
        pq.write_table(pa.table({"tag_id": pa.array([k], pa.int32()), "ts": [k]}), other)
        cache.get(other)
    assert len(cache) == 2


def test_the_writer_forgets_the_footers_of_files_it_deletes(folder, monkeypatch):
    import twin.historian.writer as writer_module

    monkeypatch.setattr(writer_module, "TRASH_GRACE_S", 0.0)
    with Historian(folder, flush_interval_s=60) as w:
        for i in range(3):
            w.append([Sample(at(i), "a", float(i))])
            w.flush()
        w.read(at(0), at(10), tags=["a"])
        day_dir = next(folder.glob("date=*"))
        inputs = sorted(day_dir.glob("seg-*.parquet"))
        assert all(p in FOOTERS for p in inputs)
        w.compact()
        assert not any(p in FOOTERS for p in inputs)
        assert list(w.read(at(0), at(10), tags=["a"])["a"]) == [0.0, 1.0, 2.0]


def test_small_reads_come_back_writable_and_equal_to_the_data(folder):
    frame = _wide(3600, [f"t{i}" for i in range(12)], 0.0)
    with Historian(folder) as w:
        w.append_wide(frame)
        w.flush()
        w.compact()
    with Historian(folder) as r:
        for tags in (["t3"], ["t0", "t11", "t5"], list(frame.columns)):
            got = r.read(at(1800), at(1860), tags=tags)
            pd.testing.assert_frame_equal(got, frame.iloc[1800:1860][tags])
            got.iloc[0, 0] = -1.0  # a caller may edit what it read
        assert r.read(at(0), at(3600), tags=["nope", "t1"])["nope"].isna().all()


def test_row_groups_follow_tag_boundaries_within_the_size_limit():
    day = np.repeat(np.arange(100, dtype=np.int32), 86_400)
    groups = row_groups(day, 131_072)
    assert groups == [(k * 86_400, (k + 1) * 86_400) for k in range(100)]  # one tag each
    tail = np.repeat(np.arange(100, dtype=np.int32), 2)  # a 1 s flush: one small group
    assert row_groups(tail, 131_072) == [(0, 200)]
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = rng.integers(1, 50_000, size=rng.integers(1, 40))
        ids = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
        target = int(rng.integers(1_000, 60_000))
        groups = row_groups(ids, target)
        assert groups[0][0] == 0 and groups[-1][1] == len(ids)
        assert all(b > a and b - a <= target for a, b in groups)
        assert all(groups[i][1] == groups[i + 1][0] for i in range(len(groups) - 1))


def test_a_day_written_before_the_tag_aligned_layout_reads_the_same(folder):
    """Files from earlier writers have row groups of a fixed size across tags."""
    frame = _wide(600, ["a", "b", "c"], 0.0)
    with Historian(folder) as w:
        w.append_wide(frame)
    seg = next(folder.glob("date=*/seg-*.parquet"))
    table = pq.read_table(seg)
    pq.write_table(table, seg, row_group_size=250)  # 1800 rows: groups straddle the tags
    with Historian(folder) as r:
        pd.testing.assert_frame_equal(
            r.read(at(100), at(500), tags=["b"]), frame.iloc[100:500][["b"]]
        )
        pd.testing.assert_frame_equal(r.read(at(0), at(600)), frame)
