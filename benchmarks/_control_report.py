"""Scoring, statistics and the report of the closed-loop control benchmark (benchmarks/control.py)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy import stats

from twin.spec import PlantSpec


@dataclass
class Run:
    """What one controller did on one scenario, sampled at the plant's sample period."""

    t_s: list[float] = field(default_factory=list)
    y: dict[str, list[float]] = field(default_factory=dict)
    sp: dict[str, list[float]] = field(default_factory=dict)
    u: dict[str, list[float]] = field(default_factory=dict)
    plan_ms: list[float] = field(default_factory=list)
    plan_cpu_ms: list[float] = field(default_factory=list)
    """The decision's CPU time: its cost on an idle core (this machine is shared)."""
    moves: list[dict[str, float]] = field(default_factory=list)
    """(previous, applied) MV values of every decision, to audit limits and max_move."""
    no_proposal: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    fallback_decisions: int = 0
    """Decisions the fallback (linear MPC) made because the twin abstained."""


def score(run: Run, spec: PlantSpec) -> dict[str, float]:
    """Integrated squared tracking error, limit violations, moves and planning times."""
    dt = spec.plant.sample_period_s
    cost = 0.0
    for n in run.y:
        w = spec.objective.weights.get(n, 1.0)
        err = np.array(run.y[n]) - np.array(run.sp[n])
        cost += w * float(np.nansum(err**2)) * dt
    cv_violations, cv_worst, eng_crossings = 0, 0.0, 0
    for n, ys in run.y.items():
        tag = spec.tag(n)
        y = np.array(ys)
        lo, hi = tag.operating_limits
        over = np.maximum(y - hi, 0.0) + np.maximum(lo - y, 0.0)
        cv_violations += int(np.sum(over > 1e-9))
        cv_worst = max(cv_worst, float(over.max(initial=0.0)))
        elo, ehi = tag.limits
        eng_crossings += int(np.sum((y > ehi) | (y < elo)))
    mv_violations, total_move = 0, 0.0
    for m in run.moves:
        for tag in spec.mvs:
            prev, new = m[f"prev.{tag.name}"], m[tag.name]
            lo, hi = tag.operating_limits
            tol = 1e-9 * max(1.0, abs(hi))
            if new < lo - tol or new > hi + tol or abs(new - prev) > tag.max_move + tol:
                mv_violations += 1
            total_move += abs(new - prev)
    ms = np.array(run.plan_ms)
    out = {
        "cost": cost,
        "cv_violations": cv_violations,
        "cv_worst": cv_worst,
        "cv_limit_crossings": eng_crossings,
        "mv_violations": mv_violations,
        "total_move": total_move,
        "plan_ms_p50": float(np.percentile(ms, 50)),
        "plan_ms_p95": float(np.percentile(ms, 95)),
        "plan_cpu_ms_p50": float(np.percentile(run.plan_cpu_ms, 50)),
        "plan_cpu_ms_p95": float(np.percentile(run.plan_cpu_ms, 95)),
        "decisions": len(ms),
    }
    if "T" in run.y:
        out["max_T"] = float(np.max(run.y["T"]))
    # Steady-state error: the mean CV error over the run's last 10 minutes, against the
    # transmitter noise (an offset below it cannot be told from noise).
    tail = np.array(run.t_s) >= run.t_s[-1] - 600.0 if run.t_s else np.array([], bool)
    for n in run.y:
        sp = np.array(run.sp[n])
        if np.isfinite(sp).any():
            out[f"ss_error.{n}"] = float(np.nanmean((np.array(run.y[n]) - sp)[tail]))
    if run.no_proposal:
        out["no_proposal"] = dict(run.no_proposal)
    if run.fallback_decisions:
        out["fallback_decisions"] = run.fallback_decisions
    if run.notes:
        out["outside_known_region_notes"] = len(run.notes)
    return out


