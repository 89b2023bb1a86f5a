"""Step-test campaigns: design an MV excitation and, on a simulator, run it into the historian.

Two kinds of design live here. An identification campaign (`design_campaign`) excites every MV
for hours, for a first twin. A staircase (`design_moves`) steps one MV up, back, down and back
around its live value: what an engineer asks for from the control room, and what the runtime
asks for itself (`reidentification_design`) when a retrained twin's window barely moved an MV.

The design uses twin.excitation: per MV a binary signal (PRBS or generalised binary noise)
swinging inside its operating band, rate-limited by max_move, with levels held about one
dominant time constant so each shows the plant's response. The default duration gives every
MV enough levels for identification. On a live plant the runtime runs a campaign only after an
engineer approves it; here a simulator runs it directly, and the data is annotated as a
"campaign" in the historian so training and investigators can find it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from twin.errors import BadInput
from twin.excitation import ExcitationConfig, Kind, design, hold_intervals, mv_bands
from twin.paths import Home
from twin.spec import PlantSpec

log = logging.getLogger(__name__)

SIGNALS: dict[str, Kind] = {"prbs": "prbs", "gbn": "gbn"}
"""The excitation kinds a step test may use, by the name given to --kind."""


@dataclass(frozen=True)
class SteptestConfig:
    """One step-test campaign."""

    kind: str = "gbn"
    """Signal: "prbs" (maximum-length binary) or "gbn" (generalised binary noise)."""
    hours: float | None = None
    """Duration; default: `levels` holds per MV, at least one hour."""
    levels: int = 60
    """Levels (holds) per MV when the duration is not given."""
    amplitude: float = 1.0
    """Fraction of the operating half-band the signal swings."""
    time_constant_s: float | None = None
    """Dominant time constant; default the simulator's, else three control intervals."""
    seed: int = 0
    """Seeds the signal (and the simulator's noise when run)."""

    def __post_init__(self) -> None:
        if self.kind not in SIGNALS:
            raise BadInput(f"--kind {self.kind!r} must be prbs or gbn")
        if self.hours is not None and not (math.isfinite(self.hours) and self.hours > 0):
            raise BadInput(f"--hours {self.hours} must be a positive number")
        if self.levels < 4:
            raise BadInput(f"levels {self.levels} must be at least 4")


@dataclass
class Campaign:
    """A designed campaign: the MV schedule on the control-interval grid and its rationale."""

    plant: str
    kind: str
    mv_names: list[str]
    schedule: np.ndarray
    """(n_intervals, n_mv) absolute MV values, one row per control interval."""
    interval_s: float
    hold_intervals: int
    time_constant_s: float
    bands: np.ndarray
    """(n_mv, 2) the band each MV moves in."""

    @property
    def duration_s(self) -> float:
        return len(self.schedule) * self.interval_s

    def summary(self) -> dict:
        moves = np.abs(np.diff(self.schedule, axis=0)) > 1e-12
        return {
            "plant": self.plant,
            "kind": self.kind,
            "duration_h": round(self.duration_s / 3600, 3),
            "intervals": int(len(self.schedule)),
            "hold_s": self.hold_intervals * self.interval_s,
            "time_constant_s": self.time_constant_s,
            "mvs": {
                n: {
                    "band": self.bands[i].tolist(),
                    "min": float(self.schedule[:, i].min()),
                    "max": float(self.schedule[:, i].max()),
                    "moves": int(moves[:, i].sum()),
                    "largest_move": float(np.abs(np.diff(self.schedule[:, i])).max(initial=0.0)),
                }
                for i, n in enumerate(self.mv_names)
            },
        }


def _time_constant(spec: PlantSpec, given: float | None) -> float:
    if given is not None:
        return given
    try:
        from plants import has_simulator, load_plant_model

        if has_simulator(spec):
            return float(load_plant_model(spec).time_constant_s)
    except Exception as exc:  # a broken simulator must not stop a design for a live plant
        log.info("no time constant from the simulator of %s: %s", spec.name, exc)
    return 3 * spec.plant.control_interval_s


