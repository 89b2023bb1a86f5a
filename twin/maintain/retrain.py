"""Retraining on live history: a new twin version from what the runtime ingested.

`twin retrain PLANT --since T` reads the plant's historian from T (plant time; or a duration
back from its newest sample) to its end: the data `twin serve` recorded, including the
stretch the drift test flagged and the moves the twin itself made (closed-loop data). It
trains with `twin train`'s configs (twin.train_presets) through twin.train.train_plant, so the
new version is registered beside the active one, awaiting shadow evaluation and gated
promotion; it never becomes active here (unless it is the plant's first version). The audit log
records the window, how much excitation it had, and the drift event it answers; a window with
too little MV movement for identification gets a step-test recommendation with it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from twin.data import DataConfig
from twin.errors import BadInput
from twin.paths import Home
from twin.spec import PlantSpec
from twin.train_presets import Configs

if TYPE_CHECKING:
    from twin.state import Store

log = logging.getLogger(__name__)

MIN_MOVES = 10
"""Fewest MV moves in the window below which its excitation is called poor."""
MIN_SPREAD = 0.05
"""Smallest MV std, as a fraction of the operating half-band, that is not poor excitation."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def retrain_command(plant: str, since: datetime) -> str:
    """The command a "retrain recommended" event points to."""
    return f"twin retrain {plant} --since {since.astimezone(UTC).isoformat()}"


def parse_since(text: str, newest: datetime) -> datetime:
    """`--since`: an ISO 8601 plant time (UTC if no zone) or a duration back from the newest
    sample (`90m`, `6h`, `2d`), so that an accelerated simulator's history is read on its clock."""
    m = _DURATION.match(text)
    if m:
        return newest - timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(
            f"--since {text!r}: expected an ISO 8601 time (2026-01-01T06:00:00+00:00) or a "
            "duration back from the newest sample (90m, 6h, 2d)"
        ) from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def shortest_window(spec: PlantSpec, data_cfg: DataConfig) -> timedelta:
    """The shortest history training accepts with these configs (its validation block must hold
    a window plus the horizon), with 10 % to spare for gaps: a retraining window asked for
    (a drift event's onset) is widened back to it."""
    intervals = (data_cfg.window_intervals + data_cfg.horizon) / data_cfg.val_fraction
    return timedelta(seconds=1.1 * intervals * spec.plant.control_interval_s)


@dataclass(frozen=True)
class Excitation:
    """How much the MVs moved in a training window (closed-loop data identifies worse)."""

    moves: dict[str, int]
    """Changes of each MV's value between consecutive samples."""
    spread: dict[str, float]
    """Each MV's std as a fraction of its operating half-band."""
    poor: list[str]
    """MVs with fewer than MIN_MOVES moves or a spread under MIN_SPREAD."""


def excitation(frame: pd.DataFrame, spec: PlantSpec) -> Excitation:
    moves, spread, poor = {}, {}, []
    for t in spec.mvs:
        col = frame[t.name].dropna().to_numpy(dtype=float) if t.name in frame else np.array([])
        lo, hi = t.operating or t.limits
        half = max((float(hi) - float(lo)) / 2.0, 1e-12)
        moves[t.name] = int(np.sum(np.abs(np.diff(col)) > 1e-9 * half)) if len(col) > 1 else 0
        spread[t.name] = float(np.std(col) / half) if len(col) else 0.0
        if moves[t.name] < MIN_MOVES or spread[t.name] < MIN_SPREAD:
            poor.append(t.name)
    return Excitation(moves, spread, poor)


