"""Drift detection on the real CSTR simulator: a predictor that assumes the clean jacket (the
model as trained) is scored against the plant under the scripted `fouling_15` scenario (UA -15 %
from minute 5 to 15) and against an equal stretch without fouling. The test fires on the first
and stays quiet on the second; it also never fires before the fouling begins."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from plants.base import Simulation
from twin.health.commissioning import Commissioning, Reference
from twin.health.drift import (
    AbstentionRun,
    BiasState,
    DriftState,
    followed_steps,
    normalised_errors,
    page_hinkley,
    slope,
)
from twin.health.drift_config import DriftConfig, config_from_env
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


def _observer_innovations(
    ramp_from: int | None, n: int, seed: int, gain: float = 0.3, ramp: float = 0.01
) -> list[float]:
    """One CV under an offset-free observer d_k = d_{k-1} + gain * e_k (the planner's output
    disturbance state) with measurement noise 0.05; the true disturbance ramps by `ramp` per
    interval from `ramp_from` (a fouling that the observer absorbs)."""
    rng = np.random.default_rng(seed)
    d_hat, out = 0.0, []
    for k in range(n):
        true = 0.0 if ramp_from is None or k < ramp_from else ramp * (k - ramp_from)
        e = true + rng.normal(0.0, 0.05) - d_hat  # measured - (model + estimate)
        d_hat += gain * e
        out.append(e)
    return out


def _commissioned(innov: list[float], errors: list[float], cfg: DriftConfig) -> Reference:
    c = Commissioning(cfg)
    for e, x in zip(innov, errors, strict=True):
        c.add([x], {"y": e})
    return c.reference({"y": 0.05})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_disturbance_trend_fires_on_an_absorbed_ramp_and_not_without(seed: int) -> None:
    cfg = DriftConfig()
    drift = _observer_innovations(ramp_from=100, n=400, seed=seed)
    quiet = _observer_innovations(ramp_from=None, n=400, seed=seed + 10)

    def run(innov: list[float]) -> tuple[int | None, BiasState]:
        ref = _commissioned(innov[20:60], [1.0] * 40, cfg)
        bias = BiasState(ref.innovation_mean, ref.innovation_std, cfg)
        fired = None
        for k in range(60, len(innov)):
            if bias.update({"y": innov[k]}) and fired is None:
                fired = k
        return fired, bias

    # The observer absorbs the ramp: the innovations keep a steady bias of ramp / gain = 0.033,
    # under the noise's 0.05, so each squared error hardly grows; their sum does.
    fired, bias = run(drift)
    assert fired is not None and 100 < fired < 400
    assert bias.worst() == "y" and bias.evidence()["innovation_sum_since_commissioning"]["y"] > 0
    assert run(quiet)[0] is None


def test_commissioning_sets_the_reference_bounded_by_the_card() -> None:
    cfg = DriftConfig(max_reference=9.0)
    rng = np.random.default_rng(3)
    # Closed-loop errors at 2x the card's RMSE: a level of 4, which alone would fire the
    # card-referenced test, is the commissioned normal.
    live = list(4.0 * rng.exponential(1.0, 300))
    ref = _commissioned([0.0] * 40, live[:40], cfg)
    assert ref.within_card_bound and 2.0 < ref.one_step < 6.0
    assert page_hinkley(live, cfg)[1] is not None  # against the card: a false alarm
    assert page_hinkley(live[40:], cfg, reference=ref.one_step)[1] is None
    # ... and a doubling of the RMSE after commissioning (level x4) fires within a few dozen.
    worse = list(16.0 * rng.exponential(1.0, 60))
    assert (page_hinkley(worse, cfg, reference=ref.one_step)[1] or 99) < 30
    # A twin 5x off its card at commissioning is not taken as normal: bounded, and flagged.
    bad = _commissioned([0.0] * 40, [25.0] * 40, cfg)
    assert not bad.within_card_bound and bad.one_step == 9.0 and bad.measured_one_step == 25.0


def test_innovation_std_allows_for_autocorrelation() -> None:
    rng = np.random.default_rng(4)
    white = list(rng.normal(0.0, 1.0, 400))
    ar = [0.0]
    for w in white[1:]:
        ar.append(0.8 * ar[-1] + w * math.sqrt(1 - 0.64))  # unit variance, lag-1 0.8
    cfg = DriftConfig()
    r_white = _commissioned(white, [1.0] * 400, cfg)
    r_ar = _commissioned(ar, [1.0] * 400, cfg)
    assert r_white.innovation_lag1["y"] < 0.15
    assert 0.7 < r_ar.innovation_lag1["y"] <= 0.9
    # Long-run std sqrt((1 + rho) / (1 - rho)) = 3 for rho 0.8: a slow wander is not a trend.
    assert r_ar.innovation_std["y"] > 2.0 * r_white.innovation_std["y"]


def test_commissioning_lengths_from_the_environment() -> None:
    cfg = config_from_env({"TWIN_DRIFT_SETTLE_S": "0", "TWIN_DRIFT_MIN_COMMISSION": "3"})
    assert (cfg.settle_s, cfg.commission_s, cfg.min_commission) == (0.0, 900.0, 3)
    with pytest.raises(ValueError, match="TWIN_DRIFT_COMMISSION_S"):
        config_from_env({"TWIN_DRIFT_COMMISSION_S": "soon"})
    with pytest.raises(ValueError, match="min_commission"):
        config_from_env({"TWIN_DRIFT_MIN_COMMISSION": "1"})


def test_abstention_run_holds_through_intervals_without_a_verdict() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    run = AbstentionRun()
    at = [t0 + timedelta(seconds=30 * i) for i in range(8)]
    assert run.update(0.4, at[0]) == 0 and run.onset is None
    assert run.update(1.7, at[1]) == 1 and run.onset == at[1]
    # A sensor fault or a refused plan: no decision, no verdict; the run neither grows nor ends.
    assert run.update(None, at[2]) == 1
    assert run.update(float("nan"), at[3]) == 1
    assert run.update(2.5, at[4]) == 2 and run.onset == at[1]
    # Back in distribution: the run ends, and the next one starts afresh.
    assert run.update(0.9, at[5]) == 0 and run.onset is None
    assert run.update(1.1, at[6]) == 1 and run.onset == at[6]


def test_a_prediction_is_scored_only_while_the_mvs_follow_its_moves() -> None:
    limits = {"F": (0.0, 200.0), "Tc": (250.0, 350.0)}  # 0.1 % of the spans: 0.2 and 0.1
    plan = {"F": [100.0, 110.0, 110.0, 110.0, 110.0], "Tc": [300.0] * 5}
    followed = [{"F": 100.0, "Tc": 300.0}] + [{"F": 110.1, "Tc": 299.95}] * 4
    assert followed_steps(plan, followed, limits) == 5  # within the tolerance throughout
    # The next decision moved Tc at the end of the third interval: steps 1-2 stand.
    moved = [*followed[:2], {"F": 110.0, "Tc": 305.0}, *followed[3:]]
    assert followed_steps(plan, moved, limits) == 2
    # The plan was never applied (hold instead): not even the first step is scored.
    assert followed_steps(plan, [{"F": 100.0, "Tc": 300.0}] * 5, limits) == 1
    assert followed_steps(plan, [{"F": 90.0, "Tc": 300.0}] * 5, limits) == 0
    # A missing sample or an MV without a plan does not end the run.
    gaps = [{"F": None, "Tc": 300.0}, {}, *followed[2:]]
    assert followed_steps(plan, gaps, limits) == 5
    assert followed_steps({"F": plan["F"]}, moved, limits) == 5
