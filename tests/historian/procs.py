"""Writer and reader processes for the multi-process historian tests (run as scripts).

writer FOLDER FLUSH_S TICKS TICK_S [MERGE_SEGMENTS]: appends TICKS ticks of 5 tags, one tick
    every TICK_S seconds (timestamps one second apart), printing "appended i" after each.
reader FOLDER SECONDS OUT_JSON: reads the whole history again and again for SECONDS and checks
    that what it sees is always complete: a gap-free prefix of ticks with every tag present
    and every value right. Writes a summary to OUT_JSON.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from twin.historian import Historian, HistorianConfig
from twin.sample import Sample

TAGS = [f"t{j}" for j in range(5)]
# Ticks start a minute before midnight, so a run crosses a day boundary (and the writer then
# merges the closed day while readers read it).
BASE = datetime(2024, 3, 1, 23, 59, 0, tzinfo=UTC)


def value(i: int, j: int) -> float:
    return i * 1000.0 + j + 0.25


def tick(i: int) -> list[Sample]:
    ts = BASE + timedelta(seconds=i)
    return [Sample(ts, tag, value(i, j)) for j, tag in enumerate(TAGS)]


def check(frame) -> str | None:
    """None when `frame` is a complete, gap-free prefix of ticks; else what is wrong."""
    if frame.empty:
        return None
    expected_index = [BASE + timedelta(seconds=i) for i in range(len(frame))]
    if list(frame.index.to_pydatetime()) != expected_index:
        return f"timestamps are not a gap-free prefix (n={len(frame)})"
    if list(frame.columns) != TAGS:
        return f"columns {list(frame.columns)}"
    i = np.arange(len(frame))[:, None]
    expected = i * 1000.0 + np.arange(len(TAGS))[None, :] + 0.25
    if not np.array_equal(frame.to_numpy(), expected):
        return "values differ from what was written (a partial or torn read)"
    return None


def writer(
    folder: str, flush_s: float, ticks: int, tick_s: float, merge_segments: int = 16
) -> None:
    config = HistorianConfig(flush_interval_s=flush_s, merge_segments=merge_segments)
    h = Historian(folder, config=config)
    for i in range(ticks):
        h.append(tick(i))
        print(f"appended {i}", flush=True)
        time.sleep(tick_s)
    h.close()
    print("closed", flush=True)


def reader(folder: str, seconds: float, out: str) -> None:
    h = Historian(folder)
    end = BASE + timedelta(days=2)
    deadline = time.monotonic() + seconds
    reads, seen, errors = 0, [], []
    while time.monotonic() < deadline:
        try:
            frame = h.read(BASE, end, tags=TAGS)
        except Exception as exc:  # reported, and fails the test
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        problem = check(frame)
        if problem:
            errors.append(problem)
        if seen and len(frame) < seen[-1]:
            errors.append(f"data went backwards: {seen[-1]} -> {len(frame)} ticks")
        seen.append(len(frame))
        reads += 1
    with open(out, "w") as f:
        json.dump({"reads": reads, "seen": seen, "errors": errors[:20]}, f)


if __name__ == "__main__":
    role, args = sys.argv[1], sys.argv[2:]
    if role == "writer":
        writer(args[0], float(args[1]), int(args[2]), float(args[3]), *(int(a) for a in args[4:]))
    else:
        reader(args[0], float(args[1]), args[2])
