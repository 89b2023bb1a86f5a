"""The Health page's figures: controller health per day or shift (twin.health_report), the
evidence of drift (model_drift alarms and retrain_recommended audit events) and what was done
about it (retraining, shadowing, gated promotion)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

from twin import audit, health_report
from twin.paths import Home
from twin.spec import PlantSpec
from twin.state import Store

DRIFT_ALARM = "model_drift"
RETRAIN_EVENT = "retrain_recommended"
MAINTENANCE_EVENTS = ("model_retrain", "retrain_shadowed", "model_promote")
"""The answers to a drift alarm, in the order they come (model_promote also matches
model_promote_refused: audit kinds are matched as prefixes)."""


def health(
    store: Store, home: Home, spec: PlantSpec, since: datetime, until: datetime, by: str
) -> dict[str, Any]:
    """The window's controller health, total and per period ("day" or "shift")."""
    return health_report.report(store, home, spec, since, until, by)


def trends(rep: dict[str, Any]) -> pd.DataFrame:
    """One row per period: service factor, interventions per hour and the mean time at limits
    over the plant's CVs and MVs (a period without historian samples has no time at limits)."""
    rows = []
    for p in rep.get("periods") or []:
        at = p.get("at_limits") or {}
        rows.append(
            {
                "start": pd.Timestamp(p["start"]),
                "service_factor": p.get("service_factor"),
                "mv_utilisation": p.get("mv_utilisation"),
                "interventions_per_h": p.get("interventions_per_h"),
                "time_at_limits": sum(at.values()) / len(at) if at else None,
            }
        )
    cols = ["start", "service_factor", "mv_utilisation", "interventions_per_h", "time_at_limits"]
    return pd.DataFrame(rows, columns=cols).astype({c: float for c in cols[1:]})


def refusals(rep: dict[str, Any]) -> pd.DataFrame:
    """Proposals not written over the window: the count of each status, then each reason."""
    total = rep["total"]
    rows = [{"what": "status", "name": k, "count": n} for k, n in total["refused"].items()]
    rows += [{"what": "reason", "name": k, "count": n} for k, n in total["refusal_reasons"].items()]
    rows += [
        {"what": "intervention", "name": k, "count": n}
        for k, n in total["interventions"].items()
        if n
    ]
    return pd.DataFrame(rows, columns=["what", "name", "count"])


def drift_evidence(store: Store, plant: str, since: datetime) -> pd.DataFrame:
    """Drift alarms and retrain recommendations since `since`, with the evidence the drift
    monitor recorded (CUSUM levels, recent error ratios, OOD trend), and the retraining, shadow
    and promotion decisions that answered them, newest first."""
    rows: list[dict[str, Any]] = [
        {
            "at": a.raised_at,
            "kind": f"alarm {DRIFT_ALARM}",
            "model": a.subject,
            "detail": a.message,
            "standing": a.active,
        }
        for a in store.alarm_history(plant, since)
        if a.kind == DRIFT_ALARM
    ]
    for e in audit.entries(store, start=since, plant=plant, kind=RETRAIN_EVENT):
        what = e.get("what") or {}
        rows.append(
            {
                "at": datetime.fromisoformat(e["at"]),
                "kind": RETRAIN_EVENT,
                "model": what.get("model_version"),
                "detail": ", ".join(f"{k}={_short(v)}" for k, v in what.items()),
                "standing": None,
            }
        )
    for kind in MAINTENANCE_EVENTS:
        for e in audit.entries(store, start=since, plant=plant, kind=kind):
            what = e.get("what") or {}
            rows.append(
                {
                    "at": datetime.fromisoformat(e["at"]),
                    "kind": e["kind"],
                    "model": what.get("version")
                    or str(e.get("subject", "")).removeprefix("model:"),
                    "detail": e.get("why") or "",
                    "standing": None,
                }
            )
    frame = pd.DataFrame(rows, columns=["at", "kind", "model", "detail", "standing"])
    return frame.sort_values("at", ascending=False, ignore_index=True)


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def trend_figure(frame: pd.DataFrame, column: str, title: str) -> Any:
    """A bar per period of one health figure (a gap where the period has none)."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(x=frame["start"], y=frame[column], name=column))
    fig.update_layout(title=title, height=260, margin={"l": 40, "r": 10, "t": 40, "b": 30})
    return fig


def percent(x: float | None) -> str:
    """A fraction as a percentage, or a dash when there is nothing to divide by."""
    return "–" if x is None else f"{100 * x:.0f} %"
