"""`twin health-report`: gather a plant's controller health from the state store and the
historian, per day or shift, and write it as JSON, CSV or a plotted HTML page."""

from __future__ import annotations

import csv
import html
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from twin import api, audit
from twin.health.metrics import Health, HealthInputs, controller_health, periods
from twin.historian import Historian
from twin.paths import Home
from twin.spec import PlantSpec
from twin.state import Store

MAX_PROPOSALS = 100_000


def gather(
    store: Store, home: Home, spec: PlantSpec, start: datetime, end: datetime
) -> HealthInputs:
    """Everything one health report needs, read once."""
    proposals = [
        p
        for p in store.list_proposals(spec.name, limit=MAX_PROPOSALS)
        if start <= p.created_at <= end
    ]
    decisions = {p.id: d for p in proposals if (d := store.get_decision(p.id)) is not None}
    events = audit.entries(store, start=start, end=end, plant=spec.name)
    status = store.get_status(spec.name)
    running = bool(events) and events[-1]["kind"] != "runtime_stop" and status is not None
    frame = None
    folder = home.historian_dir(spec.name)
    if folder.exists():
        with Historian(folder) as h:
            span = h.time_range()
            if span is not None:
                frame = h.read(span[0], span[1], tags=[t.name for t in [*spec.cvs, *spec.mvs]])
    return HealthInputs(
        spec=spec,
        start=start,
        end=end,
        proposals=proposals,
        decisions=decisions,
        events=events,
        limits=api.operator_limits(store, spec),
        frame=frame,
        steps_running=int(status.steps_done or 0) if running and status else 0,
        served_until=status.heartbeat_at if running and status else None,
    )


def report(
    store: Store, home: Home, spec: PlantSpec, start: datetime, end: datetime, by: str | None
) -> dict[str, Any]:
    """The whole window's health and, with `by` ("day"/"shift"), each period's."""
    inputs = gather(store, home, spec, start, end)
    out: dict[str, Any] = {"plant": spec.name, "total": controller_health(inputs).to_dict()}
    if by is not None:
        out["periods"] = [
            controller_health(_slice(inputs, a, b)).to_dict() for a, b in periods(start, end, by)
        ]
    return out


def _slice(inputs: HealthInputs, a: datetime, b: datetime) -> HealthInputs:
    from dataclasses import replace

    props = [p for p in inputs.proposals if a <= p.created_at < b]
    events = [e for e in inputs.events if a <= datetime.fromisoformat(e["at"]) < b]
    frame = inputs.frame
    if frame is not None:
        frame = frame.loc[(frame.index >= a) & (frame.index < b)]
    return replace(inputs, start=a, end=b, proposals=props, events=events, frame=frame)


def rows(rep: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per period (the total first), nested figures as `name.key` columns."""
    out = []
    for h in [rep["total"], *rep.get("periods", [])]:
        row: dict[str, Any] = {}
        for k, v in h.items():
            if isinstance(v, dict):
                row.update({f"{k}.{kk}": vv for kk, vv in v.items()})
            else:
                row[k] = v
        out.append(row)
    return out


def write(rep: dict[str, Any], path: Path) -> None:
    """JSON, CSV or HTML by the file's suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(rep, indent=2))
    elif path.suffix == ".csv":
        table = rows(rep)
        cols = sorted({c for r in table for c in r}, key=lambda c: (c not in table[0], c))
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            w.writerows(table)
    elif path.suffix in (".html", ".htm"):
        path.write_text(html_page(rep))
    else:
        raise ValueError(f"{path}: write .json, .csv or .html")


def html_page(rep: dict[str, Any]) -> str:
    """A self-contained page: the totals as a table and each period's figures as a chart."""
    import plotly.graph_objects as go

    periods_ = rep.get("periods") or [rep["total"]]
    x = [p["start"] for p in periods_]
    fig = go.Figure()
    for key in ("service_factor", "mv_utilisation", "interventions_per_h"):
        fig.add_bar(x=x, y=[p[key] for p in periods_], name=key)
    fig.update_layout(title=f"Controller health of {rep['plant']}", barmode="group")
    cells = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(json.dumps(v))}</td></tr>"
        for k, v in rep["total"].items()
    )
    return (
        f"<html><head><meta charset='utf-8'><title>Health {html.escape(rep['plant'])}</title>"
        f"</head><body><h1>Controller health: {html.escape(rep['plant'])}</h1>"
        f"<table>{cells}</table>{fig.to_html(full_html=False, include_plotlyjs=True)}"
        "</body></html>"
    )


__all__ = ["Health", "gather", "html_page", "report", "rows", "write"]
