"""The write side of a historian: the append buffer, the background flusher and merger, compaction.

Appends go to an in-memory buffer. A background flusher thread writes the buffer every
`flush_interval_s` (and flush()/close() write it at once), so a writer killed with SIGKILL loses
at most the samples of its last flush interval; what was flushed is never damaged. A second
background thread merges segments: a day's newest small segments once `merge_segments` of them
pile up, and every earlier day into one file when data for a later day arrives (a day rollover)
or a writer opens. compact() does the latter on demand.

The first append (or compact()) opens the writer: the plant folder's advisory lock is taken then,
and a second writer gets a HistorianError naming the folder.
"""

from __future__ import annotations

import logging
import queue
import threading
from datetime import datetime

import duckdb
import numpy as np

from twin.errors import HistorianError
from twin.historian.columns import Columns
from twin.historian.config import HistorianConfig
from twin.historian.layout import Layout, to_us
from twin.historian.times import as_datetime
from twin.historian.writer import SegmentWriter

log = logging.getLogger(__name__)

BUFFER_LIMIT_ROWS = 5_000_000
"""The caller's thread flushes itself once this many rows wait (back-pressure on bulk loads)."""


class Appender:
    """Buffer, flusher and merger of one plant folder's writer."""

    def __init__(self, layout: Layout, config: HistorianConfig, duck: duckdb.DuckDBPyConnection):
        self.layout = layout
        self.config = config
        self.writer = SegmentWriter(layout, config, duck)
        self._buffer: list[Columns] = []
        self._buffered_rows = 0
        self._buffer_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._merges: queue.Queue[tuple[str, int] | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._background_error: BaseException | None = None
        self.closed = False

    @property
    def is_open(self) -> bool:
        """True once this instance is the plant's writer."""
        return self.writer.is_open

    def ids_for(self, tags: list[str]) -> np.ndarray:
        """Dense ids of `tags` (registering new ones): opens the writer first."""
        self.open()
        return self.writer.ids_for(tags)

    # ---- buffering and flushing -----------------------------------------------------------

    def add(self, cols: Columns) -> None:
        """Buffer checked columns (twin.historian.incoming)."""
        self.open()
        with self._buffer_lock:
            self.raise_background_error()
            self._buffer.append(cols)
            self._buffered_rows += len(cols)
            full = self._buffered_rows >= BUFFER_LIMIT_ROWS
        if full:
            self.flush()

    def flush(self) -> None:
        """Write everything buffered so far as segments (durable when this returns)."""
        with self._flush_lock:
            with self._buffer_lock:
                chunks, self._buffer, self._buffered_rows = self._buffer, [], 0
            if not chunks:
                return
            newest_before = self.writer.max_day
            try:
                days = self.writer.write(Columns.concat(chunks))
            except BaseException:
                with self._buffer_lock:  # keep the samples for the next attempt
                    self._buffer[:0] = chunks
                    self._buffered_rows += sum(len(c) for c in chunks)
                raise
        for day in days:
            self._merges.put(("tail", day))
        newest = self.writer.max_day
        if newest_before is not None and newest is not None and newest > newest_before:
            self._queue_closed_days()

    def _queue_closed_days(self) -> None:
        """Merge every day before the newest into one file (on a day rollover, or at open).

        Not on every flush: late data for an old day only gets tail merges until the next
        rollover, so a backfill does not rewrite a whole day per flush.
        """
        if self.config.compact_closed_days and self.writer.max_day is not None:
            for day in self.writer.days_to_compact(before=self.writer.max_day):
                self._merges.put(("day", day))

    def compact(self, day: datetime | None = None) -> int:
        """Merge each day's segments (or only `day`'s) into one file; returns files merged away."""
        self.open()
        self.flush()
        if day is not None:
            days = [to_us(as_datetime(day)) // 86_400_000_000]
        else:
            days = self.writer.days_to_compact(before=None)
        removed = 0
        for d in days:
            count = len(self.writer.segments(d))
            if self.writer.merge(d) is not None:
                removed += count - 1
        self.writer.empty_trash()
        return removed

    def close(self) -> None:
        """Flush, stop the background threads and release the writer lock."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.writer.is_open:
                self.flush()
        finally:
            self._stop.set()
            self._merges.put(None)
            for t in self._threads:
                t.join(timeout=60)
            if self.writer.is_open:
                self.writer.close()
        self.raise_background_error()

    # ---- background threads -----------------------------------------------------------------

    def open(self) -> None:
        """Become the plant's writer (once): take the lock, start the flusher and merger."""
        if self.closed:
            raise HistorianError(f"{self.layout.root}: historian is closed")
        if self.writer.is_open:
            return
        self.writer.open()
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
                log.exception("%s: background flush failed", self.layout.root)
                self._background_error = exc

    def _merge_loop(self) -> None:
        pending: set[tuple[str, int]] = set()
        while True:
            try:
                job = self._merges.get(timeout=1.0)
            except queue.Empty:
                self.writer.empty_trash()
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
                self._merge(kind, day)
                if self._stop.is_set():
                    return
            pending.clear()
            self.writer.empty_trash()

    def _merge(self, kind: str, day: int) -> None:
        try:
            if kind == "tail":
                inputs = self.writer.tail_to_merge(day)
                if inputs:
                    self.writer.merge(day, inputs)
            else:
                self.writer.merge(day)
        except Exception as exc:
            log.exception("%s: merging day %d failed", self.layout.root, day)
            self._background_error = exc

    def raise_background_error(self) -> None:
        if self._background_error is not None:
            exc, self._background_error = self._background_error, None
            raise HistorianError(f"{self.layout.root}: background write failed: {exc}") from exc
