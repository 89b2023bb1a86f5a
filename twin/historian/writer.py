"""The write side of one plant folder: segments, manifests, tag ids, merges, crash recovery.

Only the process holding writer.lock runs this. The order of every step is what makes a
SIGKILL harmless: a segment is complete and durable before the manifest names it, tag ids are
durable before a segment uses them, and a merge's inputs are deleted only after the manifest
names the merged file instead. Whatever a crash leaves behind (temporary files, a segment the
manifest does not name yet, merge inputs not yet deleted) is tidied when the next writer opens.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import duckdb
import numpy as np

from twin.historian.columns import Columns, ordered_unique
from twin.historian.config import HistorianConfig
from twin.historian.latest import (
    LatestRows,
    merge_latest,
    newest_per_tag,
    read_latest,
    write_latest,
)
from twin.historian.layout import (
    SEGMENT_NAME,
    TMP_PREFIX,
    US_PER_DAY,
    Layout,
    Segment,
    fsync_dir,
)
from twin.historian.scan import FOOTERS, read_segments
from twin.historian.segments import write_segment
from twin.historian.writer_lock import WriterLock

log = logging.getLogger(__name__)

# Merge inputs stay on disk this long after leaving the manifest, so that a reader holding the
# previous manifest rarely has to retry.
TRASH_GRACE_S = 5.0


class SegmentWriter:
    """Turns buffered columns into segments; merges a day's segments; recovers after crashes."""

    def __init__(
        self, layout: Layout, config: HistorianConfig, con: duckdb.DuckDBPyConnection
    ) -> None:
        self.layout = layout
        self.config = config
        self._con = con
        self._lock = WriterLock(layout.lock_file)
        self.io_lock = threading.RLock()
        """Serialises manifest, tag-id and latest.json updates between the flusher and merger."""
        self._tags_lock = threading.Lock()
        self.tag_ids: dict[str, int] = {}
        self.names: list[str] = []
        self._persisted_tags = 0
        self._manifests: dict[int, list[Segment]] = {}
        self._next_seq = 0
        self._latest_seq = -1
        self._latest: LatestRows = {}
        self.max_day: int | None = None
        self._trash: list[tuple[float, Path]] = []
        self._merge_lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._lock.held

    # ---- opening and recovery -----------------------------------------------------------

    def open(self) -> None:
        """Take the writer lock (HistorianError if another writer has it) and tidy up after crashes."""
        if self._lock.held:
            return
        self._lock.acquire()
        try:
            with self.io_lock:
                self._recover()
        except BaseException:
            self._lock.release()
            raise

    def _recover(self) -> None:
        self.layout.root.mkdir(parents=True, exist_ok=True)
        self.tag_ids = self.layout.read_tag_ids()
        self.names = _names_by_id(self.tag_ids)
        self._persisted_tags = len(self.tag_ids)
        for day in self.layout.days():
            segs = self._reconcile_day(day)
            self._manifests[day] = segs
            if segs:
                self.max_day = day if self.max_day is None else max(self.max_day, day)
        his = [s.hi for segs in self._manifests.values() for s in segs]
        self._next_seq = max(his) + 1 if his else 0
        self._latest_seq, self._latest = read_latest(self.layout)
        if self._latest_seq < self._next_seq - 1:
            self._rebuild_latest()

    def _reconcile_day(self, day: int) -> list[Segment]:
        folder = self.layout.day_dir(day)
        segs = self.layout.read_manifest(day)
        listed = {s.name for s in segs}
        changed = False
        for name in sorted(os.listdir(folder)):
            path = folder / name
            if name.startswith(TMP_PREFIX):
                path.unlink(missing_ok=True)  # a write the previous writer never finished
                continue
            m = SEGMENT_NAME.match(name)
            if m is None or name in listed:
                continue
            lo, hi = int(m.group(1)), int(m.group(2))
            if any(s.lo <= lo and hi <= s.hi for s in segs):
                path.unlink(missing_ok=True)  # input of a merge that completed
                continue
            # Complete (it was renamed into place only after fsync) but not yet in the manifest.
            segs.append(self._describe(path, lo, hi))
            changed = True
        # A merged file adopted above supersedes the inputs the manifest still lists.
        keep = [
            s for s in segs if not any(o is not s and o.lo <= s.lo and s.hi <= o.hi for o in segs)
        ]
        for s in segs:
            if s not in keep:
                self._trash.append((0.0, folder / s.name))
                changed = True
        if changed:
            self.layout.write_manifest(day, keep)
            log.info("%s: recovered the manifest of %s", self.layout.root, folder.name)
        self.empty_trash(force=True)
        return sorted(keep, key=lambda s: s.lo)

    def _describe(self, path: Path, lo: int, hi: int) -> Segment:
        rows, lo_us, hi_us = (
            self._con.cursor()
            .sql(
                "SELECT count(*), epoch_us(min(ts)), epoch_us(max(ts)) FROM read_parquet("
                + "'"
                + str(path).replace("'", "''")
                + "')"
            )
            .fetchall()[0]
        )
        return Segment(
            name=path.name, lo=lo, hi=hi, rows=int(rows), min_us=int(lo_us), max_us=int(hi_us)
        )

    def _rebuild_latest(self) -> None:
        """latest.json lags the segments (a crash between the two writes): recompute it."""
        newer = [
            (day, s)
            for day, segs in self._manifests.items()
            for s in segs
            if s.hi > self._latest_seq
        ]
        if not newer:
            return
        paths = [self.layout.day_dir(day) / s.name for day, s in newer]
        cols = ordered_unique(read_segments(paths, None, None, None, True))
        self._latest = merge_latest(self._latest, newest_per_tag(cols, self.names))
        self._latest_seq = self._next_seq - 1
        write_latest(self.layout, self._latest_seq, self._latest)

    # ---- tag ids --------------------------------------------------------------------------

    def ids_for(self, tags: list[str]) -> np.ndarray:
        """Dense integer ids of `tags`, registering new ones (persisted before their first segment)."""
        with self._tags_lock:
            out = np.empty(len(tags), dtype=np.int32)
            for k, tag in enumerate(tags):
                i = self.tag_ids.get(tag)
                if i is None:
                    if not isinstance(tag, str) or not tag:
                        raise ValueError(f"tag name must be a non-empty string, got {tag!r}")
                    i = len(self.tag_ids)
                    self.tag_ids[tag] = i
                    self.names.append(tag)
                out[k] = i
            return out

    # ---- flushing -------------------------------------------------------------------------

    def write(self, cols: Columns) -> list[int]:
        """Store `cols` as one new segment per UTC day they touch; returns those days."""
        with self.io_lock:
            with self._tags_lock:
                names = list(self.names)
                if len(names) > self._persisted_tags:
                    self.layout.write_tag_ids(dict(self.tag_ids))
                    self._persisted_tags = len(names)
            days = cols.ts // US_PER_DAY
            first_day, last_day = int(days.min()), int(days.max())
            parts = (
                [(first_day, cols)]
                if first_day == last_day
                else [(int(d), cols.take(days == d)) for d in np.unique(days)]
            )
            newest: LatestRows = {}
            for day, part in parts:
                part = ordered_unique(part)
                seq = self._next_seq
                self._next_seq += 1
                seg = write_segment(self.layout.day_dir(day), part, seq, seq, names, self.config)
                segs = self._manifests.setdefault(day, []) + [seg]
                self._manifests[day] = segs
                self.layout.write_manifest(day, segs)
                newest = merge_latest(newest, newest_per_tag(part, names))
            self._latest = merge_latest(self._latest, newest)
            self._latest_seq = self._next_seq - 1
            write_latest(self.layout, self._latest_seq, self._latest)
            self.max_day = last_day if self.max_day is None else max(self.max_day, last_day)
            return [d for d, _ in parts]

    # ---- merging --------------------------------------------------------------------------

    def tail_to_merge(self, day: int) -> list[Segment]:
        """The day's newest run of small segments, when it is long enough to merge."""
        with self.io_lock:
            segs = sorted(self._manifests.get(day, []), key=lambda s: s.lo)
        run: list[Segment] = []
        for s in reversed(segs):
            if s.rows >= self.config.small_segment_rows:
                break
            run.append(s)
        return list(reversed(run)) if len(run) >= self.config.merge_segments else []

    def days_to_compact(self, before: int | None) -> list[int]:
        with self.io_lock:
            return sorted(
                d
                for d, segs in self._manifests.items()
                if len(segs) > 1 and (before is None or d < before)
            )

    def segments(self, day: int) -> list[Segment]:
        with self.io_lock:
            return sorted(self._manifests.get(day, []), key=lambda s: s.lo)

    def merge(self, day: int, inputs: list[Segment] | None = None) -> Segment | None:
        """Merge `inputs` (default: all of the day's segments) into one segment, atomically.

        Inputs must be a contiguous run in write order (all of a day, or its newest segments),
        so the merged file's single priority (the highest input sequence) is right for every row.
        """
        with self._merge_lock:  # one merge at a time: inputs of two merges must not overlap
            current = self.segments(day)
            if inputs is None:
                inputs = current
            if len(inputs) < 2 or not set(inputs) <= set(current):
                return None
            return self._merge(day, inputs)

    def _merge(self, day: int, inputs: list[Segment]) -> Segment:
        folder = self.layout.day_dir(day)
        cols = read_segments([folder / s.name for s in inputs], None, None, None, True)
        cols = ordered_unique(cols)
        with self._tags_lock:
            names = list(self.names)
        lo, hi = min(s.lo for s in inputs), max(s.hi for s in inputs)
        merged = write_segment(folder, cols, lo, hi, names, self.config)
        gone = {s.name for s in inputs}
        with self.io_lock:
            segs = [s for s in self._manifests.get(day, []) if s.name not in gone] + [merged]
            self._manifests[day] = segs
            self.layout.write_manifest(day, segs)
            deadline = time.monotonic() + TRASH_GRACE_S
            self._trash.extend((deadline, folder / name) for name in gone)
        log.debug(
            "%s: merged %d segments of %s into %s",
            self.layout.root,
            len(inputs),
            folder.name,
            merged.name,
        )
        return merged

    def empty_trash(self, force: bool = False) -> None:
        now = time.monotonic()
        with self.io_lock:
            due = [p for t, p in self._trash if force or t <= now]
            self._trash = [(t, p) for t, p in self._trash if not (force or t <= now)]
        folders = set()
        for path in due:
            path.unlink(missing_ok=True)
            folders.add(path.parent)
        FOOTERS.forget(due)
        for folder in folders:
            fsync_dir(folder)

    def close(self) -> None:
        self.empty_trash(force=True)
        self._lock.release()


def _names_by_id(ids: dict[str, int]) -> list[str]:
    names = [""] * len(ids)
    for name, i in ids.items():
        names[i] = name
    return names
