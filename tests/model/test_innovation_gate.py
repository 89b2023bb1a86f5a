"""The OOD gate's innovation check: a disturbance nobody measures makes the plant stop doing
what the twin predicts, and the gate refuses within 5 control intervals (issue 11, and the
cstr fouling runaway of issue 12)."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest
import torch

from plants import load_plant_model
from plants.base import Scenario, Simulation, step
from twin.data import PlantSeries
from twin.generate import generate
from twin.model.twin_model import TwinModel
from twin.plan.gating import ood_ratio
from twin.spec import load_spec
from twin.train import train_series

from .conftest import tiny_configs

START = datetime(2026, 1, 1, tzinfo=UTC)


def _simulate(spec, n: int, scenario: Scenario | None, seed: int) -> np.ndarray:
    """(n, n_tags) measurements from the nominal steady state, MVs held at nominal."""
    model = load_plant_model(spec)
    if scenario is not None:
        model.scenarios[scenario.name] = scenario
    sim = Simulation(spec, seed=seed, start=START, model=model, scenario=scenario and scenario.name)
    return np.array([[m[t] for t in spec.tag_names] for m in (sim.step() for _ in range(n))])


@pytest.fixture(scope="module")
def cstr_twin() -> TwinModel:
    spec = load_spec("cstr")
    model_cfg, data_cfg, cfg = tiny_configs()
    data_cfg = replace(data_cfg, horizon=10, window_intervals=3)
    long = generate(spec, 3.0, "prbs", seed=1, start=START, progress=False)
    wide = long.pivot(index="ts", columns="tag", values="value").reindex(columns=spec.tag_names)
    return train_series(PlantSeries(wide, spec, data_cfg), model_cfg, replace(cfg, epochs=8)).twin


@pytest.mark.timeout(120)
def test_an_unmeasured_disturbance_is_refused_within_five_intervals(cstr_twin):
    """Jacket fouling (UA -15 %, a step no tag measures) on the cstr held at its nominal MVs:
    the twin's prediction misses and the gate refuses within 5 control intervals of the onset,
    on every noise seed; before the onset, and on the same plant without the step, it does not."""
    tw, spec = cstr_twin, load_spec("cstr")
    spi, w = spec.plant.samples_per_interval, tw.window
    onset, n = w + 3 * spi, w + 9 * spi
    fouling = Scenario(
        "test_fouling",
        "unmeasured",
        {"ua_factor": step(onset * spec.plant.sample_period_s, 1.0, 0.85)},
    )
    after = onset - 1 + spi * np.arange(1, 6)  # window ends of the 5 intervals after onset
    before = onset - 1 - spi * np.arange(0, 3)
    for seed in (3, 4, 5):
        rows = _simulate(spec, n, fouling, seed)
        quiet = [ood_ratio(tw, rows[e - w + 1 : e + 1]) for e in before]
        assert max(quiet) <= 1, quiet
        ratios = [ood_ratio(tw, rows[e - w + 1 : e + 1]) for e in after]
        assert max(ratios) > 1, ratios
        # It is the innovation check that sees it (the other checks miss it on most twins).
        x = tw.normalise_window(torch.as_tensor(np.stack([rows[e - w + 1 : e + 1] for e in after])))
        with torch.no_grad():
            assert float(tw.innovation(tw.net, x).max()) > 1
        still = _simulate(spec, n, None, seed)
        assert max(ood_ratio(tw, still[e - w + 1 : e + 1]) for e in after) <= 1


def test_a_twin_saved_before_the_innovation_check_loads_with_it_off(cstr_twin, caplog):
    """Checkpoints of earlier versions load and score as they were calibrated, with a warning
    that their gate cannot see unmeasured disturbances."""
    ckpt = cstr_twin.checkpoint()
    assert cstr_twin.innovation.active
    ckpt["state_dict"] = {
        k: v for k, v in ckpt["state_dict"].items() if not k.startswith("innovation.")
    }
    with caplog.at_level(logging.WARNING):
        old = TwinModel.from_checkpoint(ckpt)
    assert "predates the innovation check" in caplog.text
    assert not old.innovation.active
    x = torch.randn(4, old.window, 2 * len(old.tag_names))
    assert torch.equal(old.innovation(old.net, x), torch.zeros(4))
    back = TwinModel.from_checkpoint(cstr_twin.checkpoint())
    assert back.innovation.active
    assert torch.equal(back.innovation.bank_err, cstr_twin.innovation.bank_err)
