"""The read side: a consistent snapshot of segments, one DuckDB query, numpy to a wide frame.

A read takes each day's manifest (an atomic snapshot), asks DuckDB for the rows in the window
with predicate pushdown on tag id and time, and assembles the wide frame in numpy. A segment
that a concurrent compaction removed between the manifest read and the query makes DuckDB fail
to open it; the read then starts over from fresh manifests (the merged file has the same data).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import duckdb
import numpy as np
import pandas as pd

from twin.errors import BadInput, HistorianError
from twin.historian.columns import Columns, ordered_unique
from twin.historian.layout import Layout, Segment, day_of_us
from twin.historian.scan import read_segments
from twin.historian.segments import query_bin_means

log = logging.getLogger(__name__)

T = TypeVar("T")

# Larger grids than this (tags x bins) are refused rather than filling memory.
MAX_GRID_CELLS = 200_000_000


def snapshot(layout: Layout, start_us: int | None, end_us: int | None) -> list[list[Segment]]:
    """Per day in the window, the live segments that may hold rows of [start, end)."""
    first = day_of_us(start_us) if start_us is not None else None
    last = day_of_us(end_us - 1) if end_us is not None else None
    out = []
    for day in layout.days():
        if (first is not None and day < first) or (last is not None and day > last):
            continue
        segs = [
            s
            for s in layout.read_manifest(day)
            if (start_us is None or s.max_us >= start_us) and (end_us is None or s.min_us < end_us)
        ]
        if segs:
            out.append(sorted(segs, key=lambda s: (s.min_us, s.lo)))
    return out


def _overlapping(segs: list[Segment]) -> bool:
    """True when two segments of a day share a time range (then keys may repeat)."""
    reach = None
    for s in segs:  # sorted by min_us
        if reach is not None and s.min_us <= reach:
            return True
        reach = s.max_us if reach is None else max(reach, s.max_us)
    return False


def _on_snapshot(
    layout: Layout,
    start_us: int | None,
    end_us: int | None,
    retries: int,
    query: Callable[[list[Path], bool, bool], T],
) -> T | None:
    """query(paths, overlapping, all_good) on a fresh snapshot; again if a merge removed a file.

    None when nothing is stored in the window.
    """
    for attempt in range(retries):
        days = snapshot(layout, start_us, end_us)
        if not days:
            return None
        paths = [layout.day_dir(day_of_us(segs[0].min_us)) / s.name for segs in days for s in segs]
        try:
            overlapping = any(_overlapping(segs) for segs in days)
            return query(paths, overlapping, all(s.all_good for segs in days for s in segs))
        except (duckdb.IOException, OSError) as exc:  # OSError: pyarrow found a file gone
            missing = [p for p in paths if not p.exists()]
            if not missing:
                raise HistorianError(f"{layout.root}: cannot read segments: {exc}") from exc
            log.debug(
                "segment %s vanished under a merge; re-reading (try %d)", missing[0], attempt + 1
            )
            time.sleep(0.01 * (attempt + 1))
    raise HistorianError(f"{layout.root}: segments kept changing under {retries} read attempts")


def read_columns(
    layout: Layout,
    start_us: int | None,
    end_us: int | None,
    tag_ids: Sequence[int] | None,
    retries: int,
    *,
    good_only: bool = False,
    ordered: bool = True,
) -> Columns:
    """Stored rows in [start, end) for `tag_ids`, each (tag, ts) once (the last written).

    ordered: sorted by (tag id, ts). Without it, rows come in storage order, which saves a
    pass over the data when no two segments of a day overlap (then no key can repeat).
    good_only: unusable values (not GOOD, or not finite) come back as NaN, and quality is
    not read (zeros): the mask already carries it.
    """

    def query(paths: list[Path], overlapping: bool, all_good: bool) -> Columns:
        cols = read_segments(paths, start_us, end_us, tag_ids, overlapping, good_only, all_good)
        return ordered_unique(cols) if ordered or overlapping else cols

    cols = _on_snapshot(layout, start_us, end_us, retries, query)
    return _empty() if cols is None else cols


def read_bin_means(
    layout: Layout,
    con: duckdb.DuckDBPyConnection,
    start_us: int,
    end_us: int,
    tag_ids: Sequence[int],
    step_us: int,
    retries: int,
    good_only: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Per-bin means aggregated inside DuckDB, or None when segments overlap (then the caller
    must resolve duplicates first and average the rows itself)."""
    first = grid_start(start_us, step_us)

    def query(
        paths: list[Path], overlapping: bool, all_good: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        if overlapping:
            return None
        return query_bin_means(con, paths, start_us, end_us, tag_ids, first, step_us, good_only)

    empty = (np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.float64))
    result = _on_snapshot(layout, start_us, end_us, retries, query)
    if result is None and not snapshot(layout, start_us, end_us):
        return empty
    return result


def _empty() -> Columns:
    return Columns(
        np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.int8)
    )


def _time_index(us: np.ndarray) -> pd.DatetimeIndex:
    ns = us.astype(np.int64) * 1000
    return pd.DatetimeIndex(ns.view("datetime64[ns]"), name="timestamp").tz_localize("UTC")