def design_campaign(
    spec: PlantSpec, config: SteptestConfig | None = None, start: np.ndarray | None = None
) -> Campaign:
    """The campaign for a plant: an excitation per MV inside its band and max_move."""
    config = config or SteptestConfig()
    if not spec.mvs:
        raise BadInput(f"plant {spec.name!r} has no MV to excite")
    tau = _time_constant(spec, config.time_constant_s)
    exc = ExcitationConfig(amplitude=config.amplitude, time_constant_s=tau)
    hold = hold_intervals(spec, exc)
    interval = spec.plant.control_interval_s
    if config.hours is not None:
        n = max(1, round(config.hours * 3600 / interval))
    else:
        n = max(round(3600 / interval), config.levels * hold)
    schedule = design(
        spec,
        n,
        SIGNALS[config.kind],
        np.random.default_rng([config.seed, 7]),
        start=start,
        config=exc,
    )
    return Campaign(
        spec.name,
        config.kind,
        [t.name for t in spec.mvs],
        schedule,
        interval,
        hold,
        tau,
        mv_bands(spec),
    )


def run_on_simulator(
    home: Home,
    spec: PlantSpec,
    campaign: Campaign,
    seed: int = 0,
    start: datetime | None = None,
    progress: bool = True,
) -> tuple[datetime, datetime]:
    """Run the campaign on the plant's simulator into the historian; annotate it as a campaign."""
    from plants import has_simulator
    from plants.base import Simulation
    from twin.historian import Historian

    if not has_simulator(spec):
        raise BadInput(
            f"plant {spec.name!r} has no simulator; a live plant runs a campaign through the "
            "runtime after an engineer approves it"
        )
    with Historian(home.historian_dir(spec.name)) as hist:
        if start is None:
            span = hist.time_range()
            after = span[1] + timedelta(seconds=spec.plant.sample_period_s) if span else None
            start = after or datetime.now(UTC) - timedelta(seconds=campaign.duration_s)
        sim = Simulation(spec, seed=seed, start=start)
        spi = spec.plant.samples_per_interval
        tags = spec.tag_names
        rows, times = [], []
        values = sim.measure()
        bar = tqdm(
            total=len(campaign.schedule),
            unit="interval",
            disable=not progress,
            desc=f"steptest {spec.name}",
        )
        for row in campaign.schedule:
            values.update(sim.set_mvs(dict(zip(campaign.mv_names, row.tolist(), strict=True))))
            for _ in range(spi):
                rows.append([values[n] for n in tags])
                times.append(sim.time)
                values = sim.step()
            bar.update(1)
        bar.close()
        frame = pd.DataFrame(rows, columns=tags, index=pd.DatetimeIndex(times, name="timestamp"))
        for tag in spec.tags:  # what ingest would do: out-of-range readings are not good data
            lo, hi = tag.limits
            frame.loc[(frame[tag.name] < lo) | (frame[tag.name] > hi), tag.name] = np.nan
        hist.append_wide(frame)
        hist.flush()
        end = times[-1] + timedelta(seconds=spec.plant.sample_period_s)
        hist.annotate(
            times[0],
            end,
            "campaign",
            f"twin steptest --kind {campaign.kind}",
            {"seed": seed, "simulated": True, **campaign.summary()},
        )
    return times[0], end


# ---- staircases: small step tests around the live value -------------------------------------


@dataclass(frozen=True)
class StepDesign:
    """A symmetric step test on one MV: up, back, down, back around a centre value."""

    mv: str
    """The MV to step."""
    centre: float
    """Value the steps are taken around (the live value, usually)."""
    amplitude: float
    """Size of each step; at most the MV's max_move."""
    hold_intervals: int = 6
    """Control intervals each level is held (long enough for the CVs to respond)."""
    repeats: int = 1
    """How many times the up-back-down-back cycle is run."""


def max_amplitude(spec: PlantSpec, mv: str) -> float:
    """The largest step the design allows on an MV: its max_move."""
    max_move = spec.tag(mv).max_move
    if max_move is None:  # the spec requires max_move of every MV, so this is not one
        raise BadInput(f"step test: {mv!r} is not an MV of {spec.name!r}")
    return max_move


