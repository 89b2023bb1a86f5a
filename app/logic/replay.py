"""Replay: a past window of actual data beside what the twin predicted then, with markers.

The state store timestamps decisions and writes on the wall clock, while the historian and the
proposals' data live on the plant clock (an accelerated simulator runs ahead of the wall). Each
proposal records both (created_at: wall, data_ts: plant), so wall times are mapped onto the
plant clock by interpolating between proposals; with none, the two clocks are taken as equal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from app.logic.proposals import Trajectory, _trajectories
from twin.historian import Historian
from twin.spec import PlantSpec
from twin.state import ProposalRecord, Store

MARKER_KINDS = ("proposal", "approve", "modify", "reject", "write", "refused", "alarm")


@dataclass(frozen=True)
class Marker:
    """Something that happened, placed on the plant clock."""

    time: datetime
    kind: str
    label: str
    proposal_id: int | None = None


@dataclass(frozen=True)
class Prediction:
    """What the twin predicted at one proposal: CV bands under the proposal."""

    proposal_id: int
    data_ts: datetime
    status: str
    cv: dict[str, Trajectory]


@dataclass(frozen=True)
class ReplayWindow:
    """Everything the Replay page and the report show for one window."""

    plant: str
    start: datetime
    end: datetime
    actual: pd.DataFrame
    predictions: list[Prediction]
    markers: list[Marker]
    incidents: list[dict]

    def prediction_at(self, t: datetime) -> Prediction | None:
        """The newest prediction made at or before t (what the twin expected from then)."""
        before = [p for p in self.predictions if p.data_ts <= t]
        return before[-1] if before else None

    def markers_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {"time": m.time, "kind": m.kind, "label": m.label, "proposal": m.proposal_id}
                for m in self.markers
            ],
            columns=["time", "kind", "label", "proposal"],
        )


def _ts(d: datetime) -> float:
    return d.timestamp()


def clock_map(proposals: list[ProposalRecord]) -> Callable[[datetime], datetime]:
    """Wall-clock time -> plant-clock time, from the (created_at, data_ts) pairs of proposals."""
    pairs = sorted((_ts(p.created_at), _ts(p.data_ts)) for p in proposals)
    if not pairs:
        return lambda t: t
    wall = np.array([w for w, _ in pairs])
    plant = np.array([p for _, p in pairs])
    if len(pairs) == 1 or wall[-1] - wall[0] <= 0:
        offset = plant[-1] - wall[-1]
        return lambda t: datetime.fromtimestamp(_ts(t) + offset, UTC)
    rate = (plant[-1] - plant[0]) / (wall[-1] - wall[0])

    def to_plant(t: datetime) -> datetime:
        w = _ts(t)
        if w < wall[0]:
            p = plant[0] + (w - wall[0]) * rate
        elif w > wall[-1]:
            p = plant[-1] + (w - wall[-1]) * rate
        else:
            p = float(np.interp(w, wall, plant))
        return datetime.fromtimestamp(p, UTC)

    return to_plant


def proposals_near(
    store: Store, plant: str, start: datetime, end: datetime, limit: int = 5000
) -> list[ProposalRecord]:
    """Proposals whose data time lies in [start, end], oldest first."""
    rows = store.list_proposals(plant, limit=limit)
    return sorted((p for p in rows if start <= p.data_ts <= end), key=lambda p: p.data_ts)


def markers_for(store: Store, plant: str, start: datetime, end: datetime) -> list[Marker]:
    """Proposals, decisions, writes and alarms of [start, end] (plant clock), in time order."""
    all_props = store.list_proposals(plant, limit=5000)
    to_plant = clock_map(all_props)
    out: list[Marker] = []
    for p in all_props:
        if start <= p.data_ts <= end:
            moves = ", ".join(f"{k}={v:.4g}" for k, v in p.mv_values.items())
            out.append(Marker(p.data_ts, "proposal", f"proposal {p.id}: {moves}", p.id))
        d = store.get_decision(p.id)
        if d is not None:
            t = to_plant(d.at)
            if start <= t <= end:
                what = (
                    (d.note or "")
                    if d.kind == "reject"
                    else ", ".join(f"{k}={v:.4g}" for k, v in (d.mv_values or {}).items())
                )
                out.append(Marker(t, d.kind, f"{d.kind} by {d.user}: {what}", p.id))
    for w in store.writes_for(plant=plant, limit=5000):
        t = to_plant(w.completed_at or w.at)
        if not start <= t <= end:
            continue
        if w.status == "done":
            out.append(Marker(t, "write", f"write {w.tag}={w.read_back:.4g}", w.proposal_id))
        else:
            out.append(
                Marker(t, "refused", f"write {w.tag} {w.status}: {w.reason or ''}", w.proposal_id)
            )
    from twin import audit

    for e in audit.entries(store, plant=plant, kind="alarm"):
        t = to_plant(datetime.fromisoformat(e["at"]))
        if start <= t <= end:
            out.append(Marker(t, "alarm", f"{e['subject'] or ''} {e['why']}".strip()))
    return sorted(out, key=lambda m: m.time)


def assemble(
    store: Store, hist: Historian, spec: PlantSpec, start: datetime, end: datetime
) -> ReplayWindow:
    """The replay of [start, end] (plant clock)."""
    actual = hist.read(start, end, tags=spec.tag_names).reindex(columns=spec.tag_names)
    step = spec.plant.control_interval_s
    preds = [
        Prediction(
            p.id,
            p.data_ts,
            p.status,
            _trajectories(
                p.payload.get("predicted") or {},
                p.data_ts,
                float(p.payload.get("interval_s") or step),
            ),
        )
        for p in proposals_near(store, spec.name, start, end)
    ]
    return ReplayWindow(
        spec.name,
        start,
        end,
        actual,
        preds,
        markers_for(store, spec.name, start, end),
        incidents_in(store, spec.name, start, end),
    )


def incidents_in(store: Store, plant: str, start: datetime, end: datetime) -> list[dict]:
    """Incidents overlapping [start, end] (read again when a report is made: one may be new)."""
    return [
        {
            "id": i.id,
            "title": i.title,
            "start": i.start,
            "end": i.end,
            "notes": i.notes,
            "by": i.user,
        }
        for i in store.list_incidents(plant)
        if i.start <= end and i.end >= start
    ]


def default_window(hist: Historian, minutes: float = 60.0) -> tuple[datetime, datetime] | None:
    """The last `minutes` of stored data (plant clock)."""
    rng = hist.time_range()
    if rng is None:
        return None
    first, last = rng
    return max(first, last - timedelta(minutes=minutes)), last


def window_csv(window: ReplayWindow) -> bytes:
    """The window's actual values (wide, one column per tag) and its markers, as CSV."""
    frame = window.actual.copy()
    frame.index.name = "timestamp"
    marks = window.markers_frame().groupby("time")["label"].agg(" | ".join)
    if len(marks):
        marks.index = pd.DatetimeIndex(marks.index)
        frame = frame.join(marks.rename("events"), how="outer")
    else:
        frame["events"] = ""
    return frame.to_csv(date_format="%Y-%m-%dT%H:%M:%S.%fZ").encode("utf-8")
