"""The OOD gate: k-NN in latent space with a conformal threshold; a plant held still at a
steady state inside its excited region is in distribution."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest
import torch

from twin.data import PlantSeries
from twin.generate import generate
from twin.model.ood import LatentGate, conformal_quantile
from twin.model.window_check import WindowCheck
from twin.plan.gating import gate, ood_ratio
from twin.spec import load_spec
from twin.train import train_series

from .conftest import tiny_configs

START = datetime(2026, 1, 1, tzinfo=UTC)


def _two_regions(n: int, rng: np.random.Generator) -> torch.Tensor:
    """Latents from two operating regions far apart, with a thin direction."""
    centers = np.where(rng.random(n) < 0.5, -4.0, 4.0)
    z = rng.standard_normal((n, 6)) * np.array([1.0, 1.0, 0.5, 0.5, 0.3, 0.01])
    z[:, 0] += centers
    return torch.as_tensor(z, dtype=torch.float32)


def test_gate_keeps_its_false_alarm_rate_and_flags_the_gap_between_regions():
    rng = np.random.default_rng(0)
    g = LatentGate(6)
    g.fit(_two_regions(4000, rng), _two_regions(2000, rng), false_alarm=0.01)
    with torch.no_grad():
        fresh = g(_two_regions(4000, rng))
        between = torch.zeros(200, 6)  # the empty middle that one Gaussian fit calls typical
        between[:, 1] = torch.randn(200)
        far = _two_regions(200, rng) + torch.tensor([0.0, 6.0, 0, 0, 0, 0])
        middle, outside = g(between), g(far)
    false_alarm = float((fresh > g.threshold).float().mean())
    assert 0.002 <= false_alarm <= 0.02, false_alarm
    assert float((middle > g.threshold).float().mean()) > 0.95
    assert float((outside > g.threshold).float().mean()) > 0.95
    assert 0.8 < float(fresh.median()) < 1.25  # scaled to ~1 in distribution


def test_conformal_quantile_is_a_rank_and_the_largest_score_when_too_few():
    s = torch.arange(1.0, 101.0)
    assert conformal_quantile(s, 0.9) == 91.0  # ceil(101 * 0.9) = 91st smallest
    assert conformal_quantile(s[:10], 0.99) == 10.0  # never an infinite, silent threshold
    assert conformal_quantile(s[:0], 0.99) == float("inf")


def test_window_check_loads_a_checkpoint_from_before_second_order_terms():
    """A gate saved before the second-order consistency terms and per-tag ranges still loads
    and scores (with the features it was fitted on)."""
    new = WindowCheck(12, 4, 4, [0, 1], [3])
    state = new.state_dict()
    old_rows = (12 - 4) * 4 + 4 * 1 + 1  # past samples, the interval's MV samples, intercept
    state["coef"] = torch.randn(old_rows, state["coef"].shape[1])
    del state["range_scale"]
    state["scale"] = torch.ones(3)
    loaded = WindowCheck(12, 4, 4, [0, 1], [3])
    loaded.load_state_dict(state)
    assert not loaded.quadratic and loaded.coef.shape[0] == old_rows
    assert loaded(torch.randn(5, 12, 8)).shape == (5,)


def test_window_inside_the_training_range_means_every_measured_sample_of_it():
    torch.manual_seed(0)
    check = WindowCheck(12, 4, 4, [0, 1], [3])
    vals = torch.randn(200, 12, 4)
    x = torch.cat([vals, torch.ones_like(vals)], -1)  # (B, W, 2n): values, all measured
    check.fit(x[:150], x[150:], 0.01)
    inside = x[150:155].clone()
    early = inside.clone()
    early[0, 0, 2] = float(vals[..., 2].max()) + 1.0  # the window's first sample, tag 2
    unmeasured = early[:1].clone()
    unmeasured[0, 0, 4 + 2] = 0.0  # the same sample, flagged missing
    assert check.inside_training_range(x[:150]).all()
    assert check.inside_training_range(inside).all()
    assert check.inside_training_range(early).tolist() == [False, True, True, True, True]
    assert check.inside_training_range(unmeasured).tolist() == [True]


def _two_noise_regions(n: int, gen: torch.Generator) -> torch.Tensor:
    """Windows (n, 12, 8) of a plant with 4 tags (CVs 0 and 1, a DV 2 that says the region,
    an MV 3), spi 4: the CVs of the last interval follow the MV, with noise 0.05 in the quiet
    region (70 % of windows) and 1.0 in the rough one."""
    v = torch.randn(n, 12, 4, generator=gen)
    quiet = torch.rand(n, generator=gen) < 0.7
    v[..., 2] = torch.where(quiet, -2.0, 2.0)[:, None] + 0.1 * v[..., 2]
    sigma = torch.where(quiet, 0.05, 1.0)[:, None, None]
    v[:, 8:, :2] = 0.5 * v[:, 8:, 3:] + sigma * torch.randn(n, 4, 2, generator=gen)
    return torch.cat([v, torch.ones_like(v)], -1)


def test_window_consistency_scales_residuals_by_the_region_the_plant_is_in():
    """A bias of 10x the quiet region's noise is caught there by the local residual scale;
    one global scale (the check before it) sets its threshold by the rough region and misses
    it. Fresh normal windows of both regions stay at about the design rate."""
    gen = torch.Generator().manual_seed(0)
    x_train, x_cal = _two_noise_regions(3000, gen), _two_noise_regions(1000, gen)
    fresh = _two_noise_regions(3000, gen)
    quiet = fresh[fresh[:, -1, 2] < 0][:500]
    biased = quiet.clone()
    biased[:, 8:, 0] += 0.5
    caught = {}
    for local in (True, False):
        check = WindowCheck(12, 4, 4, [0, 1], [3])
        check.fit(x_train, x_cal, 0.01, local=local)
        with torch.no_grad():
            assert float((check(fresh) > 1).float().mean()) <= 0.02
            assert float((check(quiet) > 1).float().mean()) <= 0.02
            caught[local] = float((check(biased) > 1).float().mean())
    assert caught[True] >= 0.95, caught
    assert caught[False] <= 0.2, caught


def test_window_check_saved_without_a_residual_bank_loads_with_one_global_scale():
    gen = torch.Generator().manual_seed(1)
    x_train, x_cal = _two_noise_regions(800, gen), _two_noise_regions(300, gen)
    local = WindowCheck(12, 4, 4, [0, 1], [3])
    local.fit(x_train, x_cal, 0.01)
    state = local.state_dict()
    assert len(state["bank_state"]) > 0 and len(state["bank_err"]) == len(state["bank_state"])
    restored = WindowCheck(12, 4, 4, [0, 1], [3])
    restored.load_state_dict(state)
    old = {k: v for k, v in state.items() if not k.startswith("bank_")}
    before = WindowCheck(12, 4, 4, [0, 1], [3])
    before.load_state_dict(old)
    probe = _two_noise_regions(50, gen)
    with torch.no_grad():
        assert torch.allclose(restored.consistency(probe), local.consistency(probe), atol=1e-5)
        # Without the bank every window's residual is over the median, the local scale's
        # floor: never a smaller score, and a larger one in the rough region.
        with_bank, without = restored.consistency(probe), before.consistency(probe)
    assert len(before.bank_state) == 0
    assert (without >= with_bank - 1e-6).all()
    rough = probe[:, -1, 2] > 0
    assert (without[rough] > 3 * with_bank[rough]).all()


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("plant", "train_hours", "hold_hours"),
    [("cstr", 3.0, 1.0), ("four_tank", 3.0, 1.0), ("tep", 40.0, 11.0)],
)
def test_a_plant_held_still_inside_its_excited_region_is_in_distribution(
    plant, train_hours, hold_hours
):
    """Train on PRBS excitation, then hold the MVs at their nominal values (the middle of the
    excited band) for an hour (tep: 11 h, 100 decision instants): the planner's gate never
    refuses as out of distribution."""
    spec = load_spec(plant)
    model_cfg, data_cfg, cfg = tiny_configs()
    data_cfg = replace(data_cfg, horizon=10, window_intervals=3)
    long = generate(spec, train_hours, "prbs", seed=1, start=START, progress=False)
    wide = long.pivot(index="ts", columns="tag", values="value").reindex(columns=spec.tag_names)
    out = train_series(PlantSeries(wide, spec, data_cfg), model_cfg, replace(cfg, epochs=8))
    tw = out.twin
    assert np.isfinite(tw.ood_threshold)

    held = generate(spec, hold_hours, "none", seed=2, start=START, progress=False)
    rows = held.pivot(index="ts", columns="tag", values="value").reindex(columns=spec.tag_names)
    x = rows.to_numpy()
    spi, w = spec.plant.samples_per_interval, tw.window
    ends = np.arange(w - 1, len(x), spi)  # every decision instant of the hour
    ratios = [ood_ratio(tw, x[e - w + 1 : e + 1]) for e in ends]
    refusals = [
        r
        for r in ratios
        if gate(
            plant,
            model_version="v001",
            data_ts=START,
            now=START,
            max_staleness_s=60,
            ood_score=r,
            ood_threshold=1.0,
        )
        is not None
    ]
    assert len(ends) >= 100
    assert refusals == [], (len(refusals), max(ratios))
    # The gate is not blind: a CV sensor stuck at its upper limit is refused every time, and
    # so is an MV moved halfway from the band the excitation covered to its limit.
    cv = spec.tag_names.index(spec.cvs[0].name)
    mv = spec.tag_names.index(spec.mvs[0].name)
    seen = wide[spec.mvs[0].name].max()
    past_band = seen + 0.5 * (spec.mvs[0].limits[1] - seen)
    for e in ends[:20]:
        broken = x[e - w + 1 : e + 1].copy()
        broken[:, cv] = spec.cvs[0].limits[1]
        assert ood_ratio(tw, broken) > 1
        pushed = x[e - w + 1 : e + 1].copy()
        pushed[-spi:, mv] = past_band
        assert ood_ratio(tw, pushed) > 1
