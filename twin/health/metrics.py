"""Controller health as pure functions of what the state store and the historian hold.

The figures are the ones APC vendors' performance monitors report, so a plant engineer can
read them without a glossary:

- service factor: control intervals in which the twin itself proposed, over intervals served;
- MV utilisation: moves the operator approved as proposed and that were not pinned at an
  operating limit, over moves decided;
- interventions per hour of serving: rejections, modifications and limit changes;
- time at limits: the fraction of historian samples of each CV and MV within 1 % of the
  range of an effective limit;
- refusals: proposals that were not written, by status, and the reasons given;
- achieved vs predicted improvement over hold, in CV-range units (squared tracking error).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from twin.spec import PlantSpec
from twin.state.records import DecisionRecord, ProposalRecord

AT_LIMIT_FRACTION = 0.01
"""A value within this fraction of a tag's range from a limit counts as at the limit."""

INTERVENTIONS = ("reject", "modify", "operator_limits")


@dataclass(frozen=True)
class HealthInputs:
    """What one health report is computed from (gathered by twin.health_report)."""

    spec: PlantSpec
    start: datetime
    end: datetime
    proposals: Sequence[ProposalRecord]
    decisions: Mapping[int, DecisionRecord]
    """Decision of each decided proposal, by proposal id."""
    events: Sequence[Mapping[str, Any]]
    """Audit entries of the plant in [start, end] (twin.audit.entries)."""
    limits: Mapping[str, tuple[float, float]]
    """Effective operating limits of every tag now."""
    frame: pd.DataFrame | None = None
    """Historian samples of [start, end] (wide, engineering units), for time at limits."""
    steps_running: int = 0
    """Control intervals of a runtime still serving (its status row): not yet in a stop event."""
    served_until: datetime | None = None
    """Wall time a still-running runtime last reported (ends its serving time)."""


@dataclass
class Health:
    """One period's controller health (see the module's docstring for each figure)."""

    start: datetime
    end: datetime
    served_h: float = 0.0
    intervals: int = 0
    twin_proposals: int = 0
    fallback_proposals: int = 0
    service_factor: float | None = None
    moves_decided: int = 0
    moves_free: int = 0
    mv_utilisation: float | None = None
    interventions: dict[str, int] = field(default_factory=dict)
    interventions_per_h: float | None = None
    at_limits: dict[str, float] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    refusal_reasons: dict[str, int] = field(default_factory=dict)
    predicted_gain: float | None = None
    achieved_gain: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dict(vars(self))
        d["start"], d["end"] = self.start.isoformat(), self.end.isoformat()
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()
        }


def controller_health(inputs: HealthInputs) -> Health:
    """The period's controller health (pure: everything comes in `inputs`)."""
    h = Health(inputs.start, inputs.end)
    _serving(h, inputs)
    _proposals(h, inputs)
    _interventions(h, inputs)
    h.at_limits = time_at_limits(inputs.spec, inputs.frame, inputs.limits)
    h.predicted_gain, h.achieved_gain = improvement_over_hold(
        inputs.spec, inputs.proposals, inputs.decisions, inputs.frame
    )
    return h


def _serving(h: Health, inputs: HealthInputs) -> None:
    """Serving time and control intervals from the runtime's start and stop events."""
    started: datetime | None = None
    seconds = 0.0
    for e in inputs.events:
        at = datetime.fromisoformat(e["at"])
        if e["kind"] == "runtime_start":
            started = at
        elif e["kind"] == "runtime_stop":
            h.intervals += int((e.get("what") or {}).get("steps") or 0)
            if started is not None:
                seconds += (at - started).total_seconds()
            started = None
    if started is not None:  # still serving
        until = min(inputs.served_until or inputs.end, inputs.end)
        seconds += max((until - started).total_seconds(), 0.0)
        h.intervals += inputs.steps_running
    h.served_h = seconds / 3600.0


def _proposals(h: Health, inputs: HealthInputs) -> None:
    refused: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for p in inputs.proposals:
        if p.payload.get("controller", "twin") == "twin":
            h.twin_proposals += 1
        else:
            h.fallback_proposals += 1
        d = inputs.decisions.get(p.id)
        if d is None or d.kind == "reject":
            if p.status not in ("pending", "advisory"):
                refused[p.status] += 1
                if p.status_reason:
                    reasons[p.status_reason] += 1
            continue
        for tag, v in p.mv_values.items():
            h.moves_decided += 1
            lo, hi = inputs.limits.get(tag, (-math.inf, math.inf))
            if d.kind == "approve" and not _at_limit(v, lo, hi):
                h.moves_free += 1
    h.refused, h.refusal_reasons = dict(refused), dict(reasons)
    if h.intervals:
        h.service_factor = h.twin_proposals / h.intervals
    if h.moves_decided:
        h.mv_utilisation = h.moves_free / h.moves_decided