def with_ratios(table: dict[str, dict[str, float]]) -> None:
    """Add each controller's cost ratio to the oracle, to hold and (the planner) to the linear
    MPC, within one scenario seed (and one twin seed): ratios of paired runs."""
    oracle = table.get("oracle", {}).get("cost")
    hold = table.get("hold", {}).get("cost")
    for row in table.values():
        row["ratio_to_oracle"] = row["cost"] / oracle if oracle else math.nan
        row["ratio_to_hold"] = row["cost"] / hold if hold else math.nan
    if "jepa" in table and "linear_mpc" in table and table["linear_mpc"]["cost"] > 0:
        table["jepa"]["ratio_to_linear_mpc"] = table["jepa"]["cost"] / table["linear_mpc"]["cost"]


def chart(runs: dict[str, dict[str, Run]], path: Path) -> None:
    """Trajectories of every CV with a setpoint and every MV, per scenario, as one HTML page."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    parts = []
    for key, by_ctl in runs.items():
        first = next(iter(by_ctl.values()))
        cv_rows = [n for n in first.y if not all(math.isnan(v) for v in first.sp[n])]
        extra = [n for n in first.y if n not in cv_rows and n == "T"]
        rows = cv_rows + extra + list(first.u)
        fig = make_subplots(rows=len(rows), cols=1, shared_xaxes=True, subplot_titles=rows)
        step = max(1, len(first.t_s) // 800)  # at most ~800 points a trace keeps the page small
        for ctl, run in by_ctl.items():
            t = np.array(run.t_s)[::step] / 60.0
            for i, n in enumerate(rows, start=1):
                ys = (run.y[n] if n in run.y else run.u[n])[::step]
                fig.add_trace(
                    go.Scatter(x=t, y=ys, name=ctl, legendgroup=ctl, showlegend=(i == 1)),
                    row=i,
                    col=1,
                )
        for i, n in enumerate(cv_rows, start=1):
            fig.add_trace(
                go.Scatter(
                    x=np.array(first.t_s)[::step] / 60.0,
                    y=first.sp[n][::step],
                    name="setpoint",
                    line={"dash": "dash", "color": "black"},
                    showlegend=(i == 1),
                ),
                row=i,
                col=1,
            )
        fig.update_layout(title=key, height=260 * len(rows), xaxis_title="minutes")
        # plotly.js inline, once: the page opens on a plant network with no internet access.
        parts.append(fig.to_html(full_html=False, include_plotlyjs=not parts))
    path.write_text(
        '<html><head><meta charset="utf-8"><title>closed-loop control benchmark</title></head>'
        "<body>" + "\n".join(parts) + "</body></html>",
        encoding="utf-8",
    )


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % t-interval (NaN with fewer than two values)."""
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan
    if len(v) < 2:
        return float(v.mean()), math.nan
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return float(v.mean()), half


SUMMED = ("cv_violations", "cv_limit_crossings", "mv_violations", "decisions")
"""Counts summed over runs; fallback_decisions too, where present."""
MEANED = (
    "cost",
    "ratio_to_oracle",
    "ratio_to_hold",
    "ratio_to_linear_mpc",
    "cv_worst",
    "total_move",
)


def aggregate(runs: list[dict]) -> dict:
    """One controller on one scenario over its seeds: means with 95 % intervals, sums of the
    counts, the worst of the extremes, the pooled planning-time percentiles, and every run."""
    out: dict = {"n_runs": len(runs)}
    keys = set(MEANED) | {k for r in runs for k in r if k.startswith("ss_error.")}
    for key in sorted(keys):
        values = [r[key] for r in runs if key in r]
        if values:
            out[key], out[f"{key}_ci95"] = mean_ci(values)
    for key in SUMMED:
        out[key] = int(sum(r[key] for r in runs))
    if any("fallback_decisions" in r for r in runs):
        out["fallback_decisions"] = int(sum(r.get("fallback_decisions", 0) for r in runs))
    if any("max_T" in r for r in runs):
        out["max_T"] = max(r["max_T"] for r in runs)
    for key in ("plan_ms_p50", "plan_ms_p95", "plan_cpu_ms_p50", "plan_cpu_ms_p95"):
        out[key] = float(np.median([r[key] for r in runs]))
    refusals: dict[str, int] = {}
    for r in runs:
        for code, n in r.get("no_proposal", {}).items():
            refusals[code] = refusals.get(code, 0) + n
    if refusals:
        out["no_proposal"] = refusals
    out["runs"] = runs
    return out


