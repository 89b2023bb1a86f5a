"""Offset-free control with a trained twin in the loop (not the oracle): a constant disturbance
that nobody measures, on each nonlinear plant, leaves a steady-state CV error below the
transmitter noise once the loop has settled.

- cstr: the jacket's heat transfer drops 8 % (scenario `fouling`); Tc must fall to hold Ca.
- four_tank: tank 1 springs a leak (scenario `leak_small`, an extra outflow of 0.005 cm^2); the
  pumps must make it up. (The benchmark's `leak`, 0.012 cm^2, needs v2 = 4.66 V to hold the
  setpoints, above its 4.0 V operating limit: no controller can remove that offset.)

The twins are small and trained once per test session on generated history (PRBS over the
operating band), then planned with the observer gains saved with them (fitted on their own
validation block, twin.registry). The closed loop is the control benchmark's
(benchmarks/control.py): the plant simulator, its transmitter noise, the planner deciding once
per control interval on the measured window.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from plants import load_plant_model
from twin import registry
from twin.data import DataConfig
from twin.model.config import ModelConfig
from twin.paths import Home
from twin.spec import PlantSpec, load_spec
from twin.train import TrainConfig, train_plant

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "control.py"
_spec = importlib.util.spec_from_file_location("bench_control", _PATH)
assert _spec is not None and _spec.loader is not None
bench = sys.modules.get("bench_control") or importlib.util.module_from_spec(_spec)
if "bench_control" not in sys.modules:
    sys.modules["bench_control"] = bench
    _spec.loader.exec_module(bench)

SMALL = ModelConfig(
    latent_dim=16,
    hidden=64,
    action_dim=8,
    readout_hidden=32,
    sigreg_projections=32,
    sigreg_samples=64,
)
CASES = {
    # plant: (training disturbance scenario, test scenario, minutes)
    "cstr": ("feed_temp_step", "fouling", 40.0),
}
"""four_tank ("inflow_step", "leak_small", 30.0) is not here yet: with a twin this small its
readout errors are large and persistent (the fitted output gain is 1.0 on every level), the OOD
gate refuses some decisions once the leak opens, and h1/h2 were 0.5/0.8 cm from their
setpoints 28 minutes in (noise 0.05 cm), in a run where each refusal also reset the observer
(since changed: a refusal keeps the estimate; not re-measured); see docs/control.md."""


def _small_twin(home: Home, spec: PlantSpec) -> bench.Twin:
    from twin.generate import generate

    training, _, _ = CASES[spec.name]
    long = generate(
        spec, 3.0, "prbs", scenario=training, seed=11, start=bench.START, progress=False
    )
    frame = long.pivot_table(index="ts", columns="tag", values="value", aggfunc="last")
    cfg = TrainConfig(
        epochs=12,
        steps_per_epoch=30,
        batch_size=64,
        obs_max_seconds=2,
        val_anchors=256,
        progress=False,
        patience=100,
        seed=0,
    )
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        version = train_plant(home, spec, SMALL, DataConfig(), cfg, frame=frame)
    finally:
        torch.set_num_threads(before)
    model, gains = registry.load_for_planning(home, spec, version)
    assert gains is not None  # saved with the twin when it was registered
    arx, _ = registry.load_baselines(registry.load_checkpoint(home, spec, version))
    return bench.Twin(model, arx, gains, {"seed": 0, "version": version})


@pytest.fixture(scope="session")
def small_twins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bench.Twin]:
    home = Home.at(tmp_path_factory.mktemp("offset-free"))
    return {plant: _small_twin(home, load_spec(plant)) for plant in CASES}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("plant", list(CASES))
def test_a_constant_unmeasured_disturbance_leaves_no_offset(
    plant: str, small_twins: dict[str, bench.Twin]
) -> None:
    spec = load_spec(plant)
    _, scenario, minutes = CASES[plant]
    case = bench.BenchScenario(plant, scenario, minutes, seed=7)
    run = bench.run_scenario(case, spec, "jepa", small_twins[plant])
    # The twin is the one acting: no decision was handed to the linear-MPC fallback.
    assert run.fallback_decisions == 0, run.no_proposal
    assert sum(run.no_proposal.values()) <= 2, run.no_proposal
    noise = load_plant_model(spec).noise_std
    score = bench.score(run, spec)
    assert score["cv_limit_crossings"] == 0
    tracked = [n for n in run.sp if np.isfinite(run.sp[n]).any()]
    assert tracked
    for name in tracked:
        offset = score[f"ss_error.{name}"]  # mean error over the last 10 minutes (true CV)
        assert abs(offset) < noise[name], (
            f"{plant}/{scenario}: steady-state {name} error {offset:+.4g} is not below the "
            f"transmitter noise {noise[name]:g}"
        )
    # The disturbance was real: holding the MVs would have left a clear offset.
    held = bench.score(bench.run_scenario(replace(case), spec, "hold", None), spec)
    assert any(
        abs(held[f"ss_error.{n}"]) > 3 * noise[n] and math.isfinite(held[f"ss_error.{n}"])
        for n in tracked
    )
