"""The MV-level drift test: has the controller had to move its MVs away from where they sat
right after deployment to hold the same targets?

In closed loop a slow plant drift (a worn pump, a fouled jacket) is compensated: the controller
and its offset-free observer keep the CVs on target, so the twin's prediction errors stay small
and the disturbance estimate drifts only as fast as the observer lets it. What cannot be hidden
is the MV: to hold the same targets on a worn plant, the pump voltage has to rise. The test
watches each MV's level against its commissioning stretch (the first `mv_commission_s` of plant
time after `settle_s`), the APC practice of judging a loop against its state at commissioning:

    z_k = clip((u_k - level) / spread, -mv_cap, mv_cap)
    up_k = max(0, up_{k-1} + z_k - mv_slack),  down_k = max(0, down_{k-1} - z_k - mv_slack)

a two-sided CUSUM (Page) per MV, one term per control interval of plant time. `spread` is the
MV's standard deviation over the commissioning stretch, floored at `mv_floor` x its operating
span (a quiet loop barely moves its MVs; a move of a few hundredths of the span is not drift).
The decision level is set in plant time: a deviation of `mv_slack` + 1 spreads (1.5) standing
for `mv_persist_s` (600 s) fires it (threshold = mv_persist_s / control interval), so the test means the
same on a 10 s and a 30 s loop; the cap keeps one excursion (a disturbance rejected, a spike)
from firing it alone.

The test sees every MV the plant got, whoever moved it (the twin, its fallback, an operator's
write). A new setpoint or operator limit moves the MVs as much as a drift does, so the drift
monitor starts the test again on each change of the operator limits and with each version (the
targets come from the spec: they change only with a restart).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from statistics import fmean

from twin.health.cusum import SequentialTest, TwoSidedCusum
from twin.health.drift_config import DriftConfig


@dataclass(frozen=True)
class MVLevelReference:
    """Each MV's level and spread over the commissioning stretch."""

    level: dict[str, float]
    """Mean MV value (engineering units)."""
    std: dict[str, float]
    """Standard deviation over the stretch (engineering units)."""
    spread: dict[str, float]
    """The test's scale: std floored at `mv_floor` x the MV's operating span."""
    intervals: int
    """Control intervals the stretch held."""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class MVLevelCommissioning:
    """Collects each MV's value once per control interval of the commissioning stretch."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, mvs: Mapping[str, float | None]) -> None:
        for mv, v in mvs.items():
            if v is not None and math.isfinite(v):
                self.values.setdefault(mv, []).append(float(v))

    @property
    def count(self) -> int:
        return min((len(v) for v in self.values.values()), default=0)

    def reference(self, spans: Mapping[str, float], config: DriftConfig) -> MVLevelReference:
        """`spans`: each MV's operating span (engineering units), for the spread's floor."""
        level, std, spread = {}, {}, {}
        for mv, xs in self.values.items():
            if len(xs) < 3 or mv not in spans:
                continue
            mu = fmean(xs)
            sd = math.sqrt(sum((x - mu) ** 2 for x in xs) / (len(xs) - 1))
            level[mv], std[mv] = mu, sd
            spread[mv] = max(sd, config.mv_floor * float(spans[mv]), 1e-12)
        return MVLevelReference(level, std, spread, self.count)


@dataclass
class MVLevelState(SequentialTest):
    """The two-sided CUSUM of each MV's standardised deviation from its commissioned level."""

    reference: MVLevelReference
    config: DriftConfig = field(default_factory=DriftConfig)
    interval_s: float = 30.0
    """Plant seconds per term (the control interval): the threshold is set in plant time."""
    recent: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cusum = TwoSidedCusum(self.config.mv_slack, self.config.mv_cap)

    @property
    def threshold(self) -> float:
        """CUSUM level that fires: `mv_slack` + 1 spreads standing for `mv_persist_s`."""
        return self.config.mv_persist_s / self.interval_s

    def update(self, mvs: Mapping[str, float | None]) -> bool:
        """Add one control interval's MV values; True when the test fires now (once)."""
        ref, seen = self.reference, False
        for mv, v in mvs.items():
            if mv not in ref.spread or v is None or not math.isfinite(v):
                continue
            seen = True
            self.cusum.add(mv, (float(v) - ref.level[mv]) / ref.spread[mv])
            self.recent[mv] = [*self.recent.get(mv, []), float(v)][-20:]
        return seen and self.count_term(self.level, self.threshold)

    @property
    def level(self) -> float:
        return self.cusum.level

    def worst(self) -> str | None:
        """The MV whose CUSUM stands highest."""
        return self.cusum.worst()

    def describe(self) -> str:
        """The alarm's reason in words."""
        mv = self.worst()
        if mv is None:
            return "no MV has been scored"
        recent = self.recent.get(mv) or [math.nan]
        return (
            f"holding the targets has moved {mv} from its commissioned level "
            f"{self.reference.level[mv]:.4g} to about {fmean(recent):.4g} (spread "
            f"{self.reference.spread[mv]:.3g}; MV-level CUSUM {self.level:.1f} >= "
            f"{self.threshold:.1f})"
        )

    def evidence(self) -> dict[str, object]:
        """What the "retrain recommended" event records of this test."""
        return {
            "test": "two-sided cusum on each MV's deviation from its commissioned level",
            "slack": self.config.mv_slack,
            "threshold": self.threshold,
            "persist_s": self.config.mv_persist_s,
            **self.cusum.evidence(),
            "worst_mv": self.worst(),
            "recent_level": {mv: fmean(xs) for mv, xs in self.recent.items() if xs},
            "reference": self.reference.to_dict(),
            "intervals_scored": self.n,
        }
