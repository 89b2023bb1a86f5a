"""Synthetic sensor faults on recorded data, to measure the OOD gate's detection.

Each fault starts at a sample (its onset) on one tag and lasts to the end of the segment;
sizes are in units of the tag's training standard deviation (sigma), stated in every report:
stuck (the value frozen at its last good reading, noise and all), drift (a ramp of
DRIFT_SIGMA_PER_INTERVAL sigma per control interval), bias (a step of BIAS_SIGMA sigma).
Faults of the plant itself (a region never excited, an unmeasured disturbance) need the
simulator and are made in benchmarks/predict.py.
"""

from __future__ import annotations

import numpy as np

SENSOR_FAULTS = ("stuck", "drift", "bias")
BIAS_SIGMA = 2.0
DRIFT_SIGMA_PER_INTERVAL = 0.5


def inject(
    segment: np.ndarray, kind: str, tag: int, onset: int, sigma: float, spi: int
) -> np.ndarray:
    """A copy of segment (T, n_tags) with the fault on column `tag` from row `onset` on."""
    out = segment.copy()
    col = out[onset:, tag]
    if kind == "stuck":
        good = segment[:onset, tag][np.isfinite(segment[:onset, tag])]
        col[:] = good[-1] if len(good) else np.nan
    elif kind == "drift":
        col += DRIFT_SIGMA_PER_INTERVAL * sigma * np.arange(1, len(col) + 1) / spi
    elif kind == "bias":
        col += BIAS_SIGMA * sigma
    else:
        raise ValueError(f"unknown sensor fault {kind!r}; known: {SENSOR_FAULTS}")
    out[onset:, tag] = col
    return out


def describe() -> dict:
    """The fault sizes, for reports."""
    return {
        "stuck": "CV frozen at its last reading",
        "drift": f"CV ramp of {DRIFT_SIGMA_PER_INTERVAL} training sigma per control interval",
        "bias": f"CV step of {BIAS_SIGMA} training sigma",
    }


DETECTION_COLUMNS = (
    "synthetic fault",
    "size",
    "detected within 5 intervals",
    "median peak / threshold",
)
"""Headings of detection_rows, for the model card and `twin evaluate`'s table."""


def detection_rows(ood: dict) -> list[tuple[str, str, str, str]]:
    """A report's fault detection (twin.evaluate.ood_quality) as text rows under
    DETECTION_COLUMNS; reports written before detection_margin show '-' in its column."""
    margins = ood.get("detection_margin", {})
    return [
        (
            kind,
            ood["faults"][kind],
            f"{rate:.0%}",
            f"{margins[kind]:.2f}" if kind in margins else "-",
        )
        for kind, rate in ood["detection"].items()
    ]
