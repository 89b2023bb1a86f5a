"""The live plant as the runtime sees it: each tag's newest sample, a short buffer for the
model's window, and control intervals counted on the plant's own clock."""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from twin.guard import SensorFault, sensor_faults
from twin.sample import Quality, Sample
from twin.serve.clock import PlantClock, interval_of
from twin.spec import PlantSpec
from twin.window import frame_of, window_rows

log = logging.getLogger(__name__)


@dataclass
class LiveUpdate:
    """What one batch changed that the runtime must act on."""

    tick: bool = False
    """A control interval of plant time ended."""
    clock_reset: datetime | None = None
    """The plant's clock went back (a restarted simulator): the old timeline's clock time."""
    clock_jump_s: float | None = None
    """The plant's clock leapt forward by this many seconds."""
    behind: dict[str, float] = field(default_factory=dict)
    """Tags whose samples arrived far behind the plant clock (a device clock off): seconds."""


class LiveState:
    """Each tag's newest sample as received (an older good value never stands in for a newer
    bad one), a buffer of recent samples for the window, and the plant clock."""

    def __init__(self, spec: PlantSpec, keep_s: float) -> None:
        self.spec = spec
        self.keep_s = keep_s
        self.clock = PlantClock()
        self.latest: dict[str, Sample] = {}
        self._buffer: deque[Sample] = deque()
        self._tick: int | None = None
        self.first_ts: datetime | None = None
        """Newest plant time of the first batch this process received."""

    @property
    def period_s(self) -> float:
        return self.spec.plant.sample_period_s

    def newest_ts(self) -> datetime | None:
        """Newest source timestamp of any usable sample."""
        return max((s.ts for s in self.latest.values() if s.usable), default=None)

    def last_heard(self) -> datetime | None:
        """Newest source timestamp of any sample or outage marker."""
        return max((s.ts for s in self.latest.values()), default=None)

    def value(self, tag: str) -> float | None:
        """The tag's newest value when it is usable, else None."""
        s = self.latest.get(tag)
        return s.value if s is not None and s.usable else None

    def faults(self, now: datetime) -> list[SensorFault]:
        return sensor_faults(self.spec, self.latest, now)

    def window(self, tag_names: list[str], samples: int, end: datetime) -> np.ndarray:
        """The model's input window up to `end` (twin.window's one rule).

        A tag that has said nothing since the buffer's oldest sample still brings its last
        sample: a report-by-exception value stands for up to its max age, however much longer
        that is than the buffer keeps (twin.window decides how far it is held)."""
        oldest = self._buffer[0].ts if self._buffer else None
        trimmed = [
            s
            for s in self.latest.values()
            if s.quality != Quality.GAP and (oldest is None or s.ts < oldest)
        ]
        return window_rows(frame_of([*trimmed, *self._buffer]), self.spec, tag_names, samples, end)

    def on_batch(self, batch: list[Sample]) -> LiveUpdate:
        update = LiveUpdate()
        real = [s for s in batch if s.quality != Quality.GAP]
        gaps = [s for s in batch if s.quality == Quality.GAP]
        if gaps:
            self.clock.mark_gap()
        for g in gaps:  # an outage: the tag has no trustworthy value until it reports again
            prev = self.latest.get(g.tag)
            ts = max(g.ts, prev.ts) if prev is not None else g.ts
            self.latest[g.tag] = Sample(ts, g.tag, math.nan, Quality.GAP)
        if not real:
            return update
        self._check_timeline(real, update)
        behind_limit = timedelta(seconds=self.spec.safety.max_staleness_s)
        newest_of: dict[str, Sample] = {}
        for s in real:
            if s.tag not in self.spec.tag_names:
                continue
            if self.clock.last_ts is not None and s.ts < self.clock.last_ts - behind_limit:
                update.behind[s.tag] = (self.clock.last_ts - s.ts).total_seconds()
            if s.tag not in newest_of or s.ts >= newest_of[s.tag].ts:
                newest_of[s.tag] = s
            self._buffer.append(s)
        # A tag's latest is what it said last, even when that is older than what it said
        # before: a device whose clock fell behind shows as stale now instead of hiding behind
        # its last good sample until that ages out.
        self.latest.update(newest_of)
        newest = max(s.ts for s in real)
        if newest > (self.clock.last_ts or newest - timedelta(seconds=1)):
            self.clock.observe(newest)
        if self.first_ts is None:
            self.first_ts = newest
        self._trim()
        update.tick = self._count_interval()
        return update

    def _check_timeline(self, real: list[Sample], update: LiveUpdate) -> None:
        last = self.clock.last_ts
        if last is None:
            return
        period = timedelta(seconds=self.period_s)
        newest = max(s.ts for s in real)
        tags = {s.tag for s in real}
        # One tag's clock behind the others is that tag's fault, not a new timeline: the plant
        # has restarted only when most of its tags went back together.
        if newest < last - 2 * period and len(tags) * 2 >= len(self.spec.tags):
            log.warning("plant clock went back from %s to %s: resetting live state", last, newest)
            update.clock_reset = last
            self.clock.reset()
            self.latest.clear()
            self._buffer.clear()
            self._tick = None
            return
        jump = (newest - last).total_seconds()
        if jump > max(10 * self.period_s, self.spec.safety.max_staleness_s):
            update.clock_jump_s = jump
            self.clock.mark_gap()  # the rate must not be measured across the jump

    def _trim(self) -> None:
        last = self.clock.last_ts
        if last is None:
            return
        horizon = last - timedelta(seconds=self.keep_s)
        while self._buffer and self._buffer[0].ts < horizon:
            self._buffer.popleft()

    def _count_interval(self) -> bool:
        last = self.clock.last_ts
        if last is None:
            return False
        tick = interval_of(last, self.spec.plant.control_interval_s)
        if self._tick is None:
            self._tick = tick  # the first interval starts with the first data we see
            return False
        if tick > self._tick:
            self._tick = tick
            return True
        return False
