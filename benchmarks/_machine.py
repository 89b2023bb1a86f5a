"""What every benchmark's JSON records about the machine it ran on."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any

REFERENCE_LOOP = 1_000_000
"""Iterations of the reference workload (reference_loop_ms)."""


@cache
def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it ("" where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return ""


def reference_loop_ms(repeats: int = 3) -> float:
    """CPU milliseconds of the calling thread over a fixed pure-Python loop (REFERENCE_LOOP
    additions), the median of `repeats` runs: how fast this host runs interpreted code right now.
    The thread's time, not the process's: a library thread spinning beside it (scipy's BLAS
    before twin.plan.threads) doubled the process's figure.

    Hosts of the same nominal size differ in speed (plan.py's decisions took 1.8x the CPU time
    on one 2-core host that they took on another), and a planning decision is mostly
    interpreter and small-tensor dispatch, so absolute timings from two runs compare only beside
    this figure (ratios measured within one run need no such help)."""
    runs = []
    for _ in range(repeats):
        start = time.thread_time()
        total = 0
        for i in range(REFERENCE_LOOP):
            total += i
        runs.append((time.thread_time() - start) * 1000.0)
    return statistics.median(runs)


def machine_info() -> dict[str, Any]:
    """Platform, Python, CPU count and model, the 1-minute load average at the time of writing
    and the reference workload's CPU time (reference_loop_ms)."""
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "load_average_1m": os.getloadavg()[0],
        "reference_loop_ms": reference_loop_ms(),
    }
