"""View models of proposals: what the Proposals page shows, computed from the state store."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from twin.spec import PlantSpec
from twin.state import ProposalRecord, RuntimeStatus, Store


@dataclass(frozen=True)
class Trajectory:
    """One CV's predicted band over the horizon, timestamped on the plant clock."""

    times: list[datetime]
    mean: list[float]
    lo: list[float]
    hi: list[float]


@dataclass(frozen=True)
class ProposalView:
    """Everything the engineer needs to judge one proposal."""

    id: int
    status: str
    model_version: str
    data_ts: datetime
    expires_at: datetime
    mv_table: pd.DataFrame
    """Per MV: current, proposed, move, operator lo/hi, max_move."""
    predicted: dict[str, Trajectory]
    """CV bands under the proposal."""
    hold: dict[str, Trajectory]
    """CV bands if nothing moves."""
    setpoints: dict[str, float]
    margins: pd.DataFrame
    """Per limit: smallest predicted distance (negative: a predicted crossing)."""
    cost: dict[str, float]
    hold_cost: dict[str, float]
    notes: list[str]
    ood_score: float | None
    controller: str = "twin"
    """Who made it: the twin, or the spec's fallback when the twin abstained."""

    @property
    def improvement(self) -> float | None:
        """Expected cost reduction against holding (positive is better than doing nothing)."""
        a, b = self.hold_cost.get("total"), self.cost.get("total")
        if a is None or b is None:
            return None
        return float(a) - float(b)

    @property
    def improvement_pct(self) -> float | None:
        a = self.hold_cost.get("total")
        imp = self.improvement
        if imp is None or a is None or not a:
            return None
        return 100.0 * imp / float(a)


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def _trajectories(bands: dict[str, Any], start: datetime, step_s: float) -> dict[str, Trajectory]:
    out = {}
    for name, b in (bands or {}).items():
        n = len(b.get("mean") or [])
        times = [start + timedelta(seconds=step_s * (k + 1)) for k in range(n)]
        out[name] = Trajectory(
            times,
            [_num(v) for v in b["mean"]],
            [_num(v) for v in b.get("lo") or b["mean"]],
            [_num(v) for v in b.get("hi") or b["mean"]],
        )
    return out


def proposal_view(
    p: ProposalRecord, spec: PlantSpec, operating: dict[str, tuple[float, float]]
) -> ProposalView:
    """The view of one stored proposal (its payload is the planner's Proposal.to_dict())."""
    pl = p.payload or {}
    current = pl.get("current") or pl.get("mv_live") or {}
    rows = []
    for t in spec.mvs:
        cur = _num(current.get(t.name))
        new = _num(p.mv_values.get(t.name))
        lo, hi = operating.get(t.name, t.operating_limits)
        rows.append(
            {
                "MV": t.name,
                "unit": t.unit,
                "current": cur,
                "proposed": new,
                "move": new - cur,
                "operator lo": lo,
                "operator hi": hi,
                "max_move": t.max_move,
            }
        )
    step = float(pl.get("interval_s") or spec.plant.control_interval_s)
    margins = pd.DataFrame(
        [{"limit": k, "margin": _num(v)} for k, v in sorted((pl.get("margins") or {}).items())]
    )
    if len(margins):
        margins["crossing"] = margins["margin"] < 0
    return ProposalView(
        id=p.id,
        status=p.status,
        model_version=p.model_version or str(pl.get("model_version") or "-"),
        data_ts=p.data_ts,
        expires_at=p.expires_at,
        mv_table=pd.DataFrame(rows),
        predicted=_trajectories(pl.get("predicted") or {}, p.data_ts, step),
        hold=_trajectories(pl.get("hold") or {}, p.data_ts, step),
        setpoints={k: float(v) for k, v in (pl.get("setpoints") or {}).items() if v is not None},
        margins=margins,
        cost={k: _num(v) for k, v in (pl.get("cost") or {}).items()},
        hold_cost={k: _num(v) for k, v in (pl.get("hold_cost") or {}).items()},
        notes=list(pl.get("notes") or []),
        ood_score=None if pl.get("ood_score") is None else float(pl["ood_score"]),
        controller=str(pl.get("controller") or "twin"),
    )


def seconds_to_expiry(p: ProposalRecord, status: RuntimeStatus | None) -> float | None:
    """Plant-clock seconds left before the proposal expires (the runtime's newest sample is 'now')."""
    if status is None or status.last_sample_ts is None:
        return None
    return (p.expires_at - status.last_sample_ts).total_seconds()


def history_table(store: Store, plant: str, limit: int = 50) -> pd.DataFrame:
    """Past proposals, newest first, with who decided what and what was written."""
    rows = []
    for p in store.list_proposals(plant, limit=limit):
        d = store.get_decision(p.id)
        writes = store.writes_for(decision_id=d.id) if d is not None else []
        rows.append(
            {
                "id": p.id,
                "data time": p.data_ts,
                "status": p.status,
                "proposed": ", ".join(f"{k}={v:.4g}" for k, v in p.mv_values.items()),
                "decision": d.kind if d else "",
                "by": d.user if d else "",
                "values": ", ".join(f"{k}={v:.4g}" for k, v in (d.mv_values or {}).items())
                if d
                else "",
                "note": (d.note if d else p.status_reason) or "",
                "written": ", ".join(
                    f"{w.tag}={w.read_back:.4g}" for w in writes if w.read_back is not None
                ),
                "write status": ", ".join(sorted({w.status for w in writes})),
                "model": p.model_version or "",
                "controller": str(p.payload.get("controller") or "twin"),
            }
        )
    return pd.DataFrame(rows)
