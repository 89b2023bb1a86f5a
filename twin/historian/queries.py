"""The read side of a historian: wide and long frames of a window, the newest samples, the extent.

Readers take no lock and see flushed data only; duplicated (tag, ts) keys resolve to the last
written. The row-level work is in twin.historian.reader (snapshots, frames) and
twin.historian.scan (segment files); this class turns tag names into ids and picks the path.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd

from twin.historian.columns import Columns
from twin.historian.config import HistorianConfig
from twin.historian.latest import read_latest, to_samples
from twin.historian.layout import Layout, from_us
from twin.historian.reader import (
    bin_means_frame,
    grid_bins,
    parse_step_us,
    read_bin_means,
    read_columns,
    resampled_frame,
    wide_frame,
)
from twin.historian.times import TimeLike, window_us
from twin.sample import Sample

SQL_RESAMPLE_MAX_CELLS = 2_000_000
"""Resampled grids up to this many cells are averaged inside DuckDB; finer ones in numpy."""


class Queries:
    """Reads of one plant folder."""

    def __init__(self, layout: Layout, config: HistorianConfig, duck: duckdb.DuckDBPyConnection):
        self.layout = layout
        self.config = config
        self._duck = duck

    def _tag_selection(
        self, tags: Sequence[str] | None
    ) -> tuple[list[str] | None, list[int | None]]:
        known = self.layout.read_tag_ids()
        if tags is None:
            all_ids: list[int | None] = [*sorted(known.values())]
            return None, all_ids
        names = list(tags)
        return names, [known.get(t) for t in names]

    def _columns(
        self, start_us: int, end_us: int, ids: list[int | None], good_only: bool, ordered: bool
    ) -> Columns:
        return read_columns(
            self.layout,
            start_us,
            end_us,
            [i for i in ids if i is not None],
            self.config.read_retries,
            good_only=good_only,
            ordered=ordered,
        )

    def read(
        self,
        start: TimeLike,
        end: TimeLike,
        tags: Sequence[str] | None = None,
        resample: str | None = None,
        good_only: bool = True,
    ) -> pd.DataFrame:
        """Wide frame of [start, end) (see Historian.read)."""
        start_us, end_us = window_us(start, end)
        names, ids = self._tag_selection(tags)
        if resample is not None and names is not None:
            step = parse_step_us(resample)
            cells = grid_bins(start_us, end_us, step, len(names)) * len(names)
            # DuckDB's hash aggregation wins on coarse grids; on fine ones (about one sample
            # per bin) numpy's bincount over the rows is faster.
            bins = None
            if cells <= SQL_RESAMPLE_MAX_CELLS:
                bins = read_bin_means(
                    self.layout,
                    self._duck.cursor(),
                    start_us,
                    end_us,
                    [i for i in ids if i is not None],
                    step,
                    self.config.read_retries,
                    good_only,
                )
            if bins is not None:  # aggregated inside DuckDB; None: overlapping segments
                return bin_means_frame(bins, names, ids, start_us, end_us, step)
        cols = self._columns(start_us, end_us, ids, good_only, ordered=False)
        if names is None:
            known = self.layout.read_tag_ids()
            by_id = {i: n for n, i in known.items()}
            present = sorted(by_id[int(i)] for i in np.unique(cols.tag_id))
            names, ids = present, [known[n] for n in present]
        if resample is not None:
            step = parse_step_us(resample)
            return resampled_frame(cols, names, ids, start_us, end_us, step)
        return wide_frame(cols, names, ids)

    def read_long(
        self, start: TimeLike, end: TimeLike, tags: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Long frame of [start, end) (see Historian.read_long)."""
        start_us, end_us = window_us(start, end)
        _, ids = self._tag_selection(tags)
        cols = self._columns(start_us, end_us, ids, good_only=False, ordered=True)
        names = np.array(_names(self.layout.read_tag_ids()) or [""], dtype=object)
        order = np.lexsort((names[cols.tag_id], cols.ts)) if len(cols) else np.empty(0, np.int64)
        return pd.DataFrame(
            {
                "ts": pd.DatetimeIndex((cols.ts[order] * 1000).view("datetime64[ns]")).tz_localize(
                    "UTC"
                ),
                "tag": names[cols.tag_id[order]],
                "value": cols.value[order],
                "quality": cols.quality[order],
            }
        )

    def latest(self, tags: Sequence[str] | None = None) -> dict[str, Sample]:
        """Newest flushed sample per tag (any quality), from a small file: no history scan."""
        _, rows = read_latest(self.layout)
        return to_samples(rows, None if tags is None else list(tags))

    def time_range(self) -> tuple[datetime, datetime] | None:
        """(first, last) stored timestamp, or None when nothing is stored."""
        days = self.layout.days()
        first = last = None
        for day in days:
            segs = self.layout.read_manifest(day)
            if segs:
                first = min(s.min_us for s in segs)
                break
        for day in reversed(days):
            segs = self.layout.read_manifest(day)
            if segs:
                last = max(s.max_us for s in segs)
                break
        if first is None or last is None:
            return None
        return from_us(first), from_us(last)

    def tags(self) -> list[str]:
        """Every tag name the historian has stored, by name."""
        return sorted(self.layout.read_tag_ids())


def _names(ids: dict[str, int]) -> list[str]:
    names = [""] * len(ids)
    for n, i in ids.items():
        names[i] = n
    return names
