"""Plotly figures of the control room, in the ISA-101 high-performance HMI style.

Greys for everything normal; colour is reserved for abnormal states and alarms so that it
draws the eye only when something needs attention.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.logic.proposals import ProposalView, Trajectory
from app.logic.replay import Marker, ReplayWindow
from app.logic.trends import Bands, TagState
from app.logic.whatif import Rollout

BG = "#e6e6e6"
LINE = "#404040"
FAINT = "#9a9a9a"
BAND = "rgba(120,120,120,0.15)"
OP_BAND = "rgba(255,255,255,0.7)"
ALARM = "#d0021b"
WARN = "#f5a623"
STATE_COLOUR = {
    TagState.NORMAL: LINE,
    TagState.OPERATING: WARN,
    TagState.LIMIT: ALARM,
    TagState.MISSING: FAINT,
}
MARKER_STYLE = {  # kind -> (symbol, colour): only what went wrong is coloured
    "proposal": ("triangle-up", FAINT),
    "approve": ("circle", LINE),
    "modify": ("diamond", LINE),
    "reject": ("x", WARN),
    "write": ("square", LINE),
    "refused": ("x", ALARM),
    "alarm": ("star", ALARM),
}


def _layout(fig: go.Figure, title: str, unit: str = "", height: int = 260) -> go.Figure:
    fig.update_layout(
        title={"text": title, "font": {"size": 13, "color": LINE}},
        height=height,
        margin={"l": 50, "r": 10, "t": 30, "b": 10},
        plot_bgcolor=BG,
        paper_bgcolor="white",
        font={"color": LINE},
        showlegend=True,
        # Above the plot: below it, the legend covered the date labels of the time axis.
        legend={
            "orientation": "h",
            "x": 1,
            "xanchor": "right",
            "y": 1.02,
            "yanchor": "bottom",
            "font": {"size": 10},
        },
    )
    fig.update_yaxes(title_text=unit, gridcolor="#d0d0d0", automargin=True)
    # Time axes: hours and minutes over the date; automargin grows the bottom margin to fit
    # both rows (a fixed 30 px clipped the date labels under the axis).
    fig.update_xaxes(gridcolor="#d0d0d0", automargin=True)
    if _has_time_axis(fig):
        fig.update_xaxes(tickformat="%H:%M<br>%d %b %Y")
    return fig


def _has_time_axis(fig: go.Figure) -> bool:
    xs = [t.x for t in fig.data if getattr(t, "x", None) is not None and len(t.x)]
    return bool(xs) and isinstance(xs[0][0], datetime | pd.Timestamp | np.datetime64)


def _limits(fig: go.Figure, bands: Bands) -> None:
    fig.add_hrect(y0=bands.op[0], y1=bands.op[1], fillcolor=OP_BAND, line_width=0, layer="below")
    for y in bands.eng:
        fig.add_hline(y=y, line={"color": LINE, "dash": "dash", "width": 1})
    for y in bands.op:
        fig.add_hline(y=y, line={"color": FAINT, "dash": "dot", "width": 1})


def _band(fig: go.Figure, tr: Trajectory, name: str, colour: str, dash: str = "solid") -> None:
    fig.add_trace(
        go.Scatter(
            x=tr.times + tr.times[::-1],
            y=tr.hi + tr.lo[::-1],
            fill="toself",
            fillcolor=BAND,
            line={"width": 0},
            hoverinfo="skip",
            name=f"{name} band",
            showlegend=False,
        )
    )
    fig.add_trace(
        go.Scatter(
            x=tr.times,
            y=tr.mean,
            name=name,
            mode="lines",
            line={"color": colour, "dash": dash, "width": 2},
        )
    )


def trend_figure(series: pd.Series, bands: Bands, state: TagState) -> go.Figure:
    """One tag's recent values with its operator band (white) and engineering limits (dashed)."""
    fig = go.Figure()
    _limits(fig, bands)
    fig.add_trace(
        go.Scatter(
            x=series.index,
            y=series.values,
            mode="lines",
            name=bands.tag,
            line={"color": LINE, "width": 1.5},
        )
    )
    last = series.dropna()
    if len(last):
        fig.add_trace(
            go.Scatter(
                x=[last.index[-1]],
                y=[last.iloc[-1]],
                mode="markers",
                marker={"color": STATE_COLOUR[state], "size": 10},
                name=str(state),
            )
        )
    title = f"{bands.tag} ({bands.role.upper()})" + (
        "" if state == TagState.NORMAL else f" - {state}"
    )
    return _layout(fig, title, bands.unit, height=220)


