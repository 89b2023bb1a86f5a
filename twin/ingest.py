"""The ingest loop: a live Source streamed into the plant's historian (`twin ingest`).

Every batch is appended as it arrives (the historian flushes in the background); outages the
source reports are recorded as "gap" annotations with what was back-filled; a status line
(samples/s, age of the newest sample, gaps) is refreshed while it runs. It keeps running
through connection losses: the source reconnects by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from connectors.base import Outage, Source
from twin.historian import Historian
from twin.sample import Quality, Sample

log = logging.getLogger(__name__)


@dataclass
class IngestStats:
    """What an ingest run did so far."""

    samples: int = 0
    """Samples stored (gap markers excluded)."""
    bad: int = 0
    """Stored samples whose quality is not GOOD."""
    gaps: int = 0
    """Outages recorded as gap annotations."""
    backfilled: int = 0
    """Samples recovered from server history."""
    rate: float = 0.0
    """Samples per second over the last status interval."""
    last_ts: datetime | None = None
    """Newest source timestamp stored."""
    started: float = field(default_factory=time.monotonic)
    """Monotonic start time."""

    def last_age_s(self) -> float | None:
        """Wall seconds since the newest sample's source timestamp (large on a replay)."""
        if self.last_ts is None:
            return None
        return (datetime.now(UTC) - self.last_ts).total_seconds()

    def line(self, connected: bool) -> str:
        age = self.last_age_s()
        if age is None:
            age_text = "-"
        elif age >= 0:
            age_text = f"{age:.1f} s"
        else:  # an accelerated simulator's clock runs ahead of the wall clock
            age_text = f"{age:.1f} s (plant clock ahead)"
        state = "connected" if connected else "RECONNECTING"
        return (
            f"{state}  {self.rate:,.0f} samples/s  stored {self.samples:,}  bad {self.bad:,}  "
            f"last sample age {age_text}  gaps {self.gaps}  back-filled {self.backfilled:,}"
        )


async def ingest(
    source: Source,
    historian: Historian,
    *,
    duration_s: float | None = None,
    stop: asyncio.Event | None = None,
    on_status: Callable[[IngestStats, bool], None] | None = None,
    status_every_s: float = 1.0,
    source_name: str = "",
    on_batch: Callable[[list[Sample]], None] | None = None,
) -> IngestStats:
    """Stream an entered `source` into `historian` until `stop` is set or `duration_s` passes.

    `on_batch` sees every batch right after it is stored (the runtime's live state)."""
    stats = IngestStats()
    stop = stop or asyncio.Event()
    consumer = asyncio.create_task(_consume(source, historian, stats, source_name, on_batch))
    deadline = None if duration_s is None else time.monotonic() + duration_s
    last_count, last_t = 0, time.monotonic()
    stopped = asyncio.create_task(stop.wait())
    try:
        while not consumer.done():
            wait = (
                status_every_s
                if deadline is None
                else min(status_every_s, deadline - time.monotonic())
            )
            if wait <= 0:
                break
            await asyncio.wait(
                {stopped, consumer}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
            now = time.monotonic()
            stats.rate = (stats.samples - last_count) / max(now - last_t, 1e-9)
            last_count, last_t = stats.samples, now
            if on_status is not None:
                on_status(stats, source.status.connected)
            if stop.is_set():
                break
    finally:
        stopped.cancel()
        await _cancel_and_wait(consumer)
        _record_outages(source, historian, stats, source_name)
    return stats


async def _cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel `task` and wait until it has ended (its own errors propagate).

    A library may drop a cancellation: on Python 3.11 `asyncio.wait_for` returns a result that
    arrived in the same loop turn as the cancel and swallows the CancelledError. The consumer
    would then poll on and `twin ingest` never stop, so it is cancelled again until it ends.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _consume(
    source: Source,
    historian: Historian,
    stats: IngestStats,
    source_name: str,
    on_batch: Callable[[list[Sample]], None] | None,
) -> None:
    async for batch in source.batches():
        historian.append(batch)
        if on_batch is not None:
            on_batch(batch)
        for s in batch:
            if s.quality == Quality.GAP:
                continue
            stats.samples += 1
            if s.quality != Quality.GOOD:
                stats.bad += 1
            if stats.last_ts is None or s.ts > stats.last_ts:
                stats.last_ts = s.ts
        _record_outages(source, historian, stats, source_name)


def _record_outages(
    source: Source, historian: Historian, stats: IngestStats, source_name: str
) -> None:
    for outage in record_outages(source, historian, source_name):
        stats.gaps += 1
        stats.backfilled += outage.backfilled


def record_outages(source: Source, historian: Historian, source_name: str = "") -> list[Outage]:
    """Annotate the outages the source closed since the last call as "gap"s; returns them."""
    done = source.closed_outages()
    for outage in done:
        assert outage.end is not None
        meta: dict[str, object] = {"reason": outage.reason, "backfilled": outage.backfilled}
        end = outage.end
        if end < outage.start:
            # A restarted simulator (or a device whose clock was reset) went back in time.
            meta["clock_went_back_s"] = (outage.start - end).total_seconds()
            end = outage.start
        historian.annotate(
            outage.start, end, kind="gap", label=f"{source_name or 'source'} outage", meta=meta
        )
        log.warning(
            "gap recorded %s .. %s (%s; %d back-filled)",
            outage.start,
            end,
            outage.reason,
            outage.backfilled,
        )
    return done
