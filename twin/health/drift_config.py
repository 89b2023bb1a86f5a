"""The drift tests' settings (`DriftConfig`) and the environment variables that change them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


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
    mv_commission_s: float = 900.0
    """MV-level test (twin.health.mv_level): plant seconds after the settling over which each
    MV's level and spread are taken (the loop right after deployment)."""
    mv_slack: float = 0.5
    """MV-level CUSUM: allowance, in spreads (a deviation under half a spread accrues nothing).
    At 1.0 the live four_tank run (seed 0, linear-MPC fallback) fired 5 minutes after its cost
    doubled; at 0.5 the PI-controlled quiet runs' CUSUMs peak at 0.4-0.7 (four_tank) and 5.3-7.2
    (cstr) against thresholds 60 and 20 (benchmarks/maintenance.py --pi-mv-level)."""
    mv_cap: float = 4.0
    """Largest standardised MV deviation one interval adds (one excursion cannot fire it)."""
    mv_floor: float = 0.02
    """Floor of an MV's spread, as a fraction of its operating span (a quiet loop's MVs barely
    move; a shift of a few hundredths of the span is not a drift)."""
    mv_persist_s: float = 600.0
    """Plant seconds a deviation of mv_slack + 1 spreads must stand to fire the MV-level test
    (its threshold is this over the control interval)."""

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
        if (
            self.mv_commission_s <= 0
            or self.mv_slack < 0
            or self.mv_cap <= self.mv_slack
            or self.mv_floor < 0
            or self.mv_persist_s <= 0
        ):
            raise ValueError(
                f"drift settings mv_commission_s={self.mv_commission_s}, mv_slack="
                f"{self.mv_slack}, mv_cap={self.mv_cap}, mv_floor={self.mv_floor}, "
                f"mv_persist_s={self.mv_persist_s}: need mv_commission_s > 0, mv_slack >= 0,"
                " mv_cap > mv_slack, mv_floor >= 0 and mv_persist_s > 0"
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
    "TWIN_DRIFT_MV_COMMISSION_S": "mv_commission_s",
    "TWIN_DRIFT_MV_PERSIST_S": "mv_persist_s",
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
