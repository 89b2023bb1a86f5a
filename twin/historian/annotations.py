"""Annotations: time ranges marked with a kind ("campaign" for step tests, "gap" for outages).

One small JSON file per annotation, written atomically under a unique name, so any process
(the writer or not) can annotate without a lock and a reader never sees half of one.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

import pandas as pd

from twin.historian.layout import Layout, from_us, read_json, to_us, write_json_atomic

COLUMNS = ["start", "end", "kind", "label", "meta"]


def add_annotation(
    layout: Layout, start: datetime, end: datetime, kind: str, label: str, meta: dict[str, Any]
) -> None:
    start_us, end_us = to_us(start), to_us(end)
    if end_us < start_us:
        raise ValueError(f"annotation {label!r}: end {end} is before start {start}")
    if not kind:
        raise ValueError("annotation kind must not be empty")
    name = f"ann-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
    record = {"start": start_us, "end": end_us, "kind": kind, "label": label, "meta": meta}
    write_json_atomic(layout.annotations_dir / name, record)


def list_annotations(
    layout: Layout,
    start: datetime | None = None,
    end: datetime | None = None,
    kind: str | None = None,
) -> pd.DataFrame:
    """Annotations overlapping [start, end] (either bound optional), oldest first."""
    folder = layout.annotations_dir
    records = []
    files = sorted(folder.glob("ann-*.json")) if folder.is_dir() else []
    lo = to_us(start) if start is not None else None
    hi = to_us(end) if end is not None else None
    for path in files:
        rec = read_json(path)
        if rec is None:
            continue
        if kind is not None and rec["kind"] != kind:
            continue
        if lo is not None and rec["end"] < lo:
            continue
        if hi is not None and rec["start"] > hi:
            continue
        records.append(
            {
                "start": from_us(rec["start"]),
                "end": from_us(rec["end"]),
                "kind": rec["kind"],
                "label": rec["label"],
                "meta": rec["meta"],
            }
        )
    frame = pd.DataFrame.from_records(records, columns=COLUMNS)
    frame["start"] = pd.to_datetime(frame["start"], utc=True)
    frame["end"] = pd.to_datetime(frame["end"], utc=True)
    return frame.sort_values("start", kind="stable").reset_index(drop=True)
