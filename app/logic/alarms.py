"""The alarm banner, the standing list and the ISA-18.2 metrics, as tested functions.

Metrics follow ISA-18.2 / EEMUA 191 as the control room can measure them: one console (one
operator position) per plant, so "per operator" is per plant. Annunciated alarms per 10
minutes (about 1 is very likely acceptable, above 2 manageable at most, above 10 a flood),
standing alarms now, and chattering alarms (the same alarm raised 3 or more times in a minute).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from twin.serve.alarms import PRIORITIES
from twin.state import Store, now_utc
from twin.state.alarms import AlarmRecord

FLOOD_PER_10MIN = 10
"""ISA-18.2's alarm flood: more than 10 alarms in 10 minutes for one operator."""
CHATTER_COUNT, CHATTER_WINDOW = 3, timedelta(minutes=1)

HIDDEN = ("shelved", "out of service", "suppressed")


@dataclass(frozen=True)
class Banner:
    """What the banner on every page says (nothing when `count` is 0)."""

    count: int
    unacked: int
    top_priority: str | None
    text: str


def banner(store: Store, plant: str, now: datetime | None = None) -> Banner:
    """The standing alarms the operator must see, summarised for the top of every page."""
    now = now or now_utc()
    shown = [a for a in store.standing_alarms(plant) if a.state(now) not in HIDDEN]
    if not shown:
        return Banner(0, 0, None, "")
    top = min(shown, key=_rank)
    unacked = sum(a.acked_at is None for a in shown)
    tag = f" {top.tag}" if top.tag else ""
    text = (
        f"{len(shown)} standing alarm(s), {unacked} unacknowledged. "
        f"Highest: {top.priority.upper()} {top.kind}{tag}: {top.message}"
    )
    return Banner(len(shown), unacked, top.priority, text)


def _rank(a: AlarmRecord) -> tuple[int, int]:
    """Most urgent first; within a priority, unacknowledged, then newest."""
    p = PRIORITIES.index(a.priority) if a.priority in PRIORITIES else len(PRIORITIES)
    return p, -a.id


def alarm_frame(alarms: list[AlarmRecord], now: datetime | None = None) -> pd.DataFrame:
    """One row per alarm, in priority order, with what the operator should do."""
    now = now or now_utc()
    rows = [
        {
            "id": a.id,
            "priority": a.priority,
            "state": a.state(now),
            "raised": a.raised_at.strftime("%Y-%m-%d %H:%M:%S"),
            "kind": a.kind,
            "tag": a.tag or "",
            "reason": a.message,
            "operator action": a.response,
            "acknowledged by": a.acked_by or "",
            "shelved until": _shelf(a, now),
        }
        for a in sorted(alarms, key=_rank)
    ]
    cols = ["id", "priority", "state", "raised", "kind", "tag", "reason", "operator action"]
    return pd.DataFrame(rows, columns=[*cols, "acknowledged by", "shelved until"])


def _shelf(a: AlarmRecord, now: datetime) -> str:
    return a.shelved_until.strftime("%H:%M") if a.shelved_until and a.shelved(now) else ""


def history_frame(alarms: list[AlarmRecord], now: datetime | None = None) -> pd.DataFrame:
    """The history, newest first (children of a flood shown with their parent's id)."""
    now = now or now_utc()
    rows = [
        {
            "id": a.id,
            "raised": a.raised_at.strftime("%Y-%m-%d %H:%M:%S"),
            "priority": a.priority,
            "kind": a.kind,
            "tag": a.tag or "",
            "state": a.state(now),
            "cleared": a.cleared_at.strftime("%H:%M:%S") if a.cleared_at else "",
            "acknowledged by": a.acked_by or "",
            "under": str(a.parent_id) if a.parent_id else "",  # one type: Arrow needs it
            "reason": a.message,
        }
        for a in alarms
    ]
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Metrics:
    """ISA-18.2 alarm-system performance over a span of time."""

    hours: float
    annunciated: int
    """Alarms the operator saw (suppressed children of a flood not counted)."""
    per_10min_avg: float
    per_10min_peak: int
    flood_windows: int
    """10-minute windows with more than FLOOD_PER_10MIN alarms."""
    standing: int
    shelved: int
    out_of_service: int
    chattering: list[str]
    """'kind tag' of each alarm raised CHATTER_COUNT or more times within CHATTER_WINDOW."""


def metrics(store: Store, plant: str, hours: float = 24.0, now: datetime | None = None) -> Metrics:
    now = now or now_utc()
    since = now - timedelta(hours=hours)
    shown = [a for a in store.alarm_history(plant, since, limit=100_000) if not a.suppressed]
    bins: dict[int, int] = defaultdict(int)
    for a in shown:
        bins[int((a.raised_at - since).total_seconds() // 600)] += 1
    windows = max(1, round(hours * 6))
    standing = store.standing_alarms(plant)
    states = [a.state(now) for a in standing]
    return Metrics(
        hours=hours,
        annunciated=len(shown),
        per_10min_avg=len(shown) / windows,
        per_10min_peak=max(bins.values(), default=0),
        flood_windows=sum(n > FLOOD_PER_10MIN for n in bins.values()),
        standing=sum(s not in HIDDEN for s in states),
        shelved=states.count("shelved"),
        out_of_service=states.count("out of service"),
        chattering=chattering(shown),
    )


def chattering(alarms: list[AlarmRecord]) -> list[str]:
    """Alarms (kind and tag) raised CHATTER_COUNT or more times within CHATTER_WINDOW."""
    times: dict[str, list[datetime]] = defaultdict(list)
    for a in alarms:
        times[f"{a.kind} {a.tag or ''}".strip()].append(a.raised_at)
    out = []
    for key, ts in times.items():
        ts.sort()
        n = CHATTER_COUNT - 1
        if any(ts[i + n] - ts[i] <= CHATTER_WINDOW for i in range(len(ts) - n)):
            out.append(key)
    return sorted(out)


def label(a: AlarmRecord) -> str:
    """How an alarm is named in a picker."""
    tag = f" {a.tag}" if a.tag else ""
    return f"#{a.id} {a.priority} {a.kind}{tag}: {a.message}"[:140]
