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
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DriftConfig:
    """Settings of the sequential tests and the commissioning that sets their reference."""

    slack: float = 0.5
    """Allowance above the reference level (1.0) before prediction-error evidence accrues."""
    threshold: float = 12.0
    """Prediction-error CUSUM level that fires the alarm."""
    cap: float = 8.0
    """Largest contribution of one interval (robustness to single spikes)."""
    ood_window: int = 20
    """Intervals over which the OOD score's trend (slope per interval) is fitted."""
    settle_s: float = 600.0
    """Plant seconds after a version starts serving that are not scored (start-up transient)."""
    commission_s: float = 900.0
    """Plant seconds after the settling whose predictions set the reference levels."""
    min_commission: int = 10
    """Fewest scored predictions a commissioning needs (it lasts longer when fewer came)."""
    max_reference: float = 9.0
    """Bound of the commissioned error level, in units of the card's squared RMSE (9: live
    errors up to 3x the held-out RMSE are taken as the closed-loop normal)."""
    bias_slack: float = 0.5
    """Disturbance-trend CUSUM: allowance, in long-run stds of the innovation (a bias of
    half the innovation's scale is the smallest it is built to find)."""
    bias_false_alarm: float = 0.01
    """Stated false-alarm probability of the trend test (all CVs, both directions) over
    `bias_window_s` of operation without drift; the CUSUM threshold follows from it."""
    bias_window_s: float = 86400.0
    """Plant seconds the stated false-alarm probability covers (a day)."""
    max_delay_factor: float = 2.0
    """Commissioning goes on (up to `commission_max_s`) while the estimation error of its
    means raises the trend test's threshold, and so its detection delay, by more than this
    factor over a reference known exactly (`bias_threshold`); a commissioning that ends at its
    longest before that gets this factor's threshold, and a higher false-alarm probability,
    which `BiasState.false_alarm` computes and the runtime records."""
    commission_max_s: float | None = None
    """Longest commissioning, plant seconds after the settling (None: 4 x commission_s)."""
    innovation_floor: float = 1.0
    """Floor of the innovation's scale, in units of the card's one-step held-out RMSE: a bias
    the twin's own held-out error already allows (an operating point the commissioning stretch
    did not visit) is not a drift."""
    bias_cap: float = 4.0
    """Largest standardised innovation one interval adds (robustness to spikes)."""
    ood_persist: int = 10
    """Consecutive control intervals with the OOD ratio above 1 (the twin abstaining: the plant
    is where it has not been trained) after commissioning that fire the alarm."""

    def __post_init__(self) -> None:
        if self.slack < 0 or self.threshold <= 0 or self.cap <= 1 + self.slack:
            raise ValueError(
                f"drift settings slack={self.slack}, threshold={self.threshold}, cap={self.cap}:"
                " need slack >= 0, threshold > 0 and cap > 1 + slack"
            )
        if (
            self.bias_slack <= 0
            or self.bias_cap <= self.bias_slack
            or not 0 < self.bias_false_alarm < 1
            or self.bias_window_s <= 0
            or self.max_delay_factor < 1
            or self.innovation_floor < 0
        ):
            raise ValueError(
                f"drift settings bias_slack={self.bias_slack}, bias_cap={self.bias_cap}, "
                f"bias_false_alarm={self.bias_false_alarm}, bias_window_s={self.bias_window_s},"
                f" max_delay_factor={self.max_delay_factor}, innovation_floor={self.innovation_floor}: need"
                " bias_slack > 0, bias_cap > bias_slack, 0 < bias_false_alarm < 1,"
                " bias_window_s > 0, max_delay_factor >= 1 and innovation_floor >= 0"
            )
        if self.max_reference < 1 or self.min_commission < 3 or self.ood_persist < 1:
            raise ValueError(
                f"drift settings max_reference={self.max_reference}, min_commission="
                f"{self.min_commission}, ood_persist={self.ood_persist}: need max_reference >= 1,"
                " min_commission >= 3 and ood_persist >= 1"
            )

    @property
    def commission_longest_s(self) -> float:
        """Plant seconds after the settling by which commissioning ends however precise."""
        return 4.0 * self.commission_s if self.commission_max_s is None else self.commission_max_s


