"""Proposal: what the planner suggests, with what the twin predicts with and without it."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Band:
    """A predicted CV trajectory: mean and the outer quantiles, one value per interval."""

    mean: list[float]
    lo: list[float]
    hi: list[float]


@dataclass(frozen=True)
class Proposal:
    """One suggested set of MV moves; every number in engineering units."""

    plant: str
    """Plant name."""
    model_version: str
    """Twin version the plan was made on."""
    created_at: datetime
    """When the proposal was made (plant clock: the data timestamp in simulated runs)."""
    data_ts: datetime
    """Timestamp of the newest sample the proposal used."""
    expires_at: datetime
    """After this, the guard refuses to write it."""
    current: dict[str, float]
    """MV values now."""
    proposed: dict[str, float]
    """MV values to write now: the plan's first move."""
    mv_plan: dict[str, list[float]]
    """Planned MV values per control interval (the first is `proposed`)."""
    interval_s: float
    """Length of a prediction step (the control interval)."""
    setpoints: dict[str, float]
    """CV targets the plan tracks."""
    predicted: dict[str, Band]
    """CV trajectories under the proposal, offset-corrected."""
    hold: dict[str, Band]
    """CV trajectories if nothing moves."""
    quantile_levels: tuple[float, float]
    """Levels of the band's lo and hi."""
    cost: dict[str, float]
    """Cost terms of the proposal (tracking, moves, economic, cv_limits, trust, total)."""
    hold_cost: dict[str, float]
    """The same terms if nothing moves."""
    margins: dict[str, float]
    """Smallest distance to each limit over the horizon ("h1.operating_hi": 1.2); negative is
    a predicted crossing."""
    ood_score: float
    """OOD score of the current latent over the twin's threshold (above 1: unseen)."""
    notes: list[str] = field(default_factory=list)
    """Plain-language remarks for the engineer (target outside the known region, ...)."""
    plan_ms: float = 0.0
    """Planning wall time."""

    @property
    def moves(self) -> dict[str, float]:
        """Change of each MV the proposal asks for."""
        return {n: self.proposed[n] - self.current[n] for n in self.proposed}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("created_at", "data_ts", "expires_at"):
            d[key] = getattr(self, key).isoformat()
        d["quantile_levels"] = list(self.quantile_levels)
        return _finite_or_none(d)

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Proposal:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"proposal has unknown fields {sorted(unknown)}")
        data = dict(d)
        for key in ("created_at", "data_ts", "expires_at"):
            data[key] = datetime.fromisoformat(data[key])
        for key in ("predicted", "hold"):
            data[key] = {n: Band(**_nan_for_none(b)) for n, b in data[key].items()}
        data["quantile_levels"] = tuple(data["quantile_levels"])
        for key in ("current", "proposed", "setpoints", "cost", "hold_cost", "margins"):
            data[key] = {n: _num(v) for n, v in data[key].items()}
        data["mv_plan"] = {n: [_num(v) for v in vs] for n, vs in data["mv_plan"].items()}
        data["ood_score"] = _num(data["ood_score"])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> Proposal:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class NoProposal:
    """Why no proposal was made (stale data, out of distribution, no model, ...)."""

    plant: str
    code: str
    """Machine-readable reason: no_model, no_data, stale, ood, missing_data, infeasible, cv_limit
    (every plan, holding included, has a band crossing a hard CV limit)."""
    reason: str
    """The reason in words, shown to the engineer."""
    data_ts: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "plant": self.plant,
            "code": self.code,
            "reason": self.reason,
            "data_ts": self.data_ts.isoformat() if self.data_ts else None,
        }


def _num(v: float | None) -> float:
    return math.nan if v is None else float(v)


def _nan_for_none(b: dict[str, list[float | None]]) -> dict[str, list[float]]:
    return {k: [_num(v) for v in vs] for k, vs in b.items()}


def _finite_or_none(obj: Any) -> Any:
    """JSON has no NaN: missing numbers become null (and come back as NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_or_none(v) for v in obj]
    return obj
