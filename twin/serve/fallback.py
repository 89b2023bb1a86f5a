"""What acts when the twin abstains (safety rule 8): the spec's `[safety] fallback`.

- `hold`: the MVs stay where they are; nothing is written, and that is recorded.
- `linear_mpc`: the ARX model identified with the active twin (stored in its checkpoint), in
  its offset-free velocity form, behind the same planner, limits and settings; its proposals are
  marked as the fallback's and go through the same approval, guard and audit.
- `operator`: the alarm is the hand-over; no proposal.

Industrial APC keeps a linear controller for exactly this: a learned model that does not
recognise the plant must not leave it to drift toward a limit unattended.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np

from twin.paths import Home
from twin.plan.proposal import NoProposal, Proposal
from twin.spec import PlantSpec

log = logging.getLogger(__name__)

ABSTAINS = frozenset({"ood", "missing_data"})
"""NoProposal codes that mean the twin itself declines to act on the plant as it is."""
FALLBACK_PREFIX = "fallback:"
"""A proposal made by the fallback carries `controller = "fallback:<kind>"` in its payload."""


def is_fallback(payload: Mapping[str, Any]) -> bool:
    return str(payload.get("controller", "")).startswith(FALLBACK_PREFIX)


class Fallback:
    """The spec's fallback for one plant; the linear MPC follows the active twin version."""

    def __init__(self, home: Home, spec: PlantSpec, *, hard_operating: bool = False) -> None:
        self.home, self.spec = home, spec
        self.kind = spec.safety.fallback
        self.hard_operating = hard_operating
        self._version: str | None = None
        self._controller: Any = None

    @property
    def controller(self) -> str:
        return FALLBACK_PREFIX + self.kind

    def refresh(self, version: str | None) -> None:
        """Build the linear MPC from the ARX stored with `version` (when it changed)."""
        if self.kind != "linear_mpc" or version is None or version == self._version:
            return
        from twin import registry
        from twin.baselines.arx_world import linear_mpc
        from twin.plan.settings import PlannerConfig

        arx, _ = registry.load_baselines(registry.load_checkpoint(self.home, self.spec, version))
        config = PlannerConfig(hard_operating=self.hard_operating)
        self._controller = linear_mpc(arx, self.spec, config, version=f"{version}/arx")
        self._version = version
        log.info("fallback linear MPC ready (ARX of twin %s)", version)

    @property
    def window(self) -> int:
        return int(self._controller.model.window) if self._controller is not None else 1

    def propose(
        self,
        window: np.ndarray,
        data_ts: datetime,
        now: datetime,
        operating: Mapping[str, tuple[float, float]],
    ) -> Proposal | NoProposal | None:
        """A proposal from the linear MPC, or None when this fallback makes none."""
        if self._controller is None:
            return None
        return self._controller.decide(window, data_ts, now, operating=dict(operating))