def _groups(cols: Columns) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tag id, first row, end row) of each tag's contiguous block in ordered columns."""
    starts = np.flatnonzero(np.r_[True, cols.tag_id[1:] != cols.tag_id[:-1]])
    ends = np.r_[starts[1:], len(cols)]
    return cols.tag_id[starts], starts, ends


def wide_frame(cols: Columns, names: list[str], ids: list[int | None]) -> pd.DataFrame:
    """Unique rows -> DatetimeIndex x `names` (one column per name, in that order)."""
    if len(cols) == 0:
        return pd.DataFrame(
            {n: np.empty(0) for n in names}, index=_time_index(np.empty(0, np.int64))
        )
    values = cols.value
    group_ids, starts, ends = _groups(cols)
    column_of = np.full(int(group_ids.max()) + 1, -1, dtype=np.int64)
    for k, i in enumerate(ids):
        if i is not None and i < len(column_of):
            column_of[i] = k
    target = column_of[group_ids]
    lengths = ends - starts
    m = int(lengths[0])
    ts = cols.ts
    if (
        np.all(lengths == m)
        and len(np.unique(group_ids)) == len(group_ids)
        and np.all(ts[1:m] > ts[: m - 1])
        and np.array_equal(
            ts.reshape(len(group_ids), m), np.broadcast_to(ts[:m], (len(group_ids), m))
        )
    ):
        # Every tag sampled at the same instants (the usual case): the sorted values are
        # already the frame's columns, one contiguous block per tag.
        index_us = ts[:m]
        block = values.reshape(len(group_ids), m)
        if len(group_ids) != len(names) or not np.array_equal(target, np.arange(len(names))):
            full = np.full((len(names), m), np.nan)
            full[target] = block
            block = full
    else:
        index_us = np.unique(ts)
        rows = np.searchsorted(index_us, ts)
        cols_of_row = np.repeat(target, lengths)
        block = np.full((len(names), len(index_us)), np.nan)
        block[cols_of_row, rows] = values
    return pd.DataFrame(block.T, index=_time_index(index_us), columns=list(names), copy=False)


def parse_step_us(resample: str) -> int:
    try:
        step = pd.to_timedelta(resample)
    except (ValueError, TypeError) as exc:
        raise BadInput(f"resample {resample!r}: not a time interval like '10s' or '1min'") from exc
    us = int(step // pd.Timedelta(microseconds=1))
    if us <= 0:
        raise BadInput(f"resample {resample!r}: the interval must be positive")
    return us


def grid_start(start_us: int, step_us: int) -> int:
    """The epoch-aligned grid point at or before the window start."""
    return (start_us // step_us) * step_us


def grid_bins(start_us: int, end_us: int, step_us: int, n_tags: int) -> int:
    n_bins = max(0, -(-(end_us - grid_start(start_us, step_us)) // step_us))
    if n_bins * max(1, n_tags) > MAX_GRID_CELLS:
        raise BadInput(
            f"resample: {n_bins} bins x {n_tags} tags is too large; "
            "use a coarser interval or a shorter window"
        )
    return n_bins


def _column_lookup(ids: list[int | None], tag_id: np.ndarray) -> np.ndarray:
    """Column position of each row's tag id (-1 for tags not asked for)."""
    column_of = np.full(int(tag_id.max()) + 1 if len(tag_id) else 1, -1, dtype=np.int64)
    for k, i in enumerate(ids):
        if i is not None and i < len(column_of):
            column_of[i] = k
    return column_of[tag_id] if len(tag_id) else np.empty(0, np.int64)


def _grid_frame(means: np.ndarray, first: int, step_us: int, names: list[str]) -> pd.DataFrame:
    grid = first + np.arange(means.shape[1], dtype=np.int64) * step_us
    return pd.DataFrame(means.T, index=_time_index(grid), columns=list(names), copy=False)


def bin_means_frame(
    bins: tuple[np.ndarray, np.ndarray, np.ndarray],
    names: list[str],
    ids: list[int | None],
    start_us: int,
    end_us: int,
    step_us: int,
) -> pd.DataFrame:
    """(tag_id, bin, mean) rows from DuckDB -> the resampled wide frame (empty bins NaN)."""
    n_bins = grid_bins(start_us, end_us, step_us, len(names))
    tag_id, bin_, mean = bins
    col = _column_lookup(ids, tag_id)
    keep = (col >= 0) & (bin_ >= 0) & (bin_ < n_bins)
    means = np.full((len(names), n_bins), np.nan)
    means[col[keep], bin_[keep]] = mean[keep]
    return _grid_frame(means, grid_start(start_us, step_us), step_us, names)


def resampled_frame(
    cols: Columns,
    names: list[str],
    ids: list[int | None],
    start_us: int,
    end_us: int,
    step_us: int,
) -> pd.DataFrame:
    """Mean of the finite values per bin on the grid k * step (epoch-aligned) covering [start, end)."""
    first = grid_start(start_us, step_us)
    n_bins = grid_bins(start_us, end_us, step_us, len(names))
    col = _column_lookup(ids, cols.tag_id)
    keep = np.isfinite(cols.value) & (col >= 0)
    key = col[keep] * n_bins + (cols.ts[keep] - first) // step_us
    size = len(names) * n_bins
    sums = np.bincount(key, weights=cols.value[keep], minlength=size)
    counts = np.bincount(key, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return _grid_frame(means.reshape(len(names), n_bins), first, step_us, names)
