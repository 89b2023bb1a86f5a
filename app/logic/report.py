"""A self-contained HTML report of a replay window: charts (plotly inlined), markers, notes."""

from __future__ import annotations

import html
from datetime import datetime

import plotly.graph_objects as go
import plotly.io as pio

from app.logic.replay import ReplayWindow


def incident_report(
    window: ReplayWindow,
    figures: list[go.Figure],
    *,
    title: str,
    notes: str = "",
    author: str = "",
    made_at: datetime | None = None,
) -> str:
    """One HTML file that opens anywhere offline: plotly.js is embedded once, in the first chart."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif;color:#333;margin:2em}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #bbb;padding:2px 6px}"
        "h1{font-size:20px}h2{font-size:16px}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p>Plant <b>{esc(window.plant)}</b>, window {esc(window.start.isoformat())} to "
        f"{esc(window.end.isoformat())} (plant clock)"
        + (f"; report by {esc(author)}" if author else "")
        + (f", made {esc(made_at.isoformat(timespec='seconds'))}" if made_at else "")
        + ".</p>",
    ]
    if notes:
        parts.append(f"<h2>Notes</h2><p>{esc(notes).replace(chr(10), '<br>')}</p>")
    if window.incidents:
        parts.append("<h2>Incidents marked in this window</h2><ul>")
        for i in window.incidents:
            parts.append(
                f"<li><b>{esc(i['title'])}</b> ({esc(str(i['start']))} to "
                f"{esc(str(i['end']))}, {esc(i['by'])}): {esc(i['notes'])}</li>"
            )
        parts.append("</ul>")
    parts.append("<h2>Trends: actual, predicted then, and events</h2>")
    for k, fig in enumerate(figures):
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=(k == 0)))
    marks = window.markers_frame()
    parts.append(f"<h2>Events ({len(marks)})</h2>")
    parts.append(marks.to_html(index=False, border=0) if len(marks) else "<p>none</p>")
    parts.append(f"<h2>Proposals in the window ({len(window.predictions)})</h2><ul>")
    for p in window.predictions:
        parts.append(
            f"<li>proposal {p.proposal_id} at {esc(p.data_ts.isoformat())}: {esc(p.status)}</li>"
        )
    parts.append("</ul></body></html>")
    return "\n".join(parts)
