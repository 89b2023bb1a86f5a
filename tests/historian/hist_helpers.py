"""Shared helpers of the historian tests (a unique name: conftest modules are not importable)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

PROCS = Path(__file__).with_name("procs.py")
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def start_proc(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(PROCS), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def live_segments(folder: Path, day: str = "*") -> int:
    """Segments the manifests name (merge inputs wait a few seconds before deletion)."""
    import json

    return sum(
        len(json.loads(m.read_text())["segments"])
        for m in folder.glob(f"date={day}/_manifest.json")
    )