@dataclass(frozen=True)
class Retrained:
    """What a retraining produced, as the audit log records it."""

    plant: str
    version: str
    active_version: str | None
    asked_start: datetime
    """The start asked for; the window starts earlier when that left too little data."""
    start: datetime
    end: datetime
    samples: int
    excitation: Excitation
    trigger: dict[str, Any] | None
    """The latest "retrain_recommended" event of the plant (seq, model version, when)."""
    step_test: str | None
    """What to do when the window's excitation was poor: run the step test below, retrain."""
    step_test_design: dict[str, Any] | None = None
    """A small staircase on the poorly excited MVs around their last values, inside the
    operator limits (twin.steptest.reidentification_design); `twin serve --retrain-on-drift`
    requests it for an engineer's approval."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for k in ("asked_start", "start", "end"):
            out[k] = getattr(self, k).isoformat()
        return out


def retrain(
    home: Home,
    spec: PlantSpec,
    since: str | datetime,
    configs: Configs,
    *,
    until: datetime | None = None,
    actor: str = "twin-retrain",
) -> Retrained:
    """Train a new version on the historian's live window [since, until]; audited."""
    from twin import audit, registry
    from twin.data import load_frame
    from twin.historian import Historian
    from twin.state import Store
    from twin.train import train_plant

    with Historian(home.historian_dir(spec.name)) as h:
        span = h.time_range()
    if span is None:
        raise BadInput(
            f"plant {spec.name!r}: no live history in {home.historian_dir(spec.name)} to retrain"
            " on (run `twin serve` first)"
        )
    asked_start = parse_since(since, span[1]) if isinstance(since, str) else since
    model_cfg, data_cfg, cfg = configs
    end = min(until or span[1], span[1])
    start = max(span[0], min(asked_start, end - shortest_window(spec, data_cfg)))
    frame = load_frame(home, spec, start, until)
    if frame.empty:
        raise BadInput(
            f"plant {spec.name!r}: the historian holds nothing from {start.isoformat()} "
            f"(its history spans {span[0].isoformat()} .. {span[1].isoformat()})"
        )
    exc = excitation(frame, spec)
    active = registry.active_version(home, spec)
    version = train_plant(home, spec, model_cfg, data_cfg, cfg, frame=frame)
    with Store.open(home) as store:
        step_test, design = _step_test(store, spec, frame, exc)
        asked = audit.entries(store, plant=spec.name, kind="retrain_recommended", limit=1)
        trigger = None
        if asked:
            e = asked[-1]
            trigger = {"seq": e.get("seq"), "at": str(e.get("at")), "subject": e.get("subject")}
        result = Retrained(
            plant=spec.name,
            version=version,
            active_version=active,
            asked_start=asked_start,
            start=frame.index.min().to_pydatetime(),
            end=frame.index.max().to_pydatetime(),
            samples=len(frame),
            excitation=exc,
            trigger=trigger,
            step_test=step_test,
            step_test_design=design,
        )
        store.log_event(
            user=actor,
            kind="model_retrain",
            plant=spec.name,
            subject=f"model:{version}",
            what=result.to_dict(),
            why=(
                f"trained on live history {result.start:%Y-%m-%d %H:%M} .. {result.end:%H:%M}"
                f" ({result.samples} samples); awaiting shadow evaluation and gated promotion"
                f" (active: {active})"
            ),
        )
    log.info("retrained %s: %s", spec.name, version)
    return result


def _step_test(
    store: Store, spec: PlantSpec, frame: pd.DataFrame, exc: Excitation
) -> tuple[str | None, dict[str, Any] | None]:
    """The advice and the staircase design for the MVs the window barely moved (none when it
    moved them all), around each MV's last value in the window, inside the operator limits."""
    from twin.api import operator_limits
    from twin.steptest import reidentification_design

    if not exc.poor:
        return None, None
    centre = {}
    for name in exc.poor:
        col = frame[name].dropna() if name in frame else pd.Series(dtype=float)
        if len(col):
            centre[name] = float(col.iloc[-1])
    design = reidentification_design(spec, exc.poor, centre, operator_limits(store, spec))
    if design is None:
        return (
            f"the window moved {exc.poor} too little to identify them well, and none has room "
            "for a step inside its operator limits: widen them or excite the MVs by hand",
            None,
        )
    steps = ", ".join(f"{n} +/-{a:g}" for n, a in design["mvs"].items())
    return (
        f"the window moved {exc.poor} too little to identify them well: run a small step test "
        f"({steps}, {design['duration_s'] / 60:.0f} min) and retrain over it",
        design,
    )