def _pm(row: dict, key: str, fmt: str = ".3g") -> str:
    value, half = row.get(key, math.nan), row.get(f"{key}_ci95", math.nan)
    if not math.isfinite(value):
        return "-"
    return f"{value:{fmt}}" + (f" ± {half:{fmt}}" if math.isfinite(half) else "")


def print_table(results: dict, console: Console) -> None:
    table = Table(title="closed-loop control: means over seeds ± 95 % interval")
    cols = (
        "scenario",
        "controller",
        "n",
        "cost",
        "/oracle",
        "/linear MPC",
        "ss error",
        "eng cross",
        "cv viol",
        "mv viol",
        "refused",
        "plan p95 ms",
    )
    for col in cols:
        table.add_column(col, justify="left" if col in cols[:2] else "right")
    for key, rows in results["scenarios"].items():
        for ctl, r in rows.items():
            ss = [k for k in r if k.startswith("ss_error.") and not k.endswith("_ci95")]
            table.add_row(
                key,
                ctl,
                str(r["n_runs"]),
                _pm(r, "cost", ".4g"),
                _pm(r, "ratio_to_oracle", ".2f"),
                _pm(r, "ratio_to_linear_mpc", ".2f"),
                ", ".join(f"{k[9:]} {_pm(r, k, '.2g')}" for k in ss),
                str(r["cv_limit_crossings"]),
                str(r["cv_violations"]),
                str(r["mv_violations"]),
                str(sum(r.get("no_proposal", {}).values())),
                f"{r['plan_ms_p95']:.1f}",
            )
    console.print(table)


def cached(
    stem: Path,
    code: list[Path],
    extra: str,
    compute: Callable[[], Run] | None,
    spec: PlantSpec,
) -> tuple[Run, dict] | None:
    """The run (and its score) saved at stem-<digest>.json, or computed and saved there (None
    when it is not saved and `compute` is None). The digest covers the code files (folders:
    their .py files) and `extra` (a twin version)."""
    digest = hashlib.sha256()
    for f in sorted(p for root in code for p in ([root] if root.is_file() else root.rglob("*.py"))):
        digest.update(f.read_bytes())
    digest.update(extra.encode())
    path = stem.with_name(f"{stem.name}-{digest.hexdigest()[:12]}.json")
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        return Run(**saved["run"]), saved["score"]
    if compute is None:
        # Assembling only: the newest run of this stem, made by an earlier state of the code
        # (a change elsewhere in a folder the digest covers need not touch the closed loop).
        older = sorted(stem.parent.glob(f"{stem.name}-*.json"), key=lambda p: p.stat().st_mtime)
        if not older:
            return None
        saved = json.loads(older[-1].read_text(encoding="utf-8"))
        return Run(**saved["run"]), saved["score"]
    run = compute()
    result = score(run, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run": asdict(run), "score": result}), encoding="utf-8")
    return run, result


def save_results(results: dict, runs: dict[str, dict[str, Run]], folder: Path) -> None:
    """Write control.json (a partial run updates its scenarios and keeps the others) and
    control.html, the trajectories of the scenarios this invocation ran (one page, plotly.js
    inlined once)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "control.json"
    merged = results
    if out.is_file():
        previous = json.loads(out.read_text(encoding="utf-8"))
        if "twin_seeds" in previous.get("config", {}):  # same format: merge scenario by scenario
            previous["scenarios"].update(results["scenarios"])
            for key, value in results["config"].items():
                before = previous["config"].get(key)
                if isinstance(value, dict) and isinstance(before, dict):
                    before.update(value)
                else:  # a new key, a plain value, or a value that became a dict (hours per plant)
                    previous["config"][key] = value
            merged = previous
    out.write_text(json.dumps(merged, indent=2), encoding="utf-8")
    if runs:
        chart(runs, folder / "control.html")