ENV_SETTINGS = {
    "TWIN_DRIFT_SETTLE_S": "settle_s",
    "TWIN_DRIFT_COMMISSION_S": "commission_s",
    "TWIN_DRIFT_COMMISSION_MAX_S": "commission_max_s",
    "TWIN_DRIFT_MIN_COMMISSION": "min_commission",
    "TWIN_DRIFT_FALSE_ALARM": "bias_false_alarm",
    "TWIN_DRIFT_INNOVATION_FLOOR": "innovation_floor",
    "TWIN_DRIFT_MAX_DELAY_FACTOR": "max_delay_factor",
}
"""Environment variables that shorten the commissioning (accelerated simulations, tests) and
make the trend test more sensitive than its stated false-alarm rate allows (the CI test's
3-prediction commissioning)."""


def config_from_env(env: Mapping[str, str]) -> DriftConfig:
    """DriftConfig with the commissioning lengths the environment sets (ENV_SETTINGS)."""
    changes: dict[str, float | int] = {}
    for var, name in ENV_SETTINGS.items():
        if var in env:
            try:
                changes[name] = int(env[var]) if name == "min_commission" else float(env[var])
            except ValueError:
                raise ValueError(f"{var}={env[var]!r}: expected a number") from None
    return DriftConfig(**changes)  # type: ignore[arg-type]


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


def cusum_arl(slack: float, threshold: float, mean: float = 0.0) -> float:
    """Average run length (intervals) of a one-sided CUSUM max(0, S + z - slack) >= threshold
    on z ~ N(mean, 1) (Siegmund's approximation)."""
    d, b = mean - slack, threshold + 1.166
    if abs(d) < 1e-9:
        return b * b
    x = -2.0 * d * b
    if x > 700:  # in control and far below the threshold: never, in any run
        return math.inf
    return (math.exp(x) - x - 1.0) / (2.0 * d * d)


_GRID = [i / 10 for i in range(-60, 61)]
_WEIGHTS = [math.exp(-x * x / 2) for x in _GRID]
_WSUM = sum(_WEIGHTS)


def false_alarm(
    config: DriftConfig, threshold: float, intervals: float, mean_se: Sequence[float]
) -> float:
    """Probability that the trend test fires within `intervals` without drift: the sum over
    its CVs (standard error `mean_se` of each commissioning mean, in scale units) and both
    directions of 1 - exp(-intervals / ARL), the ARL taken at the standing bias the mean's
    estimation error leaves and averaged over that error (normal)."""
    total = 0.0
    for se in mean_se:
        p = 0.0
        for x, w in zip(_GRID, _WEIGHTS, strict=True):
            arl = cusum_arl(config.bias_slack, threshold, x * se)
            p += w * (-math.expm1(-intervals / arl) if math.isfinite(arl) else 0.0)
        total += 2.0 * p / _WSUM
    return total


def bias_threshold(config: DriftConfig, interval_s: float, mean_se: Sequence[float]) -> float:
    """The trend test's decision level: the lowest whose false-alarm probability over
    `bias_window_s` (`false_alarm`, allowing for the commissioning means' estimation error) is
    `bias_false_alarm`. With the means known exactly and two CVs at a 30 s interval: 12.1."""
    intervals = config.bias_window_s / interval_s
    ses = list(mean_se) or [0.0]
    lo, hi = 0.0, 1.0
    while false_alarm(config, hi, intervals, ses) > config.bias_false_alarm and hi < 1e4:
        lo, hi = hi, 2.0 * hi
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if false_alarm(config, mid, intervals, ses) > config.bias_false_alarm:
            lo = mid
        else:
            hi = mid
    return hi


@functools.lru_cache(maxsize=64)
def _exact_threshold(config: DriftConfig, interval_s: float, cvs: int) -> float:
    return bias_threshold(config, interval_s, [0.0] * cvs)


def slope(values: Sequence[float]) -> float | None:
    """Least-squares slope per step of the finite values (None with fewer than 3)."""
    pts = [(i, v) for i, v in enumerate(values) if math.isfinite(v)]
    if len(pts) < 3:
        return None
    n = len(pts)
    mx, my = sum(i for i, _ in pts) / n, sum(v for _, v in pts) / n
    sxx = sum((i - mx) ** 2 for i, _ in pts)
    return sum((i - mx) * (v - my) for i, v in pts) / sxx


