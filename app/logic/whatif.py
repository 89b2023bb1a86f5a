"""The twin's counterfactuals: roll the model forward from any stored moment under given MV values.

Used three ways: the Replay page's "what the twin predicts from here" (actual MV moves) and
"what if" (edited moves), and the Proposals page's re-evaluation of a modified plan before it
may be approved. Only the model verbs (encode, rollout, readout, ood_score) are used, as the
planner does, with the same offset correction (measured CV minus the readout of now).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import torch

from app.logic.proposals import Trajectory
from twin.errors import BadInput
from twin.historian import Historian
from twin.spec import PlantSpec
from twin.window import lookback, window_rows

DEFAULT_HORIZON = 12
"""Control intervals rolled out when the caller gives no horizon (the planner's default)."""


OOD_WORSE = 1.1
"""A modified plan is refused for leaving the known region only when it is this much further out
than holding (the OOD score is noisy; a plant already outside must stay steerable)."""


class NoWindow(BadInput):
    """The historian has too little data before the chosen moment to fill the twin's window."""


def window_at(
    hist: Historian, spec: PlantSpec, tag_names: list[str], window: int, at: datetime
) -> np.ndarray:
    """The W sample instants up to `at` as rows in `tag_names` order (NaN where missing).

    Built by twin.window.window_rows, the one window rule of training, propose and serve.
    """
    reach = lookback(spec, window)
    frame = hist.read(at - reach, at + timedelta(microseconds=1), tags=tag_names)
    if frame.empty:
        raise NoWindow(f"{spec.name}: no data in the {reach} before {at.isoformat()}")
    out = window_rows(frame, spec, tag_names, window, at)
    if np.isnan(out[-1]).all():
        raise NoWindow(f"{spec.name}: no values at {at.isoformat()} to start the twin from")
    return out


def actual_mv_plan(
    hist: Historian, spec: PlantSpec, at: datetime, horizon: int
) -> dict[str, list[float]]:
    """The MV values the plant really held over each of the next `horizon` control intervals."""
    interval = spec.plant.control_interval_s
    names = [t.name for t in spec.mvs]
    end = at + timedelta(seconds=interval * horizon)
    before = hist.read(
        at - timedelta(seconds=interval * 4), at + timedelta(microseconds=1), tags=names
    )
    after = hist.read(at, end, tags=names)
    frame = pd.concat([before, after]).sort_index()
    frame = frame[~frame.index.duplicated(keep="last")].ffill()
    out: dict[str, list[float]] = {n: [] for n in names}
    for k in range(horizon):
        t = at + timedelta(seconds=interval * k)
        row = frame[frame.index <= t + timedelta(seconds=spec.plant.sample_period_s / 2)]
        for n in names:
            v = row[n].iloc[-1] if len(row) and n in row else math.nan
            out[n].append(float(v) if v is not None else math.nan)
    return out


@dataclass(frozen=True)
class Rollout:
    """The twin's prediction from one moment under one MV plan."""

    at: datetime
    mv_plan: dict[str, list[float]]
    cv: dict[str, Trajectory]
    ood_ratio: list[float] | None
    """OOD score over the twin's threshold per predicted interval (above 1: unseen region)."""


def rollout(
    model: Any,
    spec: PlantSpec,
    window: np.ndarray,
    at: datetime,
    mv_plan: Mapping[str, list[float]],
) -> Rollout:
    """Roll `model` out from `window` (W, n_tags) under `mv_plan` {mv: [value per interval]}."""
    names = list(model.mv_names)
    missing = [n for n in names if n not in mv_plan]
    if missing:
        raise BadInput(f"what-if: no values for MV {', '.join(missing)}")
    horizon = len(mv_plan[names[0]])
    if horizon < 1 or any(len(mv_plan[n]) != horizon for n in names):
        raise BadInput("what-if: every MV needs the same number (>= 1) of interval values")
    u = np.array([[float(mv_plan[n][k]) for n in names] for k in range(horizon)])
    if not np.isfinite(u).all():
        raise BadInput("what-if: MV values must be finite numbers")
    with torch.inference_mode():
        x = torch.tensor(np.asarray(window, dtype=np.float32))[None]  # (1, W, n_tags)
        z0 = model.encode(torch.nan_to_num(x), torch.isfinite(x))  # (1, D)
        y0, _ = model.readout(z0)  # (1, n_cv)
        zs = model.rollout(z0, torch.as_tensor(u, dtype=torch.float32)[None])  # (1, H, D)
        y, q = model.readout(zs)  # (1, H, n_cv), (1, H, n_cv, n_q)
        threshold = float(getattr(model, "ood_threshold", math.inf))
        ood = None
        if math.isfinite(threshold) and threshold > 0:
            ood = (model.ood_score(zs[0]) / threshold).double().tolist()
    latest = _last_finite(window)
    cols = list(model.tag_names)
    interval = spec.plant.control_interval_s
    times = [at + timedelta(seconds=interval * (k + 1)) for k in range(horizon)]
    cv = {}
    for i, n in enumerate(model.cv_names):
        meas = latest[cols.index(n)]
        off = float(meas - y0[0, i]) if math.isfinite(meas) else 0.0
        cv[n] = Trajectory(
            times,
            (y[0, :, i] + off).double().tolist(),
            (q[0, :, i, 0] + off).double().tolist(),
            (q[0, :, i, -1] + off).double().tolist(),
        )
    return Rollout(at, {n: [float(v) for v in mv_plan[n]] for n in names}, cv, ood)


def _last_finite(window: np.ndarray) -> np.ndarray:
    out = np.full(window.shape[1], np.nan)
    for j in range(window.shape[1]):
        ok = np.flatnonzero(np.isfinite(window[:, j]))
        if len(ok):
            out[j] = window[ok[-1], j]
    return out


def held(values: Mapping[str, float], horizon: int) -> dict[str, list[float]]:
    """An MV plan that moves once to `values` and holds them."""
    return {k: [float(v)] * horizon for k, v in values.items()}


def worst_margins(
    r: Rollout, spec: PlantSpec, operating: Mapping[str, tuple[float, float]]
) -> dict[str, float]:
    """Smallest distance of each CV band to its operator and engineering limits (negative: crossing)."""
    out = {}
    for n, tr in r.cv.items():
        t = spec.tag(n)
        olo, ohi = operating.get(n, t.operating_limits)
        elo, ehi = t.limits
        lo, hi = np.array(tr.lo), np.array(tr.hi)
        out[f"{n}.operating_lo"] = float(np.min(lo - olo))
        out[f"{n}.operating_hi"] = float(np.min(ohi - hi))
        out[f"{n}.limits_lo"] = float(np.min(lo - elo))
        out[f"{n}.limits_hi"] = float(np.min(ehi - hi))
    return out


@dataclass(frozen=True)
class Evaluation:
    """The twin's verdict on a modified plan (what twin.api.modify records with the decision)."""

    ok: bool
    reasons: list[str]
    values: dict[str, float]
    margins: dict[str, float]
    hold_margins: dict[str, float]
    max_ood_ratio: float | None
    rollout: Rollout | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "reasons": list(self.reasons),
            "values": dict(self.values),
            "margins": dict(self.margins),
            "hold_margins": dict(self.hold_margins),
            "max_ood_ratio": self.max_ood_ratio,
            "predicted": {
                n: {"mean": t.mean, "lo": t.lo, "hi": t.hi}
                for n, t in (self.rollout.cv.items() if self.rollout else [])
            },
        }


