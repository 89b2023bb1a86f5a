"""Shared pieces of the state store: timestamps, JSON, errors, the SELECT helper."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twin.errors import BadInput, TwinError


class StoreError(TwinError):
    """The state store could not be opened or used."""


class NotFound(BadInput):
    """A proposal, user, incident or campaign id that does not exist."""


@dataclass(frozen=True)
class StoreConfig:
    """How the state store connects."""

    busy_timeout_s: float = 15.0
    """How long a writer waits for another process's transaction before giving up."""


def inserted_id(cur: Any) -> int:
    """The row id of the INSERT `cur` just ran."""
    # SQLite's cursor's lastrowid; on PostgreSQL the INSERT ran with RETURNING id.
    if cur.lastrowid is None:
        raise StoreError("the database returned no row id for an INSERT")
    return cur.lastrowid


def iso(ts: datetime | None) -> str | None:
    """One text form for every timestamp (UTC, microseconds) so that text order is time order."""
    if ts is None:
        return None
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {ts} has no timezone")
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


def parse_ts(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def dt(text: str) -> datetime:
    """A NOT NULL timestamp column."""
    return datetime.fromisoformat(text)


def now_utc() -> datetime:
    return datetime.now(UTC)


def to_json(value: Any) -> str:
    """JSON with NaN/inf replaced by null (SQLite and browsers reject bare NaN)."""
    return json.dumps(_finite(value), sort_keys=True, default=_default)


def _default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return iso(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def j(text: str | None) -> Any:
    """A JSON column (None stays None)."""
    return json.loads(text) if text else None


Row = Any
"""A row of a query: read by position or by column name (sqlite3.Row, or its PostgreSQL twin)."""


def select(table: str, **equal: Any) -> tuple[str, tuple[Any, ...]]:
    """`SELECT * FROM table` filtered by column = value for every value that is not None.

    Column names come from our own keyword arguments, never from user input.
    """
    given = {col: val for col, val in equal.items() if val is not None}
    where = " AND ".join(f"{col} = ?" for col in given) or "1=1"
    return f"SELECT * FROM {table} WHERE {where}", tuple(given.values())