@dataclass(frozen=True)
class Reference:
    """What commissioning measured: the healthy levels both tests are referenced against."""

    one_step: float
    """Reference of the one-step normalised squared error (1: the card's level)."""
    multi_step: float
    """Reference of the horizon-mean normalised squared error."""
    measured_one_step: float
    """The commissioning mean before the card's bound was applied."""
    measured_multi_step: float
    within_card_bound: bool
    """False: live errors at commissioning exceeded max_reference x the card (clipped)."""
    innovation_mean: dict[str, float]
    """Each CV's mean one-step innovation (engineering units)."""
    innovation_std: dict[str, float]
    """Each CV's long-run std of the one-step innovation (engineering units)."""
    innovation_lag1: dict[str, float]
    """Lag-1 autocorrelation the long-run std allows for (clipped to [0, 0.9])."""
    predictions: int
    innovation_scale: dict[str, float] = field(default_factory=dict)
    """Each CV's scale of the trend test: the long-run std widened for its own estimation
    from n_eff predictions (sqrt(1 + 1/n_eff)), floored at `innovation_floor` x the card's
    one-step RMSE (engineering units)."""
    innovation_mean_se: dict[str, float] = field(default_factory=dict)
    """Standard error of each CV's commissioning mean, in units of its scale."""

    def to_dict(self) -> dict[str, object]:
        from dataclasses import asdict

        return asdict(self)


@dataclass
class Commissioning:
    """Collects the first stretch of a version's live predictions and turns it into a
    `Reference` (the APC practice: a model's normal is what it did when commissioned)."""

    config: DriftConfig = field(default_factory=DriftConfig)
    one: list[float] = field(default_factory=list)
    multi: list[float] = field(default_factory=list)
    signed: dict[str, list[float]] = field(default_factory=dict)

    def add(self, errors: Sequence[float], innovation: Mapping[str, float]) -> None:
        if errors:
            self.one.append(min(errors[0], self.config.cap * self.config.max_reference))
            multi = sum(errors) / len(errors)
            self.multi.append(min(multi, self.config.cap * self.config.max_reference))
        for cv, e in innovation.items():
            self.signed.setdefault(cv, []).append(e)

    @property
    def count(self) -> int:
        return len(self.one)

    def precise(self, card_rmse: Mapping[str, float], interval_s: float) -> bool:
        """Whether the means are known well enough: the trend test's threshold, allowing for
        their estimation error, is at most `max_delay_factor` x the threshold for exact means."""
        cfg = self.config
        ses = list(self.reference(card_rmse).innovation_mean_se.values())
        level = cfg.max_delay_factor * _exact_threshold(cfg, interval_s, len(ses))
        return false_alarm(cfg, level, cfg.bias_window_s / interval_s, ses) <= cfg.bias_false_alarm

    def reference(self, card_rmse: Mapping[str, float] | None = None) -> Reference:
        """The reference levels. Each CV's trend-test scale is its long-run innovation std,
        widened by sqrt(1 + 1/n_eff) for having been estimated from n_eff = n (1 - rho) /
        (1 + rho) effective predictions, and floored at `innovation_floor` x `card_rmse` (the
        CV's one-step held-out RMSE): a 15-minute commissioning of a quiet closed loop sees a
        fraction of the operating region, and a bias the twin's own held-out error allows is
        not a drift."""
        cfg = self.config
        m1 = _mean(self.one) or 1.0
        mm = _mean(self.multi) or 1.0
        mean, std, lag, scale, se = {}, {}, {}, {}, {}
        for cv, xs in self.signed.items():
            if len(xs) < 3:
                continue
            mu = sum(xs) / len(xs)
            var = sum((x - mu) ** 2 for x in xs) / (len(xs) - 1)
            rho = _lag1(xs, mu)
            long_run = max(math.sqrt(var * (1 + rho) / (1 - rho)), 1e-12)
            n_eff = max(len(xs) * (1 - rho) / (1 + rho), 1.0)
            floor = cfg.innovation_floor * float((card_rmse or {}).get(cv, 0.0))
            mean[cv], lag[cv], std[cv] = mu, rho, long_run
            scale[cv] = max(long_run * math.sqrt(1 + 1 / n_eff), floor)
            se[cv] = long_run / math.sqrt(n_eff) / scale[cv]
        return Reference(
            one_step=min(max(m1, 1.0), cfg.max_reference),
            multi_step=min(max(mm, 1.0), cfg.max_reference),
            measured_one_step=m1,
            measured_multi_step=mm,
            within_card_bound=max(m1, mm) <= cfg.max_reference,
            innovation_mean=mean,
            innovation_std=std,
            innovation_lag1=lag,
            predictions=self.count,
            innovation_scale=scale,
            innovation_mean_se=se,
        )


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _lag1(xs: Sequence[float], mu: float) -> float:
    den = sum((x - mu) ** 2 for x in xs)
    if den <= 0:
        return 0.0
    num = sum((a - mu) * (b - mu) for a, b in zip(xs, xs[1:], strict=False))
    return min(max(num / den, 0.0), 0.9)


