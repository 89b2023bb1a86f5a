"""Commissioning: the first stretch of a version's live predictions sets the healthy levels
the drift tests are referenced against (the APC practice: a model's normal is what it did when
commissioned), and goes on until the trend test's means are known precisely enough."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from statistics import fmean

from twin.health.arl import exact_threshold, false_alarm
from twin.health.drift_config import DriftConfig


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
        level = cfg.max_delay_factor * exact_threshold(cfg, interval_s, len(ses))
        return false_alarm(cfg, level, cfg.bias_window_s / interval_s, ses) <= cfg.bias_false_alarm

    def reference(self, card_rmse: Mapping[str, float] | None = None) -> Reference:
        """The reference levels. Each CV's trend-test scale is its long-run innovation std,
        widened by sqrt(1 + 1/n_eff) for having been estimated from n_eff = n (1 - rho) /
        (1 + rho) effective predictions, and floored at `innovation_floor` x `card_rmse` (the
        CV's one-step held-out RMSE): a 15-minute commissioning of a quiet closed loop sees a
        fraction of the operating region, and a bias the twin's own held-out error allows is
        not a drift."""
        cfg = self.config
        m1 = fmean(self.one) if self.one else 1.0
        mm = fmean(self.multi) if self.multi else 1.0
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


def _lag1(xs: Sequence[float], mu: float) -> float:
    den = sum((x - mu) ** 2 for x in xs)
    if den <= 0:
        return 0.0
    num = sum((a - mu) * (b - mu) for a, b in zip(xs, xs[1:], strict=False))
    return min(max(num / den, 0.0), 0.9)
