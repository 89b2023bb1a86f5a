"""What every plant connection offers: a Source of samples and a Sink for MV writes.

A Source is an async context manager (connect on enter, close on exit) whose `batches()`
yields lists of `Sample`s stamped with the plant's own clock. It never ends on a connection
loss: it yields one `Quality.GAP` sample per tag at the first missing sample instant, keeps
reconnecting by itself, back-fills what the server can give, and goes on.

A Sink writes MV values and returns, per tag, what was requested, what went on the wire and
what was read back; a refused or mismatched write raises `WriteRejected`, never retries.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Literal, Protocol, Self

from twin.errors import BadInput
from twin.sample import Quality, Sample
from twin.spec import PlantSpec, Tag


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The outcome of one verified MV write (recorded in the audit log)."""

    tag: str
    """Tag written."""
    requested: float
    """Value the caller asked for, engineering units."""
    written: float
    """Value as encoded on the wire (float32 rounding, register scaling), engineering units."""
    read_back: float
    """Value read from the plant right after the write, engineering units."""
    ts: datetime
    """Wall-clock time (UTC) of the read-back."""

    @property
    def ok(self) -> bool:
        """The plant holds what was written."""
        return self.read_back == self.written


@dataclass
class SourceStatus:
    """Counters a status line or a health check shows; updated by the source as it runs."""

    connected: bool = False
    """The transport is up right now."""
    samples: int = 0
    """Samples yielded so far (gap markers excluded)."""
    bad_samples: int = 0
    """Samples yielded with a quality other than GOOD (gap markers excluded)."""
    gaps: int = 0
    """Outages seen so far."""
    backfilled: int = 0
    """Samples recovered from server history after outages."""
    last_ts: datetime | None = None
    """Newest source timestamp yielded."""
    last_error: str = ""
    """Why the connection last dropped."""
    extra: dict[str, float] = field(default_factory=dict)
    """Protocol-specific counters (polls, requests)."""


@dataclass
class Outage:
    """A time the connection was down, in the plant's clock."""

    start: datetime
    """First sample instant that was not received live."""
    end: datetime | None = None
    """First live sample after the connection came back; None while still down."""
    reason: str = ""
    """Why the connection dropped."""
    backfilled: int = 0
    """Samples recovered from the server's history for this outage."""


class Source(Protocol):
    """A live plant feed (see the module docstring for the contract)."""

    status: SourceStatus

    def closed_outages(self) -> list[Outage]:
        """Outages that ended since the last call (the ingest loop records them as gaps)."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def batches(self) -> AsyncIterator[list[Sample]]:
        """Samples as they arrive; runs until the source is closed."""
        ...


class Sink(Protocol):
    """Verified write-back of MV values."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def write(self, values: Mapping[str, float]) -> list[WriteResult]:
        """Write each MV, read it back; raises WriteRejected on any refusal or mismatch."""
        ...


_ADDRESS = {"opcua": "an OPC-UA node id", "modbus": "a Modbus address"}


def protocol_tags(
    spec: PlantSpec, names: list[str] | None, protocol: Literal["opcua", "modbus"]
) -> list[Tag]:
    """The named tags (every tag the protocol addresses when None); each must have an address
    under that protocol, or BadInput names those that do not."""

    def address(t: Tag) -> object:
        return t.opcua if protocol == "opcua" else t.modbus

    tags = [spec.tag(n) for n in names] if names else [t for t in spec.tags if address(t)]
    missing = [t.name for t in tags if address(t) is None]
    if missing:
        raise BadInput(
            f"plant {spec.name!r}: tags without {_ADDRESS[protocol]}: {', '.join(missing)}"
        )
    return tags


def classify(tag: Tag, value: float) -> Quality:
    """Quality of a value the plant reported as good: NaN/inf are BAD, beyond limits OUT_OF_RANGE."""
    if not math.isfinite(value):
        return Quality.BAD
    lo, hi = tag.limits
    if value < lo or value > hi:
        return Quality.OUT_OF_RANGE
    return Quality.GOOD


def check_writable(tag: Tag, value: float) -> None:
    """Refuse a write no guard should have let through: not an MV, not finite, beyond limits."""
    from twin.errors import WriteRejected

    if tag.role != "mv":
        raise WriteRejected(f"tag {tag.name!r} is a {tag.role}, only MVs are written")
    if not math.isfinite(value):
        raise WriteRejected(f"tag {tag.name!r}: refusing to write {value}")
    lo, hi = tag.limits
    if value < lo or value > hi:
        raise WriteRejected(
            f"tag {tag.name!r}: {value} lies outside the engineering limits [{lo}, {hi}]"
        )


def gap_markers(tags: list[Tag], ts: datetime) -> list[Sample]:
    """One GAP sample per tag: the connection was down from `ts` on."""
    return [Sample(ts, t.name, math.nan, Quality.GAP) for t in tags]


class QualityLog:
    """Logs a tag's value once when it turns bad (NaN, inf, out of range) and once when good again."""

    def __init__(self, logger: logging.Logger, where: str) -> None:
        self._log = logger
        self._where = where
        self._bad: set[str] = set()

    def see(self, sample: Sample) -> None:
        if sample.quality == Quality.GOOD:
            if sample.tag in self._bad:
                self._bad.discard(sample.tag)
                self._log.info("tag %r: good again from %s", sample.tag, self._where)
        elif sample.quality != Quality.GAP and sample.tag not in self._bad:
            self._bad.add(sample.tag)
            self._log.warning(
                "tag %r: %s value %s from %s",
                sample.tag,
                sample.quality.name,
                sample.value,
                self._where,
            )