@dataclass
class DriftState:
    """The prediction-error test of one model version: one CUSUM on one-step errors and one on
    the mean over the multi-step horizon (each divided by its reference level), plus the OOD
    score's recent history."""

    config: DriftConfig = field(default_factory=DriftConfig)
    reference_one: float = 1.0
    """Healthy one-step level (1: the model card's; commissioning sets it in the runtime)."""
    reference_multi: float = 1.0
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
        one_x = min(errors[0] / self.reference_one, cfg.cap)
        multi_x = min(multi / self.reference_multi, cfg.cap)
        self.one_step = max(0.0, self.one_step + one_x - 1.0 - cfg.slack)
        self.multi_step = max(0.0, self.multi_step + multi_x - 1.0 - cfg.slack)
        self.recent_one = [*self.recent_one, errors[0]][-20:]
        self.recent_multi = [*self.recent_multi, multi][-20:]
        self.n += 1
        if self.fired or max(self.one_step, self.multi_step) < cfg.threshold:
            return False
        self.fired = True
        return True

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
class BiasState:
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
    up: dict[str, float] = field(default_factory=dict)
    down: dict[str, float] = field(default_factory=dict)
    total: dict[str, float] = field(default_factory=dict)
    n: int = 0
    fired: bool = False
    recent: dict[str, list[float]] = field(default_factory=dict)

    false_alarm: float = 0.0
    """The false-alarm probability over `bias_window_s` that the threshold gives."""

    def __post_init__(self) -> None:
        cfg = self.config
        ses = [self.mean_se.get(cv, 0.0) for cv in self.std]
        # A commissioning that ended at its longest with imprecise means: the detection delay
        # is bounded (max_delay_factor) and the false-alarm probability that gives is recorded.
        cap = cfg.max_delay_factor * _exact_threshold(cfg, self.interval_s, len(ses))
        self.threshold = min(bias_threshold(cfg, self.interval_s, ses), cap)
        self.false_alarm = false_alarm(
            cfg, self.threshold, cfg.bias_window_s / self.interval_s, ses
        )

    def update(self, innovation: Mapping[str, float]) -> bool:
        """Add one matured prediction's signed one-step errors; True when it fires now."""
        cfg = self.config
        seen = False
        for cv, e in innovation.items():
            if cv not in self.std or not math.isfinite(e):
                continue
            seen = True
            z = (e - self.mean[cv]) / self.std[cv]
            z = min(max(z, -cfg.bias_cap), cfg.bias_cap)
            self.up[cv] = max(0.0, self.up.get(cv, 0.0) + z - cfg.bias_slack)
            self.down[cv] = max(0.0, self.down.get(cv, 0.0) - z - cfg.bias_slack)
            self.total[cv] = self.total.get(cv, 0.0) + (e - self.mean[cv])
            self.recent[cv] = [*self.recent.get(cv, []), z][-20:]
        if not seen:
            return False
        self.n += 1
        if self.fired or self.level < self.threshold:
            return False
        self.fired = True
        return True

    @property
    def level(self) -> float:
        return max([*self.up.values(), *self.down.values(), 0.0])

    def worst(self) -> str | None:
        """The CV whose CUSUM stands highest."""
        both = {cv: max(self.up.get(cv, 0.0), self.down.get(cv, 0.0)) for cv in self.std}
        return max(both, key=lambda cv: both[cv]) if both else None

    def evidence(self) -> dict[str, object]:
        return {
            "test": "two-sided cusum on standardised one-step innovations",
            "slack": self.config.bias_slack,
            "threshold": self.threshold,
            "false_alarm": self.false_alarm,
            "false_alarm_window_s": self.config.bias_window_s,
            "cusum_up": dict(self.up),
            "cusum_down": dict(self.down),
            "worst_cv": self.worst(),
            "innovation_sum_since_commissioning": dict(self.total),
            "recent_mean_z": {cv: _mean(zs) for cv, zs in self.recent.items()},
            "predictions_scored": self.n,
        }
