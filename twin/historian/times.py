"""Time arguments of the historian API -> UTC microseconds since the epoch."""

from __future__ import annotations

from datetime import datetime
from typing import TypeAlias

import numpy as np
import pandas as pd

from twin.errors import BadInput
from twin.historian.layout import to_us

TimeLike: TypeAlias = datetime | pd.Timestamp | str


def as_datetime(value: TimeLike) -> datetime:
    """A UTC-aware datetime; naive values (and strings without an offset) are taken as UTC."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise BadInput(
            f"{value!r} is not a timestamp (use ISO 8601, e.g. 2024-05-01T00:00:00Z)"
        ) from exc
    if ts is pd.NaT:
        raise BadInput(f"{value!r} is not a timestamp")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def window_us(start: TimeLike, end: TimeLike) -> tuple[int, int]:
    start_us, end_us = to_us(as_datetime(start)), to_us(as_datetime(end))
    if end_us < start_us:
        raise BadInput(f"the window ends ({end}) before it starts ({start})")
    return start_us, end_us


def to_us_array(values: pd.Series | pd.Index) -> np.ndarray:
    """int64 microseconds since the epoch of UTC (or naive = UTC) datetimes."""
    index = pd.DatetimeIndex(values)
    if index.tz is None:
        index = index.tz_localize("UTC")
    if index.hasnans:
        raise ValueError("timestamps must not be missing (NaT)")
    return np.asarray(index.tz_convert("UTC").as_unit("us").asi8, dtype=np.int64)
