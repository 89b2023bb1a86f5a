"""The plant's clock, read from sample timestamps (the runtime never runs on the wall clock)."""

from __future__ import annotations

import math
import time
from collections import deque
from datetime import datetime, timedelta


def interval_of(ts: datetime, control_interval_s: float) -> int:
    """The control interval plant time `ts` falls in (intervals on the epoch grid): what the
    runtime counts its decisions and moves by."""
    return math.floor(ts.timestamp() / control_interval_s + 1e-9)


class PlantClock:
    """The plant's time, read from sample timestamps, running on between samples.

    Between samples the clock advances at the rate the plant's timestamps have been advancing
    against the wall clock (1 for a real plant, 20 for a simulator at --speed 20; never below
    1, so that a silent plant ages its data at least as fast as real time). A timestamp that
    goes back (a restarted simulator) resets it. Until the rate is `measured` (samples spanning
    1 s of wall time) the clock is only a lower bound: an accelerated plant that fell silent then
    would age its data at wall speed, many times slower than on its own clock, so the runtime
    neither proposes nor writes on an unmeasured clock.
    """

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self.last_ts: datetime | None = None
        self._last_mono = 0.0
        self._points: deque[tuple[float, datetime]] = deque()
        self.rate = 1.0
        self.measured = False

    def observe(self, ts: datetime, mono: float | None = None) -> None:
        mono = time.monotonic() if mono is None else mono
        if self.last_ts is not None and ts <= self.last_ts:
            return
        self.last_ts, self._last_mono = ts, mono
        self._points.append((mono, ts))
        if len(self._points) == 1:
            return
        while len(self._points) > 2 and mono - self._points[0][0] > self.window_s:
            self._points.popleft()
        m0, t0 = self._points[0]
        if mono - m0 >= 1.0:
            self.rate = max(1.0, (ts - t0).total_seconds() / (mono - m0))
            self.measured = True

    def mark_gap(self) -> None:
        """An outage: re-estimate the rate from fresh points once data flows again."""
        self._points.clear()

    def reset(self) -> None:
        self.last_ts = None
        self._points.clear()
        self.rate = 1.0
        self.measured = False

    def now(self, mono: float | None = None) -> datetime | None:
        if self.last_ts is None:
            return None
        mono = time.monotonic() if mono is None else mono
        return self.last_ts + timedelta(seconds=(mono - self._last_mono) * self.rate)
