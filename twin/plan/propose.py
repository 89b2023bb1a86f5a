"""The latest historian data -> a window -> the planner -> a Proposal (or the reason for none)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

import numpy as np

from twin.paths import Home
from twin.plan.controller import PlanningController
from twin.plan.gating import gate
from twin.plan.proposal import NoProposal, Proposal
from twin.plan.settings import PlannerConfig
from twin.sample import utcnow
from twin.spec import PlantSpec

log = logging.getLogger(__name__)

Range = tuple[float, float]


def latest_window(
    home: Home, spec: PlantSpec, tags: list[str], samples: int
) -> tuple[np.ndarray, datetime] | None:
    """The newest `samples` rows on the sample grid (samples, len(tags)), NaN where missing,
    and the newest sample's timestamp; None when the historian holds nothing."""
    from twin.historian import Historian
    from twin.window import lookback, window_rows

    with Historian(home.historian_dir(spec.name)) as hist:
        span = hist.time_range()
        if span is None:
            return None
        period = timedelta(seconds=spec.plant.sample_period_s)
        end = span[1]
        frame = hist.read(end - lookback(spec, samples), end + period, tags=spec.tag_names)
    if frame.empty:
        return None
    return window_rows(frame, spec, tags, samples, end), end


def twin_controller(
    home: Home, spec: PlantSpec, version: str | None = None, config: PlannerConfig | None = None
) -> PlanningController:
    """The planner on a twin version (default: the active one) with the disturbance observer's
    gains saved with it (the planner's defaults for a version saved before them)."""
    from twin import registry

    model, gains = registry.load_for_planning(home, spec, version)
    return PlanningController(model, spec, config, observer_gains=gains)


def propose(
    home: Home,
    spec: PlantSpec,
    *,
    now: datetime | None = None,
    config: PlannerConfig | None = None,
    operating: Mapping[str, Range] | None = None,
    controller: PlanningController | None = None,
) -> Proposal | NoProposal:
    """One proposal from the plant's active twin and its newest data.

    Pass the same `controller` on every call in a running service so that warm starts and the
    disturbance estimate carry over; without one, each call starts afresh.
    """
    from twin import registry

    now = now or utcnow()
    if controller is None:
        if registry.active_version(home, spec) is None:
            return gate(
                spec.name,
                model_version=None,
                data_ts=None,
                now=now,
                max_staleness_s=spec.safety.max_staleness_s,
            )  # type: ignore[return-value]
        controller = twin_controller(home, spec, config=config)
    found = latest_window(home, spec, controller.tag_names, int(controller.model.window))
    if found is None:
        return NoProposal(spec.name, "no_data", f"no data for plant {spec.name!r} in the historian")
    window, data_ts = found
    return controller.decide(window, data_ts, now, operating=operating)
