"""What the drift tests share: the count of terms and the fire-once rule (`SequentialTest`),
and the two-sided CUSUM (Page), one per key (a CV, an MV).

On standardised scores z, capped at +-cap so that one outlier cannot fire it alone:

    up_k = max(0, up_{k-1} + z_k - slack),  down_k = max(0, down_{k-1} - z_k - slack)

Its level is the highest of them; each test sets its own decision level against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(kw_only=True)
class SequentialTest:
    """The terms a drift test has scored, and whether it has fired: once per version (the
    alarm stands until a new version serves)."""

    n: int = 0
    fired: bool = False

    def count_term(self, level: float, threshold: float) -> bool:
        """Count one scored term; True the first time `level` reaches `threshold`."""
        self.n += 1
        if self.fired or level < threshold:
            return False
        self.fired = True
        return True


@dataclass
class TwoSidedCusum:
    slack: float
    cap: float
    up: dict[str, float] = field(default_factory=dict)
    down: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, z: float) -> float:
        """One score of `key`; returns it capped."""
        z = min(max(z, -self.cap), self.cap)
        self.up[key] = max(0.0, self.up.get(key, 0.0) + z - self.slack)
        self.down[key] = max(0.0, self.down.get(key, 0.0) - z - self.slack)
        return z

    @property
    def level(self) -> float:
        return max([*self.up.values(), *self.down.values(), 0.0])

    def worst(self) -> str | None:
        """The key whose CUSUM stands highest (None before any score)."""
        both = {k: max(self.up[k], self.down[k]) for k in self.up}
        return max(both, key=both.__getitem__) if both else None

    def evidence(self) -> dict[str, dict[str, float]]:
        return {"cusum_up": dict(self.up), "cusum_down": dict(self.down)}
