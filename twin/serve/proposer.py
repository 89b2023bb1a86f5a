"""Who proposes: the active twin and its planner, or any callable of the same shape."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from twin.paths import Home
from twin.plan.proposal import NoProposal, Proposal
from twin.spec import PlantSpec

log = logging.getLogger(__name__)


class Proposer(Protocol):
    """Turns the model's input window into a planner Proposal or NoProposal.

    The runtime uses only this: the default wraps the active twin and its planner; tests and
    benchmarks pass their own."""

    window: int
    """Sample instants the proposer's input window spans."""
    tag_names: list[str]
    """Column order of the window."""
    version: str | None
    """Model version proposing (None: none loaded)."""

    def refresh(self) -> None:
        """Load the active model version if it changed."""

    def reset(self) -> None:
        """Forget warm starts and estimates (the plant restarted)."""

    def ood_ratio(self, window: np.ndarray) -> float | None:
        """The window's out-of-distribution score over the model's threshold (above 1: refuse)."""

    def __call__(
        self,
        window: np.ndarray,
        data_ts: datetime,
        now: datetime,
        operating: Mapping[str, tuple[float, float]],
    ) -> Proposal | NoProposal: ...


class TwinProposer:
    """The active model version and a planning controller; reloads when a version is promoted."""

    def __init__(self, home: Home, spec: PlantSpec, *, hard_operating: bool = False) -> None:
        self.home, self.spec = home, spec
        self.hard_operating = hard_operating
        """Operating limits are hard constraints too (auto mode, safety rule 4)."""
        self.version: str | None = None
        self.window = 1
        self.tag_names: list[str] = spec.tag_names
        self._controller: Any = None

    def refresh(self) -> None:
        from twin import registry  # the model stack (torch) loads only when serving proposals
        from twin.plan.propose import twin_controller
        from twin.plan.settings import PlannerConfig

        active = registry.active_version(self.home, self.spec)
        if active is None or active == self.version:
            if active is None:
                self.version, self._controller = None, None
            return
        config = PlannerConfig(hard_operating=self.hard_operating)
        # With the observer gains saved with the version (twin.registry.observer_gains).
        self._controller = twin_controller(self.home, self.spec, active, config)
        model = self._controller.model
        self.version = active
        self.window = int(model.window)
        self.tag_names = list(model.tag_names)
        log.info(
            "serving with model version %s (observer gains: %s)",
            active,
            self._controller.observer.gains.source,
        )

    @property
    def observer_gains(self) -> Any:
        """The disturbance observer's gains in use (twin.plan.observer.ObserverGains): those
        saved with the active version, or the planner's defaults; None before a version loads."""
        return None if self._controller is None else self._controller.observer.gains

    def reset(self) -> None:
        """Forget the warm start and disturbance estimate (the plant restarted)."""
        if self._controller is not None:
            self._controller.reset()

    def ood_ratio(self, window: np.ndarray) -> float | None:
        """Recomputed at write time (safety rule 2) from the window as the plant is now, by the
        planner's own check (twin.plan.gating.ood_ratio)."""
        if self._controller is None:
            return None
        from twin.plan.gating import ood_ratio

        return ood_ratio(self._controller.model, window)

    def __call__(
        self,
        window: np.ndarray,
        data_ts: datetime,
        now: datetime,
        operating: Mapping[str, tuple[float, float]],
    ) -> Proposal | NoProposal:
        if self._controller is None:
            why = f"no active twin for plant {self.spec.name!r} (train one with `twin train`)"
            return NoProposal(self.spec.name, "no_model", why, data_ts)
        return self._controller.decide(window, data_ts, now, operating=dict(operating))
