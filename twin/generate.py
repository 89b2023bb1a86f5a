"""Offline data generation: run a plant's simulator faster than real time under MV excitation.

This is how a twin gets training data before any connector exists. The simulator is driven
on the spec's sample clock; the MVs follow an excitation schedule (one row per control
interval, inside the MV band and `max_move`), the disturbances follow the chosen scenario,
and every tag's noisy measurement is recorded as a long frame (ts, tag, value, quality).
A measurement outside the tag's engineering limits is kept but flagged OUT_OF_RANGE, as
ingest would flag it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from tqdm import tqdm

from plants.base import Simulation
from twin.errors import BadInput
from twin.excitation import KINDS, Band, ExcitationConfig, Kind, design
from twin.paths import Home
from twin.sample import Quality
from twin.spec import PlantSpec

log = logging.getLogger(__name__)

CHUNK_SAMPLES = 3600
"""Samples per chunk handed to the historian: bounds memory on long runs."""


@dataclass(frozen=True)
class GenerateConfig:
    """One offline generation run."""

    hours: float
    """Simulated duration, hours."""
    excitation: Kind = "prbs"
    """MV signal: prbs, gbn, steps, or none (hold the nominal MVs)."""
    scenario: str | None = None
    """Disturbance scenario of the plant's simulator, by name; None: nominal disturbances."""
    seed: int = 0
    """Seeds the measurement noise and the excitation: same seed, same data."""
    start: datetime | None = None
    """Timestamp of the first sample (UTC); default: so that the run ends now."""
    band: Band = "operating"
    """Excite within the MVs' operating limits, or reach out to the engineering limits."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.hours) and self.hours > 0):
            raise BadInput(f"--hours {self.hours} must be a positive number")
        if self.excitation not in KINDS:
            raise BadInput(f"--excitation {self.excitation!r} must be one of {', '.join(KINDS)}")
        if self.band not in ("operating", "engineering"):
            raise BadInput(f"--band {self.band!r} must be 'operating' or 'engineering'")
        if self.start is not None and self.start.tzinfo is None:
            raise BadInput(f"--start {self.start.isoformat()} needs a timezone (e.g. ...Z)")


def _start_of(spec: PlantSpec, config: GenerateConfig) -> datetime:
    if config.start is not None:
        return config.start.astimezone(UTC)
    # End at the current time, on a control-interval boundary, so the data looks live.
    interval = spec.plant.control_interval_s
    now = datetime.now(UTC).timestamp()
    end = math.floor(now / interval) * interval
    return datetime.fromtimestamp(end - config.hours * 3600.0, UTC)


def iter_frames(spec: PlantSpec, config: GenerateConfig) -> Iterator[pd.DataFrame]:
    """Long frames (ts, tag, value, quality) of consecutive chunks of the run."""
    sim = Simulation(
        spec, seed=config.seed, scenario=config.scenario, start=_start_of(spec, config)
    )
    dt = spec.plant.sample_period_s
    per_interval = spec.plant.samples_per_interval
    n_samples = max(1, round(config.hours * 3600.0 / dt))
    n_intervals = math.ceil(n_samples / per_interval)
    mv_names = [t.name for t in spec.mvs]
    excitation = ExcitationConfig(band=config.band, time_constant_s=sim.model.time_constant_s)
    schedule = design(
        spec,
        n_intervals,
        config.excitation,
        np.random.default_rng([config.seed, 1]),
        start=sim.u.copy(),
        config=excitation,
    )
    tags = spec.tag_names
    limits = np.array([spec.tag(n).limits for n in tags])
    bar = tqdm(
        total=n_samples, unit="sample", disable=not config.progress, desc=f"generate {spec.name}"
    )
    values = sim.measure()
    k = 0
    try:
        while k < n_samples:
            size = min(CHUNK_SAMPLES, n_samples - k)
            block = np.empty((size, len(tags)))
            offsets = np.empty(size)
            for i in range(size):
                if k % per_interval == 0 and mv_names and config.excitation != "none":
                    row = schedule[k // per_interval]
                    # An MV reads back what was just written: the write happens at this instant.
                    values.update(sim.set_mvs(dict(zip(mv_names, row.tolist(), strict=True))))
                block[i] = [values[n] for n in tags]
                offsets[i] = sim.elapsed_s
                values = sim.step()
                k += 1
            bar.update(size)
            yield _long_frame(sim.start, offsets, tags, block, limits)
    finally:
        bar.close()


def _long_frame(
    start: datetime, offsets: np.ndarray, tags: list[str], block: np.ndarray, limits: np.ndarray
) -> pd.DataFrame:
    n, m = block.shape
    ts = (pd.Timestamp(start) + pd.to_timedelta(offsets, unit="s")).as_unit("ns")
    out_of_range = (block < limits[:, 0]) | (block > limits[:, 1])
    quality = np.where(out_of_range, int(Quality.OUT_OF_RANGE), int(Quality.GOOD)).astype(np.int8)
    return pd.DataFrame(
        {
            "ts": ts.repeat(m),
            "tag": np.tile(np.array(tags, dtype=object), n),
            "value": block.reshape(-1).astype(np.float64),
            "quality": quality.reshape(-1),
        }
    )


def generate(
    spec: PlantSpec,
    hours: float,
    excitation: Kind = "prbs",
    scenario: str | None = None,
    seed: int = 0,
    start: datetime | None = None,
    progress: bool = True,
    band: Band = "operating",
) -> pd.DataFrame:
    """The whole run as one long frame: ts (datetime64[ns, UTC]), tag, value, quality (int8)."""
    config = GenerateConfig(hours, excitation, scenario, seed, start, band, progress)
    frames = list(iter_frames(spec, config))
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class GenerateResult:
    """What a generation run wrote."""

    values: int
    """Values (tag samples) written."""
    first: datetime
    """Timestamp of the first sample."""
    last: datetime
    """Timestamp of the last sample."""


def run_into(home: Home, spec: PlantSpec, config: GenerateConfig) -> GenerateResult:
    """Generate a run chunk by chunk into the plant's historian, flushed at the end."""
    from twin.historian import Historian

    written = 0
    first: datetime | None = None
    last: datetime | None = None
    with Historian(home.historian_dir(spec.name)) as historian:
        for frame in iter_frames(spec, config):
            historian.append_frame(frame)
            written += len(frame)
            first = first or frame["ts"].iloc[0].to_pydatetime()
            last = frame["ts"].iloc[-1].to_pydatetime()
        historian.flush()
        assert first is not None and last is not None  # at least one sample is always made
        if config.excitation != "none":
            historian.annotate(
                first,
                last + timedelta(seconds=spec.plant.sample_period_s),
                "campaign",
                f"twin generate --excitation {config.excitation}",
                {
                    "seed": config.seed,
                    "scenario": config.scenario,
                    "band": config.band,
                    "simulated": True,
                },
            )
    log.info("generated %d values for %s from %s to %s", written, spec.name, first, last)
    return GenerateResult(written, first, last)


def generate_into(
    home: Home,
    spec: PlantSpec,
    hours: float,
    excitation: Kind = "prbs",
    scenario: str | None = None,
    seed: int = 0,
    start: datetime | None = None,
    progress: bool = True,
    band: Band = "operating",
) -> int:
    """Generate a run into the plant's historian; returns the number of values written."""
    config = GenerateConfig(hours, excitation, scenario, seed, start, band, progress)
    return run_into(home, spec, config).values