def design_moves(
    spec: PlantSpec, d: StepDesign, operating: Mapping[str, tuple[float, float]] | None = None
) -> dict:
    """The campaign design dict twin.api.request_steptest takes."""
    if d.mv not in [t.name for t in spec.mvs]:
        raise BadInput(f"step test: {d.mv!r} is not an MV of {spec.name!r}")
    t = spec.tag(d.mv)
    if not 0 < d.amplitude <= (t.max_move or 0):
        raise BadInput(
            f"step test: amplitude {d.amplitude:g} must lie in (0, max_move {t.max_move:g}]"
        )
    if d.hold_intervals < 1 or d.repeats < 1:
        raise BadInput("step test: hold_intervals and repeats must be at least 1")
    lo, hi = (operating or {}).get(d.mv, t.operating_limits)
    if not lo <= d.centre - d.amplitude or not d.centre + d.amplitude <= hi:
        raise BadInput(
            f"step test: {d.centre:g} +/- {d.amplitude:g} leaves the operator limits "
            f"[{lo:g}, {hi:g}] of {d.mv}"
        )
    step_s = spec.plant.control_interval_s * d.hold_intervals
    levels = [d.centre + d.amplitude, d.centre, d.centre - d.amplitude, d.centre] * d.repeats
    moves = [{"at_s": step_s * i, "values": {d.mv: round(v, 6)}} for i, v in enumerate(levels)]
    return {
        "moves": moves,
        "mv": d.mv,
        "amplitude": d.amplitude,
        "hold_intervals": d.hold_intervals,
    }


REIDENTIFY_FRACTION = 0.2
"""Step size of a re-identification test, as a fraction of the MV's operating half-band (and
never more than its max_move): small enough to run under control, large enough to be seen."""


def reidentification_design(
    spec: PlantSpec,
    mvs: Sequence[str],
    centre: Mapping[str, float],
    operating: Mapping[str, tuple[float, float]] | None = None,
    repeats: int = 3,
) -> dict | None:
    """A small staircase on each MV in `mvs`, one MV after the other, around its live value.

    What the runtime requests when a twin was retrained on a window in which those MVs barely
    moved (closed-loop data). Each step is REIDENTIFY_FRACTION of the operating half-band,
    capped by max_move and by the room left to the limits; each level is held one dominant time
    constant; three cycles give the retrain's excitation check its ten moves. None when no MV
    has room to step (the reasons are logged).
    """
    tau = _time_constant(spec, None)
    hold = hold_intervals(spec, ExcitationConfig(time_constant_s=tau))
    moves: list[dict] = []
    stepped: dict[str, float] = {}
    at = 0.0
    for name in mvs:
        t = spec.tag(name)
        lo, hi = (operating or {}).get(name, t.operating_limits)
        c = centre.get(name)
        if c is None or not math.isfinite(c) or not lo <= c <= hi:
            log.info("re-identification: no step on %s (live value %s outside its limits)", name, c)
            continue
        amp = min(REIDENTIFY_FRACTION * (hi - lo) / 2.0, max_amplitude(spec, name), c - lo, hi - c)
        if amp <= 1e-9 * max(1.0, abs(hi - lo)):
            log.info("re-identification: no room to step %s at %g in [%g, %g]", name, c, lo, hi)
            continue
        one = design_moves(spec, StepDesign(name, c, amp, hold, repeats), operating)
        moves += [{"at_s": at + m["at_s"], "values": m["values"]} for m in one["moves"]]
        at += len(one["moves"]) * hold * spec.plant.control_interval_s
        stepped[name] = amp
    if not moves:
        return None
    # The last level's response must be in the campaign too: a closing write of the live values
    # ends it one hold after the last step (the runtime retrains once the campaign is done).
    moves.append({"at_s": at, "values": {n: round(float(centre[n]), 6) for n in stepped}})
    return {
        "moves": moves,
        "mvs": stepped,
        "hold_intervals": hold,
        "duration_s": at,
        "purpose": "re-identification",
    }
