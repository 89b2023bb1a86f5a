"""Live trends: recent values of every tag with its engineering and operator limit bands.

ISA-101 high-performance HMI: everything is grey unless it is abnormal, so the state of each
tag is computed here (normal / outside operator limits / outside engineering limits / stale)
and the charts colour only what is not normal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import pandas as pd

from twin.historian import Historian
from twin.spec import PlantSpec
from twin.state import RuntimeStatus, now_utc


class TagState(StrEnum):
    NORMAL = "normal"
    OPERATING = "outside operator limits"
    LIMIT = "outside engineering limits"
    MISSING = "no data"


@dataclass(frozen=True)
class Bands:
    """A tag's limits in engineering units."""

    tag: str
    unit: str
    role: str
    eng: tuple[float, float]
    """Engineering limits (hard)."""
    op: tuple[float, float]
    """Operator limits in force (the control room's override, else the spec's)."""
    description: str = ""


def limit_bands(
    spec: PlantSpec, overrides: dict[str, tuple[float, float]] | None = None
) -> dict[str, Bands]:
    """Every tag's engineering and operator limits, operator overrides applied."""
    overrides = overrides or {}
    out = {}
    for t in spec.tags:
        op = overrides.get(t.name, t.operating_limits)
        eng = (float(t.limits[0]), float(t.limits[1]))
        op_f = (float(op[0]), float(op[1]))
        out[t.name] = Bands(t.name, t.unit, t.role, eng, op_f, t.description)
    return out


def state_of(value: float | None, bands: Bands) -> TagState:
    if value is None or not math.isfinite(value):
        return TagState.MISSING
    if not bands.eng[0] <= value <= bands.eng[1]:
        return TagState.LIMIT
    if not bands.op[0] <= value <= bands.op[1]:
        return TagState.OPERATING
    return TagState.NORMAL


def trend_frame(
    hist: Historian, spec: PlantSpec, minutes: float, end: datetime | None = None
) -> pd.DataFrame:
    """Wide frame of the last `minutes` of plant time up to the newest stored sample (or `end`).

    The window ends at the plant's newest data rather than the wall clock, so accelerated
    simulators and replays of old history show their data.
    """
    if end is None:
        rng = hist.time_range()
        if rng is None:
            return pd.DataFrame(columns=spec.tag_names)
        end = rng[1]
    start = end - timedelta(minutes=minutes)
    frame = hist.read(start, end + timedelta(microseconds=1), tags=spec.tag_names)
    return frame.reindex(columns=spec.tag_names)


@dataclass(frozen=True)
class TagTile:
    """One row of the live value table."""

    tag: str
    role: str
    unit: str
    value: float | None
    ts: datetime | None
    state: TagState
    description: str = ""


def live_tiles(frame: pd.DataFrame, bands: dict[str, Bands]) -> list[TagTile]:
    """The newest good value of each tag in a trend frame, with its state."""
    tiles = []
    for tag, b in bands.items():
        col = frame[tag].dropna() if tag in frame else pd.Series(dtype=float)
        value = float(col.iloc[-1]) if len(col) else None
        ts = col.index[-1].to_pydatetime() if len(col) else None
        tiles.append(TagTile(tag, b.role, b.unit, value, ts, state_of(value, b), b.description))
    return tiles


UNGROUPED = "other"
"""The group of tags a spec leaves without one, when it gives others a group."""
ALL_TAGS = "all tags"
"""The one group of a spec that groups no tag."""


def tag_groups(spec: PlantSpec) -> dict[str, list[str]]:
    """Tag names by the spec's `group` (plant unit or area), groups in order of their first tag.

    A spec without groups is one group of every tag; tags left out of a grouped spec go last,
    under UNGROUPED. Every tag is in exactly one group."""
    if not any(t.group for t in spec.tags):
        return {ALL_TAGS: list(spec.tag_names)}
    groups: dict[str, list[str]] = {}
    for t in spec.tags:
        groups.setdefault(t.group or UNGROUPED, []).append(t.name)
    if UNGROUPED in groups:
        groups[UNGROUPED] = groups.pop(UNGROUPED)
    return groups


def abnormal_elsewhere(
    tiles: list[TagTile], groups: dict[str, list[str]], shown: str
) -> dict[str, list[TagTile]]:
    """The tiles not in a normal state in every group but the one on screen (`shown`), so that
    choosing a unit never hides an abnormal tag: {group: [tiles]}, groups without any left out."""
    state = {t.tag: t for t in tiles}
    out = {}
    for group, names in groups.items():
        if group == shown:
            continue
        bad = [state[n] for n in names if n in state and state[n].state != TagState.NORMAL]
        if bad:
            out[group] = bad
    return out


@dataclass(frozen=True)
class StatusView:
    """The runtime's status as the Overview shows it."""

    running: bool
    """A heartbeat arrived within `heartbeat_timeout_s` (wall clock)."""
    connected: bool
    mode: str
    model_version: str
    data_age_s: float | None
    stale: bool
    ood_score: float | None
    ood_alarm: bool
    last_reason: str
    alarms: list[dict]


def status_view(
    status: RuntimeStatus | None,
    spec: PlantSpec,
    heartbeat_timeout_s: float = 10.0,
    now: datetime | None = None,
) -> StatusView:
    """Summarise the runtime status row; a missing or silent runtime shows as not running."""
    if status is None:
        return StatusView(
            False,
            False,
            "not running",
            "-",
            None,
            True,
            None,
            False,
            "no runtime has reported for this plant (start `twin serve`)",
            [],
        )
    now = now or now_utc()
    beat_age = (now - status.heartbeat_at).total_seconds() if status.heartbeat_at else math.inf
    running = beat_age <= heartbeat_timeout_s
    age = status.last_sample_age_s
    stale = age is None or age > spec.safety.max_staleness_s or not running
    ood = status.ood_score
    return StatusView(
        running=running,
        connected=bool(status.connected) and running,
        mode=status.mode or "-",
        model_version=status.model_version or "none",
        data_age_s=age,
        stale=stale,
        ood_score=ood,
        ood_alarm=ood is not None and (not math.isfinite(ood) or ood > 1.0),
        last_reason=(status.last_reason or "")
        if running
        else f"runtime silent for {beat_age:.0f} s (last: {status.last_reason or '-'})",
        alarms=list(status.alarms or []),
    )
