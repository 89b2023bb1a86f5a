"""Golden trajectories: fixed seeds give the same data, run after run and release after release.

Regenerate after an intended change of the physics, noise or excitation with
    TWIN_REGEN_GOLDEN=1 python -m pytest tests/plants/test_golden_trajectories.py
and commit the JSON files in tests/plants/golden/ with the change that explains them.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from twin.generate import generate
from twin.spec import load_spec

GOLDEN_DIR = Path(__file__).parent / "golden"
START = datetime(2026, 1, 1, tzinfo=UTC)
CASES = {
    # plant: (hours, excitation, scenario, seed) - 180 samples each
    "cstr": (0.25, "prbs", "stable", 7),
    "four_tank": (0.05, "prbs", "tracking", 7),
}


def _trajectory(plant: str) -> dict:
    hours, excitation, scenario, seed = CASES[plant]
    spec = load_spec(plant)
    frame = generate(spec, hours, excitation, scenario, seed, START, progress=False)
    wide = frame.pivot(index="ts", columns="tag", values="value")[spec.tag_names]
    return {
        "plant": plant,
        "hours": hours,
        "excitation": excitation,
        "scenario": scenario,
        "seed": seed,
        "start": START.isoformat(),
        "tags": spec.tag_names,
        "values": wide.to_numpy().tolist(),
    }


@pytest.mark.parametrize("plant", sorted(CASES))
def test_golden_trajectory(plant: str) -> None:
    path = GOLDEN_DIR / f"{plant}.json"
    now = _trajectory(plant)
    if os.environ.get("TWIN_REGEN_GOLDEN") == "1":
        # Regenerate, then check what was written like any other golden file (no skip).
        path.write_text(json.dumps(now, indent=None) + "\n")
    assert path.is_file(), f"{path} is missing: run with TWIN_REGEN_GOLDEN=1 to create it"
    golden = json.loads(path.read_text())
    assert golden["tags"] == now["tags"]
    expected, actual = np.array(golden["values"]), np.array(now["values"])
    assert expected.shape == actual.shape == (180, len(now["tags"]))
    # Tolerances allow for libm differences between machines, not for changed physics.
    np.testing.assert_allclose(actual, expected, rtol=1e-7, atol=1e-9)
