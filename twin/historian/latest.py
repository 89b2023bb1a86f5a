"""The newest sample per tag, kept in a small JSON file so `latest()` never scans history."""

from __future__ import annotations

import math

import numpy as np

from twin.historian.columns import Columns
from twin.historian.layout import Layout, from_us, read_json, write_json_atomic
from twin.sample import Quality, Sample

# tag -> (ts_us, value, quality)
LatestRows = dict[str, tuple[int, float, int]]


def newest_per_tag(cols: Columns, names_by_id: list[str]) -> LatestRows:
    """Newest row of each tag in `cols` (ordered and unique by (tag, ts))."""
    if len(cols) == 0:
        return {}
    last = np.ones(len(cols), dtype=bool)
    last[:-1] = cols.tag_id[1:] != cols.tag_id[:-1]
    idx = np.flatnonzero(last)
    return {
        names_by_id[int(cols.tag_id[i])]: (
            int(cols.ts[i]),
            float(cols.value[i]),
            int(cols.quality[i]),
        )
        for i in idx
    }


def merge_latest(current: LatestRows, newer: LatestRows) -> LatestRows:
    """Keep the sample with the later timestamp per tag; on equal timestamps the newer write."""
    merged = dict(current)
    for tag, row in newer.items():
        old = merged.get(tag)
        if old is None or row[0] >= old[0]:
            merged[tag] = row
    return merged


def read_latest(layout: Layout) -> tuple[int, LatestRows]:
    """(highest write sequence reflected, rows) from latest.json; (-1, {}) when absent."""
    raw = read_json(layout.latest_file)
    if raw is None:
        return -1, {}
    rows = {
        tag: (int(ts), math.nan if value is None else float(value), int(q))
        for tag, (ts, value, q) in raw["tags"].items()
    }
    return int(raw["seq"]), rows


def write_latest(layout: Layout, seq: int, rows: LatestRows) -> None:
    tags = {
        tag: [ts, value if math.isfinite(value) else None, q]
        for tag, (ts, value, q) in rows.items()
    }
    write_json_atomic(layout.latest_file, {"version": 1, "seq": seq, "tags": tags})


def to_samples(rows: LatestRows, tags: list[str] | None) -> dict[str, Sample]:
    wanted = rows.keys() if tags is None else [t for t in tags if t in rows]
    return {t: Sample(from_us(rows[t][0]), t, rows[t][1], Quality(rows[t][2])) for t in wanted}
