"""Reading rows of segment files with pyarrow: footers kept, row groups pruned, slices by key.

A segment is sorted by (tag id, ts) with each key once (twin.historian.segments), and its row
groups carry min/max statistics of tag_id and ts. A read therefore needs no query engine: keep
the row groups whose statistics can hold a wanted tag in the window, decode only the columns
the caller needs, and cut each wanted tag's rows out of the sorted columns with a binary search.
This has no per-query set-up (a DuckDB query costs ~15 ms before it reads a byte), which is
what small reads (a day of a few tags, the last minutes of a trend) used to pay on every
control-room rerun.

Footers (the parsed Parquet metadata and per-row-group statistics) are cached per file, keyed
by the file's identity (device, inode, size, modification time): segment files are never
modified in place, but a merge or a vacuum replaces or removes them, and a replaced path has a
new identity, so a stale footer is never used. The cache holds no open file.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from twin.historian.columns import Columns

_TS_TYPE = pa.timestamp("us", tz="UTC")
_NO_ROWS = np.empty(0, np.int64)
_FOOTERS_KEPT = 128
"""Footers cached per process (a compacted day of 100 tags at 1 s has a ~30 KB footer)."""


@dataclass(frozen=True)
class Footer:
    """What a read needs to know about one segment file before reading any of its rows."""

    identity: tuple[int, int, int, int]
    """(device, inode, size, mtime_ns) of the file the footer was read from."""
    metadata: pq.FileMetaData
    tag_lo: np.ndarray  # (G,) int64 per row group; stats missing: widest range
    tag_hi: np.ndarray  # (G,)
    ts_lo: np.ndarray  # (G,) int64 us
    ts_hi: np.ndarray  # (G,)

    def groups(self, start_us: int | None, end_us: int | None, ids: np.ndarray | None) -> list[int]:
        """Row groups that may hold rows of the wanted tags in [start, end)."""
        keep = np.ones(len(self.tag_lo), dtype=bool)
        if start_us is not None:
            keep &= self.ts_hi >= start_us
        if end_us is not None:
            keep &= self.ts_lo < end_us
        if ids is not None:
            # some wanted id in [lo, hi]: the first id >= lo must be <= hi
            k = np.searchsorted(ids, self.tag_lo, side="left")
            keep &= (k < len(ids)) & (ids[np.minimum(k, len(ids) - 1)] <= self.tag_hi)
        return np.flatnonzero(keep).tolist()


def _identity(path: Path) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _stat_us(stats: pq.Statistics | None, side: str, wide: int) -> int:
    if stats is None or not stats.has_min_max:
        return wide
    v = stats.min if side == "min" else stats.max
    if hasattr(v, "timestamp"):  # a datetime: exact microseconds via pyarrow
        return int(pa.scalar(v, type=_TS_TYPE).cast(pa.int64()).as_py())
    return int(v)


def _read_footer(path: Path, identity: tuple[int, int, int, int]) -> Footer:
    md = pq.read_metadata(path)
    names = md.schema.names
    tag_col, ts_col = names.index("tag_id"), names.index("ts")
    lo_wide, hi_wide = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    n = md.num_row_groups
    arrays = [np.empty(n, np.int64) for _ in range(4)]
    for g in range(n):
        rg = md.row_group(g)
        tag_stats, ts_stats = rg.column(tag_col).statistics, rg.column(ts_col).statistics
        arrays[0][g] = _stat_us(tag_stats, "min", lo_wide)
        arrays[1][g] = _stat_us(tag_stats, "max", hi_wide)
        arrays[2][g] = _stat_us(ts_stats, "min", lo_wide)
        arrays[3][g] = _stat_us(ts_stats, "max", hi_wide)
    return Footer(identity, md, *arrays)


class FooterCache:
    """Footers of recently read segment files, least recently used dropped first."""

    def __init__(self, size: int = _FOOTERS_KEPT) -> None:
        self.size = size
        self._items: OrderedDict[Path, Footer] = OrderedDict()
        self._lock = threading.Lock()
        self.reads = 0
        """Footers parsed from disk (a miss, or a file whose identity changed)."""

    def get(self, path: Path) -> Footer:
        identity = _identity(path)  # FileNotFoundError when a merge removed it: the caller retries
        with self._lock:
            hit = self._items.get(path)
            if hit is not None and hit.identity == identity:
                self._items.move_to_end(path)
                return hit
        footer = _read_footer(path, identity)
        with self._lock:
            self.reads += 1
            self._items[path] = footer
            self._items.move_to_end(path)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return footer

    def forget(self, paths: Sequence[Path]) -> None:
        """Drop the footers of files that are gone (a merge or a vacuum removed them)."""
        with self._lock:
            for p in paths:
                self._items.pop(Path(p), None)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, (str, Path)) and Path(path) in self._items


FOOTERS = FooterCache()
"""The process's footer cache (readers and writers of every plant folder share it)."""


