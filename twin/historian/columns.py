"""Samples as parallel numpy columns, and putting them in (tag, time) order without duplicates.

Every segment file is sorted by (tag id, ts) with each (tag, ts) once; that order is what makes
a day's read a plain reshape. The same routine resolves duplicates when a flush, a merge or a
read sees one key more than once: the row with the higher priority (write sequence) wins, and
between equal priorities the later row (written last) wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_INT16_MAX = np.iinfo(np.int16).max


@dataclass
class Columns:
    """Samples as columns: tag id, timestamp (us since epoch, UTC), value, quality."""

    tag_id: np.ndarray  # (N,) int32
    ts: np.ndarray  # (N,) int64 microseconds
    value: np.ndarray  # (N,) float64
    quality: np.ndarray  # (N,) int8
    prio: np.ndarray | None = None  # (N,) int64 write sequence; None when rows cannot collide

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, index: np.ndarray | slice) -> Columns:
        return Columns(
            self.tag_id[index],
            self.ts[index],
            self.value[index],
            self.quality[index],
            None if self.prio is None else self.prio[index],
        )

    @staticmethod
    def concat(parts: list[Columns]) -> Columns:
        if len(parts) == 1:
            return parts[0]
        prio = None
        if all(p.prio is not None for p in parts):
            prio = np.concatenate([p.prio for p in parts])
        return Columns(
            np.concatenate([p.tag_id for p in parts]),
            np.concatenate([p.ts for p in parts]),
            np.concatenate([p.value for p in parts]),
            np.concatenate([p.quality for p in parts]),
            prio,
        )


def strictly_ordered(tag_id: np.ndarray, ts: np.ndarray) -> bool:
    """True when rows are sorted by (tag, ts) with no key twice."""
    if len(ts) < 2:
        return True
    dc = np.diff(tag_id)
    dt = np.diff(ts)
    return bool(np.all((dc > 0) | ((dc == 0) & (dt > 0))))


def ordered_unique(cols: Columns) -> Columns:
    """`cols` sorted by (tag, ts), each key once (highest priority, then last row, wins)."""
    if strictly_ordered(cols.tag_id, cols.ts):
        return cols
    # Cheap case first: rows already in time order per tag (files listed in time order),
    # only interleaved by tag. A stable sort by the small tag id (radix for int16) fixes it.
    if len(cols) and int(cols.tag_id.max()) <= _INT16_MAX:
        order = np.argsort(cols.tag_id.astype(np.int16), kind="stable")
        if strictly_ordered(cols.tag_id[order], cols.ts[order]):
            return cols.take(order)
    order = _full_order(cols)
    tag_id, ts = cols.tag_id[order], cols.ts[order]
    last_of_key = np.ones(len(order), dtype=bool)
    last_of_key[:-1] = (tag_id[1:] != tag_id[:-1]) | (ts[1:] != ts[:-1])
    return cols.take(order[last_of_key])


def _full_order(cols: Columns) -> np.ndarray:
    """Stable order by (tag, ts[, prio]): among equal keys the winner comes last."""
    if cols.prio is not None:
        return np.lexsort((cols.prio, cols.ts, cols.tag_id))
    t0 = int(cols.ts.min())
    span = int(cols.ts.max()) - t0 + 1
    n_ids = int(cols.tag_id.max()) + 1
    if n_ids * span < 2**62:
        key = cols.tag_id.astype(np.int64) * span + (cols.ts - t0)
        return np.argsort(key, kind="stable")
    return np.lexsort((cols.ts, cols.tag_id))
