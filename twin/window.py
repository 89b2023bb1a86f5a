"""THE model input window: one rule for building it, used by training's data grid, `twin
propose`, `twin serve` and the control room's what-if alike.

Samples are put on the plant's sample grid (timestamps rounded to the grid, the last value in a
cell wins); a cell without a usable sample is missing (NaN, masked for the model), never zero
and never an older value, except for a tag whose source reports by exception: its last value
stands until it changes, for at most its max age (`PlantSpec.hold_s`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from twin.sample import Sample
from twin.spec import PlantSpec


def hold_reported_by_exception(grid: pd.DataFrame, spec: PlantSpec) -> pd.DataFrame:
    """Carry each report-by-exception tag's value forward on the grid, up to its max age."""
    period = spec.plant.sample_period_s
    for tag in grid.columns:
        if tag not in spec.tag_names:
            continue
        held = spec.hold_s(tag)
        if held is not None:
            grid[tag] = grid[tag].ffill(limit=max(0, int(held // period)))
    return grid


def lookback(spec: PlantSpec, samples: int) -> timedelta:
    """How far before a window's end its samples must be read: the window twice over (for the
    grid's edges), plus the longest a report-by-exception value may stand for the present."""
    period = spec.plant.sample_period_s
    held = max((h for t in spec.tag_names if (h := spec.hold_s(t)) is not None), default=0.0)
    return timedelta(seconds=period * (2 * samples + 1) + held)


def window_rows(
    frame: pd.DataFrame, spec: PlantSpec, tag_names: list[str], samples: int, end: datetime
) -> np.ndarray:
    """The `samples` grid instants up to `end`, as rows in `tag_names` order (NaN: missing).

    frame: wide, DatetimeIndex (UTC) of sample times, one column per tag, NaN for a sample
    that is not usable. It should reach back `lookback(spec, samples)`.
    """
    period = spec.plant.sample_period_s
    last = round(end.timestamp() / period)
    grid = np.arange(last - samples + 1, last + 1)
    if frame.empty:
        return np.full((samples, len(tag_names)), np.nan)
    stamps = frame.index.map(lambda t: t.timestamp()).to_numpy(dtype=float)
    k = np.round(stamps / period).astype(np.int64)
    cells = frame.groupby(k).last()
    first = min(int(cells.index.min()), int(grid[0]))
    on_grid = cells.reindex(np.arange(first, last + 1)).reindex(columns=spec.tag_names)
    on_grid = hold_reported_by_exception(on_grid, spec)
    return on_grid.reindex(grid)[tag_names].to_numpy(dtype=float)


def frame_of(samples: Iterable[Sample]) -> pd.DataFrame:
    """Samples -> the wide frame `window_rows` takes (a sample that is not usable is NaN)."""
    rows = [(s.ts, s.tag, s.value if s.usable else np.nan) for s in samples]
    if not rows:
        return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC"))
    long = pd.DataFrame(rows, columns=["ts", "tag", "value"])
    wide = long.groupby(["ts", "tag"])["value"].last().unstack("tag")
    wide.index = pd.DatetimeIndex(wide.index).tz_convert("UTC")
    return wide.sort_index()