def evaluate_modification(
    model: Any,
    spec: PlantSpec,
    window: np.ndarray,
    at: datetime,
    values: Mapping[str, float],
    current: Mapping[str, float],
    operating: Mapping[str, tuple[float, float]],
    horizon: int = DEFAULT_HORIZON,
) -> Evaluation:
    """Predict the modified values held over the horizon and compare with holding the current ones.

    Refused when the modification makes a predicted limit crossing worse than doing nothing
    (so a plant already outside a limit can still be moved back), or takes the plant further
    into a region the twin has not seen.
    """
    mod = rollout(model, spec, window, at, held(values, horizon))
    hold = rollout(model, spec, window, at, held(current, horizon))
    m, mh = worst_margins(mod, spec, operating), worst_margins(hold, spec, operating)
    reasons = []
    for key, v in m.items():
        if v < 0 and v < mh[key] - 1e-9:
            cv, which = key.split(".", 1)
            kind = "engineering" if which.startswith("limits") else "operator"
            side = "lower" if which.endswith("lo") else "upper"
            reasons.append(
                f"{cv} is predicted to cross its {side} {kind} limit by {-v:.4g} "
                f"(holding: {max(0.0, -mh[key]):.4g})"
            )
    ood = max(mod.ood_ratio) if mod.ood_ratio else None
    ood_hold = max(hold.ood_ratio) if hold.ood_ratio else None
    if ood is not None and ood > 1.0 and (ood_hold is None or ood > OOD_WORSE * ood_hold):
        reasons.append(f"the plan leads where the twin has not seen data (OOD ratio {ood:.2f})")
    return Evaluation(not reasons, reasons, dict(values), m, mh, ood, mod)
