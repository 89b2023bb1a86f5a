"""The embedded historian of one plant: Parquet segments per UTC day.

Any number of processes may read a plant folder while one process writes it; readers take no
lock. The first append (or compact()) makes an instance the plant's writer: it takes an
advisory lock, and a second writer gets a HistorianError naming the folder.

`Historian` is the one public face; its parts each own one side:
- twin.historian.incoming: what an append becomes (checked columns; non-finite values BAD);
- twin.historian.appender: the buffer, the background flusher and merger, compaction;
- twin.historian.queries: reads (wide and long frames, newest samples, extent, tags);
- twin.historian.annotations: marked time ranges ("campaign", "gap", ...).

Reads see flushed data only. Duplicated (tag, ts) keys resolve to the last written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from twin.historian import incoming
from twin.historian.annotations import add_annotation, list_annotations
from twin.historian.appender import Appender
from twin.historian.columns import Columns
from twin.historian.config import HistorianConfig
from twin.historian.layout import Layout
from twin.historian.queries import Queries
from twin.historian.times import TimeLike, as_datetime
from twin.sample import Quality, Sample


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
        self._appender = Appender(self.layout, config, self._duck)
        self._queries = Queries(self.layout, config, self._duck)

    @property
    def root(self) -> Path:
        return self.layout.root

    def __enter__(self) -> Historian:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        role = "writer" if self._appender.is_open else "reader"
        return f"Historian({str(self.root)!r}, {role})"

    # ---- writing --------------------------------------------------------------------------

    def append(self, samples: Iterable[Sample]) -> None:
        """Buffer samples; NaN/inf values are stored with BAD quality unless already flagged."""
        self._add(incoming.from_samples(samples, self._appender.ids_for))

    def append_frame(self, df: pd.DataFrame) -> None:
        """Buffer a long frame: ts (UTC), tag, value, quality (optional, default GOOD)."""
        self._add(incoming.from_long(df, self._appender.ids_for))

    def append_wide(self, df: pd.DataFrame, quality: Quality = Quality.GOOD) -> None:
        """Buffer a wide frame (UTC DatetimeIndex, one column per tag); NaN cells are missing samples."""
        self._add(incoming.from_wide(df, quality, self._appender.ids_for))

    def _add(self, cols: Columns | None) -> None:
        if cols is not None:
            self._appender.add(cols)

    def flush(self) -> None:
        """Write everything buffered so far as segments (durable when this returns)."""
        self._appender.flush()

    def compact(self, day: datetime | None = None) -> int:
        """Merge each day's segments (or only `day`'s) into one file; returns files merged away."""
        return self._appender.compact(day)

    def close(self) -> None:
        """Flush, stop the background threads and release the writer lock."""
        if self._appender.closed:
            return
        try:
            self._appender.close()
        finally:
            self._duck.close()

    # ---- reading ----------------------------------------------------------------------------

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
        return self._queries.read(start, end, tags, resample, good_only)

    def read_long(
        self, start: TimeLike, end: TimeLike, tags: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Long frame of [start, end): ts, tag, value, quality, sorted by ts then tag; all qualities."""
        return self._queries.read_long(start, end, tags)

    def latest(self, tags: Sequence[str] | None = None) -> dict[str, Sample]:
        """Newest flushed sample per tag (any quality), from a small file: no history scan."""
        return self._queries.latest(tags)

    def time_range(self) -> tuple[datetime, datetime] | None:
        """(first, last) stored timestamp, or None when nothing is stored."""
        return self._queries.time_range()

    def tags(self) -> list[str]:
        """Every tag name the historian has stored, by name."""
        return self._queries.tags()

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