def _numpy(table: pa.Table, name: str) -> np.ndarray:
    """One column as numpy: a read-only view of one chunk, or a writable join of several."""
    col = table.column(name)
    if name == "ts":  # microseconds since the epoch, whatever unit the file stored
        col = (col if col.type == _TS_TYPE else col.cast(_TS_TYPE)).cast(pa.int64())
    parts = [np.asarray(c.to_numpy(zero_copy_only=False), dtype=_DTYPES[name]) for c in col.chunks]
    if not parts:
        return np.empty(0, _DTYPES[name])
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _slices(
    tag_id: np.ndarray,
    ts: np.ndarray,
    ids: np.ndarray | None,
    start_us: int | None,
    end_us: int | None,
) -> list[tuple[int, int, int]]:
    """(tag id, first row, end row) of each wanted tag's rows in the window, in tag order.

    Needs rows sorted by (tag id, ts), which every segment is.
    """
    if ids is None:  # every tag present: the blocks are where the tag id changes
        lo = np.flatnonzero(np.r_[True, tag_id[1:] != tag_id[:-1]]) if len(tag_id) else _NO_ROWS
        hi = np.r_[lo[1:], len(tag_id)]
        ids = tag_id[lo]
    else:
        lo = np.searchsorted(tag_id, ids, side="left")
        hi = np.searchsorted(tag_id, ids, side="right")
    blocks = [(int(k), int(a), int(b)) for k, a, b in zip(ids, lo, hi, strict=True) if b > a]
    out = []
    for k, a, b in blocks:
        if start_us is not None:
            a += int(np.searchsorted(ts[a:b], start_us, side="left"))
        if end_us is not None:
            b = a + int(np.searchsorted(ts[a:b], end_us, side="left"))
        if b > a:
            out.append((k, a, b))
    return out


def read_segments(
    paths: Sequence[Path],
    start_us: int | None,
    end_us: int | None,
    tag_ids: Sequence[int] | None,
    with_prio: bool,
    good_only: bool = False,
    all_good: bool = False,
    *,
    footers: FooterCache = FOOTERS,
) -> Columns:
    """Rows of `paths` with start <= ts < end and tag_id in `tag_ids` (None: all).

    Rows come grouped by tag id (ascending); within a tag, file by file in the order of
    `paths`, each file's rows by time. So when `paths` are in time order and do not overlap,
    the result is sorted by (tag, ts) with each key once, as a wide frame wants it.
    good_only: values that are not GOOD and finite come back as NaN and quality as zeros.
    all_good: every row of `paths` is GOOD, so there is nothing to mask (quality is not read).
    with_prio: also the write sequence of each row (the `seq` column), to resolve duplicates.
    """
    ids = None if tag_ids is None else np.unique(np.asarray(tag_ids, dtype=np.int32))
    if ids is not None and len(ids) == 0:
        return _empty(with_prio)
    need_quality = not (good_only and all_good)
    names = ["tag_id", "ts", "value"] + (["quality"] if need_quality else [])
    names += ["seq"] if with_prio else []
    files: list[dict[str, np.ndarray]] = []
    blocks: list[tuple[int, int, int, int]] = []  # (tag id, file, first row, end row)
    for path in paths:
        footer = footers.get(Path(path))
        groups = footer.groups(start_us, end_us, ids)
        if not groups:
            continue
        pf = pq.ParquetFile(path, metadata=footer.metadata)
        table = pf.read_row_groups(groups, columns=names, use_threads=len(groups) > 4)
        cols = {n: _numpy(table, n) for n in names}
        f = len(files)
        files.append(cols)
        blocks += [
            (k, f, a, b) for k, a, b in _slices(cols["tag_id"], cols["ts"], ids, start_us, end_us)
        ]
    if not blocks:
        return _empty(with_prio)
    blocks.sort(key=lambda blk: (blk[0], blk[1]))  # by tag, then file order (stable in time)
    # Only the values reach the caller's frame, which must be writable; the rest stay views.
    out = {n: _gather([files[f][n] for _, f, _, _ in blocks], blocks, n == "value") for n in names}
    value, quality = out["value"], out.get("quality")
    if good_only and quality is not None:
        value = np.where((quality == 0) & np.isfinite(value), value, np.nan)
    if good_only or quality is None:
        quality = np.zeros(len(value), np.int8)
    return Columns(out["tag_id"], out["ts"], value, quality, out.get("seq"))


_DTYPES = {
    "tag_id": np.int32,
    "ts": np.int64,
    "value": np.float64,
    "quality": np.int8,
    "seq": np.int64,
}


def _gather(
    arrays: list[np.ndarray], blocks: list[tuple[int, int, int, int]], writable: bool
) -> np.ndarray:
    """The blocks' rows in block order (writable: never a view of pyarrow's read-only buffers)."""
    first = arrays[0]
    if all(a is first for a in arrays) and all(
        blocks[i][3] == blocks[i + 1][2] for i in range(len(blocks) - 1)
    ):  # one file, blocks back to back: a single slice
        piece = first[blocks[0][2] : blocks[-1][3]]
        return piece.copy() if writable and not piece.flags.writeable else piece
    return np.concatenate([a[lo:hi] for a, (_, _, lo, hi) in zip(arrays, blocks, strict=True)])


def _empty(with_prio: bool) -> Columns:
    return Columns(
        np.empty(0, np.int32),
        np.empty(0, np.int64),
        np.empty(0, np.float64),
        np.empty(0, np.int8),
        np.empty(0, np.int64) if with_prio else None,
    )
