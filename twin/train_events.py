"""Training progress as structured events: one JSON object per line, appended as training goes.

Whoever watches a training run (the control room's Twin page, a fleet driver, a script) reads
these events instead of the progress bars' text. `twin train --events FILE` turns them on for
the process; the trainer reports through `emit`, which does nothing when no file is set.

Events (every one has `event` and `ts`, seconds since the epoch):

- `start`: `plant`, `pid`
- `epoch`: `stage` (jepa, observation model, ...), `epoch` (0-based), `epochs` (most),
  and that epoch's mean losses and `val`
- `stage_end`: `stage`, `stopped` (why it ended: early stop, all epochs, the safety net), `best_val`
- `done`: `version`, `seconds`
- `failed`: `error`
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

_sink: TextIO | None = None


@contextmanager
def recording(path: Path | None) -> Iterator[None]:
    """Append this process's training events to `path` while the block runs (None: off)."""
    global _sink
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = _sink
    with path.open("a", encoding="utf-8") as f:
        _sink = f
        try:
            yield
        finally:
            _sink = previous


def emit(event: str, **fields: Any) -> None:
    """Record one event (a no-op unless `recording` is active). Non-finite numbers become null."""
    if _sink is None:
        return
    record = {"event": event, "ts": round(time.time(), 3)} | {
        k: _plain(v) for k, v in fields.items()
    }
    _sink.write(json.dumps(record, allow_nan=False) + "\n")
    _sink.flush()
    if event in ("done", "failed"):
        os.fsync(_sink.fileno())  # the run's outcome survives a crash right after it


def read(path: Path) -> list[dict[str, Any]]:
    """The events recorded so far. A last line still being written is left for the next read."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a partial last line, or a stray line: not an event
        if isinstance(record, dict) and isinstance(record.get("event"), str):
            out.append(record)
    return out


def _plain(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, int | float | str | bool) or v is None:
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)