def _interventions(h: Health, inputs: HealthInputs) -> None:
    counts = Counter(e["kind"] for e in inputs.events if e["kind"] in INTERVENTIONS)
    h.interventions = {k: counts.get(k, 0) for k in INTERVENTIONS}
    if h.served_h > 0:
        h.interventions_per_h = sum(h.interventions.values()) / h.served_h


def _at_limit(v: float, lo: float, hi: float) -> bool:
    span = hi - lo
    if not math.isfinite(span) or span <= 0:
        return False
    tol = AT_LIMIT_FRACTION * span
    return v - lo <= tol or hi - v <= tol


def time_at_limits(
    spec: PlantSpec, frame: pd.DataFrame | None, limits: Mapping[str, tuple[float, float]]
) -> dict[str, float]:
    """Fraction of each CV's and MV's samples at (within 1 % of the range of) a limit."""
    out: dict[str, float] = {}
    if frame is None or frame.empty:
        return out
    for t in [*spec.cvs, *spec.mvs]:
        if t.name not in frame or t.name not in limits:
            continue
        values = frame[t.name].dropna().to_numpy()
        if len(values):
            lo, hi = limits[t.name]
            out[t.name] = sum(_at_limit(float(v), lo, hi) for v in values) / len(values)
    return out


def improvement_over_hold(
    spec: PlantSpec,
    proposals: Sequence[ProposalRecord],
    decisions: Mapping[int, DecisionRecord],
    frame: pd.DataFrame | None,
) -> tuple[float | None, float | None]:
    """Summed reduction of squared setpoint error (in CV-range units) that approved proposals
    predicted over their hold trajectories, and the reduction the historian shows."""
    if frame is None or frame.empty:
        return None, None
    predicted = achieved = 0.0
    counted = 0
    for p in proposals:
        d = decisions.get(p.id)
        if d is None or d.kind != "approve":
            continue
        gain = _proposal_gain(spec, p.payload, frame)
        if gain is not None:
            predicted, achieved, counted = predicted + gain[0], achieved + gain[1], counted + 1
    return (predicted, achieved) if counted else (None, None)


def _proposal_gain(
    spec: PlantSpec, payload: Mapping[str, Any], frame: pd.DataFrame
) -> tuple[float, float] | None:
    step = timedelta(seconds=float(payload.get("interval_s") or spec.plant.control_interval_s))
    start = datetime.fromisoformat(str(payload["data_ts"]))
    pred, hold, got = 0.0, 0.0, 0.0
    n = 0
    for cv, sp in (payload.get("setpoints") or {}).items():
        band, held = (payload.get("predicted") or {}).get(cv), (payload.get("hold") or {}).get(cv)
        if band is None or held is None or cv not in frame or sp is None:
            continue
        lo, hi = spec.tag(cv).limits
        scale = (hi - lo) ** 2
        for k, (pm, hm) in enumerate(zip(band["mean"], held["mean"], strict=False)):
            actual = _value_at(frame[cv], start + step * (k + 1))
            if pm is None or hm is None or actual is None:
                break
            pred += (pm - sp) ** 2 / scale
            hold += (hm - sp) ** 2 / scale
            got += (actual - sp) ** 2 / scale
            n += 1
    return (hold - pred, hold - got) if n else None


def _value_at(series: pd.Series, ts: datetime) -> float | None:
    """The newest value at or before `ts`, if the series reaches that far."""
    if series.empty or series.index[-1] < ts:
        return None
    v = series.loc[:ts].dropna()
    return float(v.iloc[-1]) if len(v) else None


def periods(start: datetime, end: datetime, by: str) -> list[tuple[datetime, datetime]]:
    """[start, end) cut at day or 8-hour shift boundaries (UTC)."""
    hours = {"day": 24, "shift": 8}[by]
    edge = start.replace(minute=0, second=0, microsecond=0)
    edge = edge.replace(hour=edge.hour - edge.hour % hours)
    out = []
    a = start
    while a < end:
        edge += timedelta(hours=hours)
        b = min(edge, end)
        out.append((a, b))
        a = b
    return out
