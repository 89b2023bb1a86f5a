"""What an append becomes: samples, long frames and wide frames as checked columns.

The one place where incoming rows are validated: every quality must be a known `Quality`, and
a value that is not finite is never stored as GOOD (safety rule 5: it is stored BAD).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from twin.historian.columns import Columns
from twin.historian.layout import EPOCH
from twin.historian.times import to_us_array
from twin.sample import Quality, Sample

IdsFor = Callable[[list[str]], np.ndarray]
"""Dense integer ids of tag names, registering new ones (SegmentWriter.ids_for)."""

_ONE_US = timedelta(microseconds=1)
_VALID_QUALITY = np.array([q.value for q in Quality], dtype=np.int8)


def checked(ids: np.ndarray, ts: np.ndarray, values: np.ndarray, quality: np.ndarray) -> Columns:
    """Columns of an append, quality checked and non-finite values marked BAD."""
    known = np.isin(quality, _VALID_QUALITY)
    if not known.all():
        bad = quality[~known][0]
        raise ValueError(f"quality {bad} is not one of {[q.name for q in Quality]}")
    nonfinite_good = (quality == Quality.GOOD) & ~np.isfinite(values)
    if nonfinite_good.any():
        quality = np.where(nonfinite_good, np.int8(Quality.BAD), quality)
    return Columns(ids.astype(np.int32, copy=False), ts, values, quality)


def from_samples(samples: Iterable[Sample], ids_for: IdsFor) -> Columns | None:
    """Samples as columns (None when there are none)."""
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
        return None
    return checked(
        ids_for(tags),
        np.array(ts, dtype=np.int64),
        np.array(values, dtype=np.float64),
        np.array(qualities, dtype=np.int8),
    )


def from_long(df: pd.DataFrame, ids_for: IdsFor) -> Columns | None:
    """A long frame (ts UTC, tag, value, quality optional: GOOD) as columns."""
    missing = {"ts", "tag", "value"} - set(df.columns)
    if missing:
        raise ValueError(f"append_frame needs columns ts, tag, value; missing {sorted(missing)}")
    if len(df) == 0:
        return None
    codes, uniques = pd.factorize(df["tag"], use_na_sentinel=False)
    ids = ids_for([str(u) for u in uniques])[codes]
    quality = (
        df["quality"].to_numpy(dtype=np.int8)
        if "quality" in df.columns
        else np.zeros(len(df), np.int8)
    )
    return checked(ids, to_us_array(df["ts"]), df["value"].to_numpy(dtype=np.float64), quality)


def from_wide(df: pd.DataFrame, quality: Quality, ids_for: IdsFor) -> Columns | None:
    """A wide frame (UTC DatetimeIndex, one column per tag) as columns; NaN cells are missing."""
    if len(df) == 0 or len(df.columns) == 0:
        return None
    ts = to_us_array(df.index)
    ids = ids_for([str(c) for c in df.columns])
    parts_id, parts_ts, parts_v = [], [], []
    for k, column in enumerate(df.columns):
        v = df[column].to_numpy(dtype=np.float64)
        present = ~np.isnan(v)
        parts_id.append(np.full(int(present.sum()), ids[k], dtype=np.int32))
        parts_ts.append(ts[present])
        parts_v.append(v[present])
    values = np.concatenate(parts_v)
    return checked(
        np.concatenate(parts_id),
        np.concatenate(parts_ts),
        values,
        np.full(len(values), int(quality), dtype=np.int8),
    )