def proposal_figure(
    view: ProposalView, cv: str, bands: Bands, recent: pd.Series | None = None
) -> go.Figure:
    """A CV's predicted band under the proposal and under hold, with its target and limits."""
    fig = go.Figure()
    _limits(fig, bands)
    if recent is not None and len(recent.dropna()):
        fig.add_trace(
            go.Scatter(
                x=recent.index,
                y=recent.values,
                mode="lines",
                name="measured",
                line={"color": FAINT, "width": 1},
            )
        )
    if cv in view.hold:
        _band(fig, view.hold[cv], "hold", FAINT, "dash")
    if cv in view.predicted:
        _band(fig, view.predicted[cv], "proposal", LINE)
    if cv in view.setpoints:
        fig.add_hline(
            y=view.setpoints[cv], line={"color": LINE, "width": 1}, annotation_text="target"
        )
    return _layout(fig, f"{cv}: proposal vs hold", bands.unit)


def rollout_figure(
    r: Rollout,
    cv: str,
    bands: Bands,
    actual: pd.Series | None = None,
    other: Rollout | None = None,
    other_name: str = "hold",
) -> go.Figure:
    fig = go.Figure()
    _limits(fig, bands)
    if actual is not None and len(actual.dropna()):
        fig.add_trace(
            go.Scatter(
                x=actual.index,
                y=actual.values,
                mode="lines",
                name="actual",
                line={"color": FAINT, "width": 1},
            )
        )
    if other is not None and cv in other.cv:
        _band(fig, other.cv[cv], other_name, FAINT, "dash")
    if cv in r.cv:
        _band(fig, r.cv[cv], "twin", LINE)
    return _layout(fig, f"{cv}: twin rollout", bands.unit)


def _markers(fig: go.Figure, markers: Sequence[Marker], y: float) -> None:
    for kind in MARKER_STYLE:
        ms = [m for m in markers if m.kind == kind]
        if not ms:
            continue
        symbol, colour = MARKER_STYLE[kind]
        fig.add_trace(
            go.Scatter(
                x=[m.time for m in ms],
                y=[y] * len(ms),
                mode="markers",
                marker={"symbol": symbol, "color": colour, "size": 9},
                name=kind,
                text=[m.label for m in ms],
                hovertemplate="%{x}<br>%{text}<extra></extra>",
            )
        )


def replay_figure(
    window: ReplayWindow,
    tag: str,
    bands: Bands,
    at: datetime | None = None,
    whatif: Rollout | None = None,
    predicted_then: Rollout | None = None,
) -> go.Figure:
    """Actual values of a tag, the twin's stored predictions (proposals), markers and the scrub line."""
    fig = go.Figure()
    _limits(fig, bands)
    s = window.actual[tag] if tag in window.actual else pd.Series(dtype=float)
    fig.add_trace(
        go.Scatter(
            x=s.index, y=s.values, mode="lines", name="actual", line={"color": LINE, "width": 1.5}
        )
    )
    first = True
    for p in window.predictions:
        tr = p.cv.get(tag)
        if tr is None:
            continue
        fig.add_trace(
            go.Scatter(
                x=[p.data_ts, *tr.times],
                y=[None, *tr.mean],
                mode="lines",
                line={"color": FAINT, "width": 1, "dash": "dot"},
                name="predicted then",
                legendgroup="pred",
                showlegend=first,
            )
        )
        first = False
    if predicted_then is not None and tag in predicted_then.cv:
        _band(fig, predicted_then.cv[tag], "twin from here (actual moves)", FAINT, "dash")
    if whatif is not None and tag in whatif.cv:
        _band(fig, whatif.cv[tag], "what-if", WARN)
    y = bands.op[1]
    _markers(fig, window.markers, y)
    if at is not None:
        fig.add_vline(x=at, line={"color": LINE, "width": 1})
    return _layout(fig, f"{tag} ({bands.role.upper()})", bands.unit, height=300)


def nrmse_figure(rows: dict[str, dict[str, float | None]], title: str) -> go.Figure:
    """NRMSE by horizon, one line per model or version."""
    fig = go.Figure()
    greys = [LINE, FAINT, "#707070", "#b5b5b5", "#202020"]
    for i, (name, per_h) in enumerate(rows.items()):
        hs = sorted(per_h, key=lambda h: int(h))
        fig.add_trace(
            go.Scatter(
                x=[int(h) for h in hs],
                y=[per_h[h] for h in hs],
                name=name,
                mode="lines+markers",
                line={"color": greys[i % len(greys)], "dash": "solid" if i < 2 else "dash"},
            )
        )
    fig.update_xaxes(title_text="horizon (control intervals)")
    return _layout(fig, title, "NRMSE")


def curve_figure(history: list[dict], keys: Sequence[str]) -> go.Figure:
    """Training curves from a training history (one dict per epoch)."""
    fig = go.Figure()
    for i, k in enumerate(keys):
        ys = [h.get(k) for h in history]
        fig.add_trace(
            go.Scatter(
                x=list(range(1, len(ys) + 1)),
                y=ys,
                name=k,
                mode="lines",
                line={"color": [LINE, FAINT, "#707070"][i % 3]},
            )
        )
    fig.update_xaxes(title_text="epoch")
    return _layout(fig, "training", "loss")
