"""Drift detection: is the twin still as accurate as it was when it was commissioned?

Two sequential tests run on each matured prediction (what the twin predicted at a control
interval, under the move that was really written, against what the plant did):

- **Prediction errors.** Each error is divided by the RMSE the model card reports on held-out
  data (NRMSE x the CV's training std); squared and averaged over CVs, a twin as good as its card
  scores about 1. Closed-loop live errors are larger than the card's open-loop figures (the move
  lands a little after the data it was planned on, the observer's estimate is noisy), so the
  healthy level is not assumed to be 1: it is measured over a commissioning stretch after the
  version starts serving (`Commissioning`), and the card's figure only bounds it (a commissioning
  level above `max_reference` x the card is not taken as healthy). A one-sided CUSUM (Page) on
  the values divided by that reference fires when they stay above 1 + `slack` long enough to add
  up to `threshold`; each interval's term is capped so that one outlier cannot fire it alone.
- **Disturbance trend.** The offset-free observer absorbs a slow drift (fouling, wear), so the
  squared errors hardly grow until the plant leaves the region the twin knows. The drift shows
  in the observer's disturbance estimate instead, which ramps. The observer's output estimate
  moves by its gain times the one-step innovation (d_k = d_{k-1} + L e_k), so a ramp of r per
  interval leaves a steady bias r / L in the innovations, and their running sum since
  commissioning is the estimate's change over L. The test (`BiasState`) is a two-sided CUSUM on
  each CV's signed one-step innovation, centred and scaled by its commissioning mean and
  long-run std (the std inflated for the innovations' lag-1 autocorrelation).

The settings live in `twin.health.drift_config`, the commissioning in `twin.health.commissioning`
and the trend test's decision level (from its stated false-alarm rate) in `twin.health.arl`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from twin.health.arl import bias_threshold, exact_threshold, false_alarm
from twin.health.cusum import SequentialTest, TwoSidedCusum
from twin.health.drift_config import DriftConfig


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


def innovations(
    predicted: Mapping[str, Sequence[float | None]], actual: Mapping[str, Sequence[float | None]]
) -> dict[str, float]:
    """Signed one-step error (measured - predicted) of each CV known at the first step."""
    out = {}
    for cv, pred in predicted.items():
        seen = actual.get(cv, ())
        if pred and seen and pred[0] is not None and seen[0] is not None:
            e = float(seen[0]) - float(pred[0])
            if math.isfinite(e):
                out[cv] = e
    return out


def page_hinkley(
    values: Sequence[float], config: DriftConfig | None = None, reference: float = 1.0
) -> tuple[list[float], int | None]:
    """The CUSUM path over `values` / `reference` and the index of its first threshold crossing."""
    cfg = config or DriftConfig()
    s, path, fired = 0.0, [], None
    for i, x in enumerate(values):
        s = max(0.0, s + min(x / reference, cfg.cap) - (1.0 + cfg.slack))
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


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


@dataclass
class DriftState(SequentialTest):
    """The prediction-error test of one model version: one CUSUM on one-step errors and one on
    the mean over the multi-step horizon (each divided by its reference level), plus the OOD
    score's recent history."""

    config: DriftConfig = field(default_factory=DriftConfig)
    reference_one: float = 1.0
    """Healthy one-step level (1: the model card's; commissioning sets it in the runtime)."""
    reference_multi: float = 1.0
    one_step: float = 0.0
    multi_step: float = 0.0
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
        one_x = min(errors[0] / self.reference_one, cfg.cap)
        multi_x = min(multi / self.reference_multi, cfg.cap)
        self.one_step = max(0.0, self.one_step + one_x - 1.0 - cfg.slack)
        self.multi_step = max(0.0, self.multi_step + multi_x - 1.0 - cfg.slack)
        self.recent_one = [*self.recent_one, errors[0]][-20:]
        self.recent_multi = [*self.recent_multi, multi][-20:]
        return self.count_term(max(self.one_step, self.multi_step), cfg.threshold)

    @property
    def level(self) -> float:
        return max(self.one_step, self.multi_step)

    def evidence(self) -> dict[str, object]:
        """What the "retrain recommended" event records."""
        return {
            "test": "cusum",
            "slack": self.config.slack,
            "threshold": self.config.threshold,
            "reference_one_step": self.reference_one,
            "reference_multi_step": self.reference_multi,
            "one_step_cusum": self.one_step,
            "multi_step_cusum": self.multi_step,
            "predictions_scored": self.n,
            "recent_one_step_ratio": _mean(self.recent_one),
            "recent_multi_step_ratio": _mean(self.recent_multi),
            "ood_ratio_now": self.ood[-1] if self.ood else None,
            "ood_trend_per_interval": slope(self.ood),
        }


