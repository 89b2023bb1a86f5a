"""The "hold" baseline: never move any MV."""

from __future__ import annotations

from collections.abc import Mapping


class HoldController:
    """Keeps every MV where it is; the cost any controller must beat."""

    name = "hold"

    def decide(self, u_now: Mapping[str, float]) -> dict[str, float]:
        return dict(u_now)
