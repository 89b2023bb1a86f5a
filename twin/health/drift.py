"""Drift detection: is the twin still as accurate as its model card says?

Each matured prediction (what the twin predicted at a control interval, under the move that was
really written) gives an error per CV and horizon. Divided by the RMSE the model card reports
on held-out data (NRMSE x the CV's training std), a healthy twin's squared errors average about
1 or less. A one-sided CUSUM (Page's test with a known reference level) on those normalised
squared errors fires when they stay above 1 + `slack` long enough to add up to `threshold`;
each interval's term is capped so that one outlier (a sensor spike) cannot fire it alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DriftConfig:
    """Settings of the sequential test."""

    slack: float = 0.5
    """Allowance above the held-out level (1.0) before evidence accrues."""
    threshold: float = 12.0
    """CUSUM level that fires the alarm."""
    cap: float = 8.0
    """Largest contribution of one interval (robustness to single spikes)."""
    ood_window: int = 20
    """Intervals over which the OOD score's trend (slope per interval) is fitted."""

    def __post_init__(self) -> None:
        if self.slack < 0 or self.threshold <= 0 or self.cap <= 1 + self.slack:
            raise ValueError(
                f"drift settings slack={self.slack}, threshold={self.threshold}, cap={self.cap}:"
                " need slack >= 0, threshold > 0 and cap > 1 + slack"
            )


def normalised_errors(
    predicted: Mapping[str, Sequence[float | None]],
    actual: Mapping[str, Sequence[float | None]],
    expected_rmse: Mapping[str, Sequence[float]],
) -> list[float]:
    """Mean over CVs of (error / held-out RMSE)^2 at each horizon step (1, 2, ...).

    predicted[cv][k], actual[cv][k]: the CV k+1 intervals after the prediction was made;
    expected_rmse[cv][k]: the model card's RMSE at that horizon. A step with no CV known ends
    the list (later steps are not yet measured)."""
    out: list[float] = []
    steps = max((len(v) for v in predicted.values()), default=0)
    for k in range(steps):
        terms = []
        for cv, pred in predicted.items():
            seen, scale = actual.get(cv, ()), expected_rmse.get(cv, ())
            if k >= len(pred) or k >= len(seen) or k >= len(scale):
                continue
            p, y, s = pred[k], seen[k], scale[k]
            if p is None or y is None or not (math.isfinite(p) and math.isfinite(y)) or s <= 0:
                continue
            terms.append(((y - p) / s) ** 2)
        if not terms:
            break
        out.append(sum(terms) / len(terms))
    return out


def page_hinkley(
    values: Sequence[float], config: DriftConfig | None = None
) -> tuple[list[float], int | None]:
    """The CUSUM path over `values` and the index at which it first crosses the threshold."""
    cfg = config or DriftConfig()
    s, path, fired = 0.0, [], None
    for i, x in enumerate(values):
        s = max(0.0, s + min(x, cfg.cap) - (1.0 + cfg.slack))
        path.append(s)
        if fired is None and s >= cfg.threshold:
            fired = i
    return path, fired


def slope(values: Sequence[float]) -> float | None:
    """Least-squares slope per step of the finite values (None with fewer than 3)."""
    pts = [(i, v) for i, v in enumerate(values) if math.isfinite(v)]
    if len(pts) < 3:
        return None
    n = len(pts)
    mx, my = sum(i for i, _ in pts) / n, sum(v for _, v in pts) / n
    sxx = sum((i - mx) ** 2 for i, _ in pts)
    return sum((i - mx) * (v - my) for i, v in pts) / sxx


@dataclass
class DriftState:
    """The running test of one model version: one CUSUM on one-step errors and one on the
    mean over the multi-step horizon, plus the OOD score's recent history."""

    config: DriftConfig = field(default_factory=DriftConfig)
    one_step: float = 0.0
    multi_step: float = 0.0
    n: int = 0
    fired: bool = False
    recent_one: list[float] = field(default_factory=list)
    recent_multi: list[float] = field(default_factory=list)
    ood: list[float] = field(default_factory=list)

    def update(self, errors: Sequence[float], ood_ratio: float | None = None) -> bool:
        """Add one matured prediction's normalised errors (by horizon); True when the test
        fires now (once per version: the alarm stands until a new version serves)."""
        if ood_ratio is not None and math.isfinite(ood_ratio):
            self.ood = [*self.ood, ood_ratio][-self.config.ood_window :]
        if not errors:
            return False
        cfg = self.config
        multi = sum(errors) / len(errors)
        self.one_step = max(0.0, self.one_step + min(errors[0], cfg.cap) - 1.0 - cfg.slack)
        self.multi_step = max(0.0, self.multi_step + min(multi, cfg.cap) - 1.0 - cfg.slack)
        self.recent_one = [*self.recent_one, errors[0]][-20:]
        self.recent_multi = [*self.recent_multi, multi][-20:]
        self.n += 1
        if self.fired or max(self.one_step, self.multi_step) < cfg.threshold:
            return False
        self.fired = True
        return True

    def evidence(self) -> dict[str, object]:
        """What the "retrain recommended" event records."""
        mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
        return {
            "test": "cusum",
            "slack": self.config.slack,
            "threshold": self.config.threshold,
            "one_step_cusum": self.one_step,
            "multi_step_cusum": self.multi_step,
            "predictions_scored": self.n,
            "recent_one_step_ratio": mean(self.recent_one),
            "recent_multi_step_ratio": mean(self.recent_multi),
            "ood_ratio_now": self.ood[-1] if self.ood else None,
            "ood_trend_per_interval": slope(self.ood),
        }
