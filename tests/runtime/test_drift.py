"""Drift detection on the real CSTR simulator: a predictor that assumes the clean jacket (the
model as trained) is scored against the plant under the scripted `fouling_15` scenario (UA -15 %
from minute 5 to 15) and against an equal stretch without fouling. The test fires on the first
and stays quiet on the second; it also never fires before the fouling begins."""

from __future__ import annotations

import math

import numpy as np
import pytest

from plants.base import Simulation
from twin.health.drift import DriftConfig, DriftState, normalised_errors, page_hinkley, slope
from twin.spec import load_spec

HORIZON = 5  # control intervals predicted ahead
HELD_OUT_RMSE = {"Ca": 0.01, "T": 0.5}  # a model card's held-out RMSE (noise is 0.004, 0.2)
MINUTES = 60


def _scores(scenario: str | None, seed: int) -> tuple[list[list[float]], list[float]]:
    """Normalised errors of every matured prediction, and the plant time of each (minutes)."""
    spec = load_spec("cstr")
    sim = Simulation(spec, seed=seed, scenario=scenario)
    per = spec.plant.samples_per_interval
    clean_d = sim.model.nominal()[1].astype(float)
    n = int(MINUTES * 60 / spec.plant.control_interval_s)
    predictions: list[dict[str, list[float]]] = []
    measured: list[dict[str, float]] = []
    for k in range(n):
        if k % 4 == 0:  # excitation: Tc steps +-2 K about nominal every 4 intervals
            sim.set_mvs({"Tc": 300.0 + (2.0 if (k // 4) % 2 else -2.0)})
        x, pred = sim.x.copy(), {"Ca": [], "T": []}
        t = sim.elapsed_s
        for _ in range(HORIZON):  # the clean-jacket model's hold prediction
            for _ in range(per):
                x = sim.model.advance(x, sim.u, clean_d, t, sim.dt, "rk45", sim.rng)
                t += sim.dt
            out = sim.model.outputs(x, sim.u, clean_d)
            pred["Ca"].append(out["Ca"])
            pred["T"].append(out["T"])
        predictions.append(pred)
        for _ in range(per):
            y = sim.step()
        measured.append(y)
    scores, when = [], []
    for k, pred in enumerate(predictions):
        # Truncated where the next MV move begins: the prediction was made for a held MV.
        steps = min(HORIZON, 4 - k % 4, len(measured) - k)
        actual = {cv: [measured[k + j][cv] for j in range(steps)] for cv in pred}
        expected = {cv: [HELD_OUT_RMSE[cv]] * steps for cv in pred}
        scores.append(normalised_errors({c: v[:steps] for c, v in pred.items()}, actual, expected))
        when.append((k + 1) * spec.plant.control_interval_s / 60)
    return scores, when


def _run(scores: list[list[float]]) -> int | None:
    state = DriftState()
    for i, s in enumerate(scores):
        if state.update(s, ood_ratio=0.5):
            return i
    return None


@pytest.mark.parametrize("seed", [0, 1])
def test_fires_on_fouling_quiet_without(seed: int) -> None:
    drift, when = _scores("fouling_15", seed)
    fired = _run(drift)
    assert fired is not None, "the drift test did not fire on 15 % fouling"
    assert 5.0 < when[fired] < 30.0  # after the fouling begins, within its first quarter hour
    quiet, _ = _scores(None, seed)
    assert _run(quiet) is None
    assert np.mean([s[0] for s in quiet]) < 1.0  # a healthy twin scores at its card's level


def test_cusum_and_state_agree() -> None:
    cfg = DriftConfig(slack=0.5, threshold=3.0, cap=5.0)
    values = [0.2, 0.8, 3.0, 100.0, 2.0, 0.1]
    path, fired = page_hinkley(values, cfg)
    # Hand: 0 -> 0 -> 1.5 -> 1.5 + (5 - 1.5) = 5.0 (capped) -> fired at index 3.
    assert path[:4] == pytest.approx([0.0, 0.0, 1.5, 5.0])
    assert fired == 3
    state = DriftState(cfg)
    got = [state.update([v]) for v in values]
    assert got == [False, False, False, True, False, False]  # fires once
    ev = state.evidence()
    assert ev["predictions_scored"] == 6 and ev["one_step_cusum"] == pytest.approx(path[-1])


def test_errors_and_trend() -> None:
    errs = normalised_errors(
        {"Ca": [1.0, 2.0, None], "T": [10.0, 10.0, 10.0]},
        {"Ca": [1.1, 2.0, 3.0], "T": [10.0, 12.0]},
        {"Ca": [0.1, 0.1, 0.1], "T": [1.0, 1.0, 1.0]},
    )
    assert errs == pytest.approx([0.5, 2.0])  # ((1)^2+0)/2, (0+4)/2; step 3 has nothing known
    assert slope([1.0, 2.0, math.nan, 4.0]) == pytest.approx(1.0)
    assert slope([1.0, 2.0]) is None
    with pytest.raises(ValueError, match="cap"):
        DriftConfig(slack=1.0, cap=1.5)
