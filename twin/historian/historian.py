"""The embedded historian of one plant: Parquet segments per UTC day, queried through DuckDB.

Any number of processes may read a plant folder while one process writes it; readers take no
lock. The first append (or compact()) makes an instance the plant's writer: it takes an
advisory lock, and a second writer gets a HistorianError naming the folder.

Appends go to an in-memory buffer. A background flusher thread writes the buffer every
`flush_interval_s` (and flush()/close() write it at once), so a writer killed with SIGKILL loses
at most the samples of its last flush interval; what was flushed is never damaged. A second
background thread merges segments: a day's newest small segments once `merge_segments` of them
pile up, and every earlier day into one file when data for a later day arrives (a day rollover)
or a writer opens. compact() does the latter on demand.

Reads see flushed data only. Duplicated (tag, ts) keys resolve to the last written.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from twin.errors import HistorianError
from twin.historian.annotations import add_annotation, list_annotations
from twin.historian.columns import Columns
from twin.historian.config import HistorianConfig
from twin.historian.latest import read_latest, to_samples
from twin.historian.layout import EPOCH, Layout, from_us, to_us
from twin.historian.reader import (
    bin_means_frame,
    grid_bins,
    parse_step_us,
    read_bin_means,
    read_columns,
    resampled_frame,
    wide_frame,
)
from twin.historian.times import TimeLike, as_datetime, to_us_array, window_us
from twin.historian.writer import SegmentWriter
from twin.sample import Quality, Sample

log = logging.getLogger(__name__)

_ONE_US = timedelta(microseconds=1)
_VALID_QUALITY = np.array([q.value for q in Quality], dtype=np.int8)
# The caller's thread flushes itself once this many rows wait (back-pressure on bulk loads).
_BUFFER_LIMIT_ROWS = 5_000_000
_SQL_RESAMPLE_MAX_CELLS = 2_000_000


class Historian:
    """Time-series store of one plant folder (`Home.historian_dir(plant)`)."""

    def __init__(
        self,
        root: Path | str,
        flush_interval_s: float | None = None,
        *,
        config: HistorianConfig | None = None,
    ) -> None:
        config = config or HistorianConfig()
        if flush_interval_s is not None:
            config = dataclasses.replace(config, flush_interval_s=flush_interval_s)
        self.config = config
        self.layout = Layout(Path(root))
        self._duck = duckdb.connect()
        self._writer = SegmentWriter(self.layout, config, self._duck)
        self._buffer: list[Columns] = []
        self._buffered_rows = 0
        self._buffer_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._merges: queue.Queue[tuple[str, int] | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._background_error: BaseException | None = None
        self._closed = False

    @property
    def root(self) -> Path:
        return self.layout.root

    def __enter__(self) -> Historian:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        role = "writer" if self._writer.is_open else "reader"
        return f"Historian({str(self.root)!r}, {role})"

    # ---- writing --------------------------------------------------------------------------

    def append(self, samples: Iterable[Sample]) -> None:
        """Buffer samples; NaN/inf values are stored with BAD quality unless already flagged."""
        tags: list[str] = []
        ts: list[int] = []
        values: list[float] = []
        qualities: list[int] = []
        add_tag, add_ts, add_value, add_quality = (
            tags.append,
            ts.append,
            values.append,
            qualities.append,
        )
        last_dt: datetime | None = None
        last_us = 0
        for s in samples:
            if s.ts is not last_dt:  # samples of one scan share one datetime object
                last_dt, last_us = s.ts, (s.ts - EPOCH) // _ONE_US
            add_ts(last_us)
            add_tag(s.tag)
            add_value(s.value)
            add_quality(s.quality)
        if not ts:
            return
        self._open_writer()
        self._add(
            self._writer.ids_for(tags),
            np.array(ts, dtype=np.int64),
            np.array(values, dtype=np.float64),
            np.array(qualities, dtype=np.int8),
        )

    def append_frame(self, df: pd.DataFrame) -> None:
        """Buffer a long frame: ts (UTC), tag, value, quality (optional, default GOOD)."""
        missing = {"ts", "tag", "value"} - set(df.columns)
        if missing:
            raise ValueError(
                f"append_frame needs columns ts, tag, value; missing {sorted(missing)}"
            )
        if len(df) == 0:
            return
        self._open_writer()
        codes, uniques = pd.factorize(df["tag"], use_na_sentinel=False)
        ids = self._writer.ids_for([str(u) for u in uniques])[codes]
        quality = (
            df["quality"].to_numpy(dtype=np.int8)
            if "quality" in df.columns
            else np.zeros(len(df), np.int8)
        )
        self._add(ids, to_us_array(df["ts"]), df["value"].to_numpy(dtype=np.float64), quality)

    def append_wide(self, df: pd.DataFrame, quality: Quality = Quality.GOOD) -> None:
        """Buffer a wide frame (UTC DatetimeIndex, one column per tag); NaN cells are missing samples."""
        if len(df) == 0 or len(df.columns) == 0:
            return
        self._open_writer()
        ts = to_us_array(df.index)
        ids = self._writer.ids_for([str(c) for c in df.columns])
        parts_id, parts_ts, parts_v = [], [], []
        for k, column in enumerate(df.columns):
            v = df[column].to_numpy(dtype=np.float64)
            present = ~np.isnan(v)
            parts_id.append(np.full(int(present.sum()), ids[k], dtype=np.int32))
            parts_ts.append(ts[present])
            parts_v.append(v[present])
        values = np.concatenate(parts_v)
        self._add(
            np.concatenate(parts_id),
            np.concatenate(parts_ts),
            values,
            np.full(len(values), int(quality), dtype=np.int8),
        )

    def _add(
        self, ids: np.ndarray, ts: np.ndarray, values: np.ndarray, quality: np.ndarray
    ) -> None:
        if not np.isin(quality, _VALID_QUALITY).all():
            bad = quality[~np.isin(quality, _VALID_QUALITY)][0]
            raise ValueError(f"quality {bad} is not one of {[q.name for q in Quality]}")
        # Safety rule 5: a non-finite value is never stored as good data.
        nonfinite_good = (quality == Quality.GOOD) & ~np.isfinite(values)
        if nonfinite_good.any():
            quality = np.where(nonfinite_good, np.int8(Quality.BAD), quality)
        cols = Columns(ids.astype(np.int32, copy=False), ts, values, quality)
        with self._buffer_lock:
            self._raise_background_error()
            self._buffer.append(cols)
            self._buffered_rows += len(cols)
            full = self._buffered_rows >= _BUFFER_LIMIT_ROWS
        if full:
            self.flush()

    def flush(self) -> None:
        """Write everything buffered so far as segments (durable when this returns)."""
        with self._flush_lock:
            with self._buffer_lock:
                chunks, self._buffer, self._buffered_rows = self._buffer, [], 0
            if not chunks:
                return
            newest_before = self._writer.max_day
            try:
                days = self._writer.write(Columns.concat(chunks))
            except BaseException:
                with self._buffer_lock:  # keep the samples for the next attempt
                    self._buffer[:0] = chunks
                    self._buffered_rows += sum(len(c) for c in chunks)
                raise
        for day in days:
            self._merges.put(("tail", day))
        newest = self._writer.max_day
        if newest_before is not None and newest is not None and newest > newest_before:
            self._queue_closed_days()

    def _queue_closed_days(self) -> None:
        """Merge every day before the newest into one file (on a day rollover, or at open).

        Not on every flush: late data for an old day only gets tail merges until the next
        rollover, so a backfill does not rewrite a whole day per flush.
        """
        if self.config.compact_closed_days and self._writer.max_day is not None:
            for day in self._writer.days_to_compact(before=self._writer.max_day):
                self._merges.put(("day", day))

    def compact(self, day: datetime | None = None) -> int:
        """Merge each day's segments (or only `day`'s) into one file; returns files merged away."""
        self._open_writer()
        self.flush()
        if day is not None:
            days = [to_us(as_datetime(day)) // 86_400_000_000]
        else:
            days = self._writer.days_to_compact(before=None)
        removed = 0
        for d in days:
            count = len(self._writer.segments(d))
            if self._writer.merge(d) is not None:
                removed += count - 1
        self._writer.empty_trash()
        return removed

    def close(self) -> None:
        """Flush, stop the background threads and release the writer lock."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._writer.is_open:
                self.flush()
        finally:
            self._stop.set()
            self._merges.put(None)
            for t in self._threads:
                t.join(timeout=60)
            if self._writer.is_open:
                self._writer.close()
            self._duck.close()
        self._raise_background_error()

    # ---- background threads -----------------------------------------------------------------

    def _open_writer(self) -> None:
        if self._closed:
            raise HistorianError(f"{self.root}: historian is closed")
        if self._writer.is_open:
            return
        self._writer.open()
        self._threads = [
            threading.Thread(target=self._flush_loop, name="historian-flush", daemon=True),
            threading.Thread(target=self._merge_loop, name="historian-merge", daemon=True),
        ]
        for t in self._threads:
            t.start()
        self._queue_closed_days()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.config.flush_interval_s):
            try:
                self.flush()
            except Exception as exc:  # kept and re-raised to the caller on its next append
                log.exception("%s: background flush failed", self.root)
                self._background_error = exc

    def _merge_loop(self) -> None:
        pending: set[tuple[str, int]] = set()
        while True:
            try:
                job = self._merges.get(timeout=1.0)
            except queue.Empty:
                self._writer.empty_trash()
                continue
            if job is None:
                return
            if job in pending:
                continue
            pending.add(job)
            while True:  # drain duplicates queued meanwhile
                try:
                    more = self._merges.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    return
                pending.add(more)
            for kind, day in sorted(pending):
                try:
                    if kind == "tail":
                        inputs = self._writer.tail_to_merge(day)
                        if inputs:
                            self._writer.merge(day, inputs)
                    else:
                        self._writer.merge(day)
                except Exception as exc:
                    log.exception("%s: merging day %d failed", self.root, day)
                    self._background_error = exc
                if self._stop.is_set():
                    return
            pending.clear()
            self._writer.empty_trash()

    def _raise_background_error(self) -> None:
        if self._background_error is not None:
            exc, self._background_error = self._background_error, None
            raise HistorianError(f"{self.root}: background write failed: {exc}") from exc

    # ---- reading ----------------------------------------------------------------------------

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
            self._duck.cursor(),
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
        """Wide frame of [start, end): DatetimeIndex (UTC, "timestamp") x tags.

        tags None: every tag with data in the window, by name. resample "10s": the mean of the
        usable values in each bin of an epoch-aligned grid covering the window (empty bins NaN).
        good_only: values that are not GOOD and finite read as NaN (as missing).
        """
        start_us, end_us = window_us(start, end)
        names, ids = self._tag_selection(tags)
        if resample is not None and names is not None:
            step = parse_step_us(resample)
            cells = grid_bins(start_us, end_us, step, len(names)) * len(names)
            # DuckDB's hash aggregation wins on coarse grids; on fine ones (about one sample
            # per bin) numpy's bincount over the rows is faster.
            bins = None
            if cells <= _SQL_RESAMPLE_MAX_CELLS:
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
        """Long frame of [start, end): ts, tag, value, quality, sorted by ts then tag; all qualities."""
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

    # ---- annotations ----------------------------------------------------------------------

    def annotate(
        self,
        start: TimeLike,
        end: TimeLike,
        kind: str,
        label: str,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Mark [start, end] with a kind ("campaign", "gap", ...); needs no writer lock."""
        add_annotation(self.layout, as_datetime(start), as_datetime(end), kind, label, meta or {})

    def annotations(
        self, start: TimeLike | None = None, end: TimeLike | None = None, kind: str | None = None
    ) -> pd.DataFrame:
        """Annotations overlapping [start, end]: columns start, end, kind, label, meta."""
        return list_annotations(
            self.layout,
            None if start is None else as_datetime(start),
            None if end is None else as_datetime(end),
            kind,
        )


def _names(ids: dict[str, int]) -> list[str]:
    names = [""] * len(ids)
    for n, i in ids.items():
        names[i] = n
    return names