@dataclass
class BiasState(SequentialTest):
    """The disturbance-trend test: per CV, a two-sided CUSUM on the standardised one-step
    innovation z = (e - commissioning mean) / long-run std, and the innovations' running sum
    (the observer's output estimate has moved by its gain times that sum)."""

    mean: dict[str, float]
    std: dict[str, float]
    """Each CV's scale (the runtime passes the commissioning's `innovation_scale`)."""
    config: DriftConfig = field(default_factory=DriftConfig)
    interval_s: float = 30.0
    """Plant seconds per scored prediction (the control interval): the false-alarm window's
    length in intervals."""
    mean_se: dict[str, float] = field(default_factory=dict)
    """Standard error of each CV's commissioning mean in scale units (the threshold allows
    for them)."""
    threshold: float = 0.0
    """Decision level (set from the config's stated false-alarm rate: `bias_threshold`, at
    most `max_delay_factor` x the level for exactly known means)."""
    total: dict[str, float] = field(default_factory=dict)
    recent: dict[str, list[float]] = field(default_factory=dict)

    false_alarm: float = 0.0
    """The false-alarm probability over `bias_window_s` that the threshold gives."""

    def __post_init__(self) -> None:
        cfg = self.config
        self.cusum = TwoSidedCusum(cfg.bias_slack, cfg.bias_cap)
        ses = [self.mean_se.get(cv, 0.0) for cv in self.std]
        # A commissioning that ended at its longest with imprecise means: the detection delay
        # is bounded (max_delay_factor) and the false-alarm probability that gives is recorded.
        cap = cfg.max_delay_factor * exact_threshold(cfg, self.interval_s, len(ses))
        self.threshold = min(bias_threshold(cfg, self.interval_s, ses), cap)
        self.false_alarm = false_alarm(
            cfg, self.threshold, cfg.bias_window_s / self.interval_s, ses
        )

    def update(self, innovation: Mapping[str, float]) -> bool:
        """Add one matured prediction's signed one-step errors; True when it fires now."""
        seen = False
        for cv, e in innovation.items():
            if cv not in self.std or not math.isfinite(e):
                continue
            seen = True
            z = self.cusum.add(cv, (e - self.mean[cv]) / self.std[cv])
            self.total[cv] = self.total.get(cv, 0.0) + (e - self.mean[cv])
            self.recent[cv] = [*self.recent.get(cv, []), z][-20:]
        return seen and self.count_term(self.level, self.threshold)

    @property
    def level(self) -> float:
        return self.cusum.level

    def worst(self) -> str | None:
        """The CV whose CUSUM stands highest."""
        return self.cusum.worst()

    def evidence(self) -> dict[str, object]:
        return {
            "test": "two-sided cusum on standardised one-step innovations",
            "slack": self.config.bias_slack,
            "threshold": self.threshold,
            "false_alarm": self.false_alarm,
            "false_alarm_window_s": self.config.bias_window_s,
            **self.cusum.evidence(),
            "worst_cv": self.worst(),
            "innovation_sum_since_commissioning": dict(self.total),
            "recent_mean_z": {cv: _mean(zs) for cv, zs in self.recent.items()},
            "predictions_scored": self.n,
        }


@dataclass
class AbstentionRun:
    """The OOD trigger's count: consecutive control intervals in which the twin abstained (OOD
    ratio above 1), and when the run began. A twin that keeps abstaining has no predictions
    left to score, so the run persisting is itself the drift evidence. An interval without a
    verdict (ratio None or NaN: the runtime made no decision, e.g. a sensor fault or a refused plan)
    neither extends the run nor ends it; an interval in distribution ends it."""

    intervals: int = 0
    onset: datetime | None = None

    def update(self, ood_ratio: float | None, now: datetime) -> int:
        """Add one control interval's verdict; the run's length after it."""
        if ood_ratio is None or math.isnan(ood_ratio):
            return self.intervals
        if ood_ratio > 1.0:
            self.intervals += 1
            self.onset = self.onset or now
        else:
            self.intervals, self.onset = 0, None
        return self.intervals


def followed_steps(
    plan: Mapping[str, Sequence[float | None]],
    seen: Sequence[Mapping[str, float | None]],
    limits: Mapping[str, tuple[float, float]],
) -> int:
    """How many steps of a prediction the plant's MVs followed: a prediction is scored only
    under the moves it assumed (the plan's, or hold), up to the first interval at whose end an
    MV stood off its planned value by more than 0.1 % of its engineering span (in auto mode the
    next decisions move the MVs off a plan's later steps). `seen[k]` holds the MVs at the end of
    interval k + 1; an MV without a planned or a seen value does not end the run."""
    for k, values in enumerate(seen):
        for mv, (lo, hi) in limits.items():
            want, got = (list(plan.get(mv) or []))[k : k + 1], values.get(mv)
            if not want or want[0] is None or got is None:
                continue
            if abs(float(got) - float(want[0])) > 1e-3 * (float(hi) - float(lo)):
                return k
    return len(seen)
