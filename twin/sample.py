"""The unit of plant data: one value of one tag at one time, with its quality."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum


class Quality(IntEnum):
    """Quality code stored with every sample (OPC-UA's Good / Uncertain / Bad families)."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2
    """Bad quality reported by the source, or a value we refused to trust (NaN, inf)."""
    OUT_OF_RANGE = 3
    """A finite value outside the tag's engineering limits: stored, never used as good data."""
    GAP = 4
    """No data: the connection was down. The value is NaN; marks the start of an outage."""


@dataclass(frozen=True, slots=True)
class Sample:
    ts: datetime
    """Source timestamp, timezone-aware UTC."""
    tag: str
    value: float
    quality: Quality = Quality.GOOD

    def __post_init__(self) -> None:
        if self.ts.tzinfo is None:
            raise ValueError(f"sample of {self.tag!r}: timestamp {self.ts} has no timezone")

    @property
    def usable(self) -> bool:
        """Good quality and a finite value: the only samples the twin may learn from or act on."""
        return self.quality == Quality.GOOD and math.isfinite(self.value)


def utcnow() -> datetime:
    return datetime.now(UTC)
