"""What makes a decision cheaper must not change what it decides: the trust ratio's bounds
leave the trust cost and its gradient exactly as the k-NN score gives them, a model whose
score is something else gets no shortcut, and the refinement never spends more cost
evaluations than its budget."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.plan.test_optimum import CFG, _problem, _static_model
from tests.plan.toy import ToyLinearModel
from twin.model.ood import LatentGate
from twin.plan.gating import TrustRatio
from twin.plan.moves import violations
from twin.plan.optimizer import plan
from twin.plan.settings import PlannerConfig


class GatedToy(ToyLinearModel):
    """The toy plant with the JEPA twin's k-NN gate as its OOD score (latent = the 2 CVs)."""

    def __init__(self, gate: LatentGate, factor: float = 1.0) -> None:
        super().__init__(np.zeros((2, 2)), np.eye(2), np.zeros(2), ["y1", "y2"], ["u1", "u2"])
        self.gate = gate
        self.factor = factor
        self.ood_threshold = gate.threshold

    def ood_score(self, z: torch.Tensor) -> torch.Tensor:
        return self.factor * self.gate(z)


def _gate() -> LatentGate:
    """A gate fitted on two clouds of training latents (two operating regions)."""
    gen = torch.Generator().manual_seed(0)
    z = 0.5 * torch.randn(1200, 2, generator=gen)
    z = z + 8.0 * (torch.arange(1200) >= 600)[:, None]
    gate = LatentGate(2)
    gate.fit(z, 0.5 * torch.randn(300, 2, generator=gen), false_alarm=0.02, bank_size=400)
    return gate


def test_bounded_trust_ratio_gives_the_exact_trust_cost_and_gradient() -> None:
    model = GatedToy(_gate())
    trust = TrustRatio(model, model.ood_threshold, 1.5)
    assert trust.shortcut
    # Latents near the clouds, between them and far away: the bound settles the first, the
    # exact score the others.
    gen = torch.Generator().manual_seed(1)
    z = torch.cat(
        [torch.randn(400, 2, generator=gen), 4.0 + 4.0 * torch.randn(400, 2, generator=gen)]
    )
    z.requires_grad_(True)
    exact, bounded = trust.exact(z), trust.bounded(z)
    assert bool((exact > 1).any()) and bool((exact < 1).any())
    # The bound is an upper bound up to float32 cdist's rounding, which BOUND_MARGIN (1e-2)
    # covers where the bound is used: its matrix-product path is off by up to ~1e-3 of a
    # distance near 0 (5 draws of 300 broke an absolute 1e-5, by up to 4.4e-4 at 0.12) ...
    assert torch.all(bounded >= exact * (1.0 - 5e-3) - 1e-5)
    # ... and where it is used, it is below 1: the trust cost is that of the exact ratio.
    assert torch.equal(torch.relu(bounded - 1.0), torch.relu(exact - 1.0))
    (g_exact,) = torch.autograd.grad(torch.relu(exact - 1).square().sum(), z)
    (g_bounded,) = torch.autograd.grad(torch.relu(bounded - 1).square().sum(), z)
    assert torch.equal(g_exact, g_bounded)


def test_a_score_other_than_the_gates_knn_gets_no_shortcut() -> None:
    model = GatedToy(_gate(), factor=2.0)  # has a k-NN gate, but scores something else
    trust = TrustRatio(model, model.ood_threshold, 1.5)
    assert not trust.shortcut
    z = 4.0 + 4.0 * torch.randn(50, 2, generator=torch.Generator().manual_seed(2))
    assert torch.equal(trust.bounded(z), trust.exact(z))


class HiddenGate(ToyLinearModel):
    """The same score as GatedToy's, computed by a gate the planner cannot see."""

    def __init__(self, gate: LatentGate) -> None:
        super().__init__(np.zeros((2, 2)), np.eye(2), np.zeros(2), ["y1", "y2"], ["u1", "u2"])
        self._gate = gate
        self.ood_threshold = gate.threshold

    def ood_score(self, z: torch.Tensor) -> torch.Tensor:
        return self._gate(z)


def test_plans_with_the_bounded_trust_ratio_are_the_plans_of_the_exact_one() -> None:
    gate = _gate()
    fast_model, slow_model = GatedToy(gate), HiddenGate(gate)
    cfg = PlannerConfig(population=32, refine_iterations=6, trust_slack=1.0)
    for target, z0 in ((4.0, 1.0), (8.5, 7.0)):  # between the regions, in each
        problem = _problem({"y1": target, "y2": target})
        z = torch.full((2,), z0)
        fast, slow = plan(fast_model, z, problem, cfg), plan(slow_model, z, problem, cfg)
        # The same plans up to float32 rounding: the k-NN's distances round differently with
        # the number of latents scored at once (cdist's matrix-product path), in the model too.
        np.testing.assert_allclose(fast.u, slow.u, rtol=1e-5, atol=1e-5)
        assert fast.costs == pytest.approx(slow.costs, rel=1e-5, abs=1e-9)
        np.testing.assert_allclose(fast.ood_ratio, slow.ood_ratio, rtol=1e-4)
    between = plan(fast_model, torch.full((2,), 1.0), _problem({"y1": 4.0, "y2": 4.0}), cfg)
    # Between the regions the trust region binds: the plan stops at its edge, short of 4.
    assert between.ood_ratio is not None and float(between.ood_ratio.max()) > 0.9
    assert float(between.y[-1].max()) < 3.0


def test_the_search_shortcuts_give_the_decisions_of_the_planner_without_them() -> None:
    # The coarse first bound of the trust ratio and the refinement's reuse of its own
    # evaluations (PlannerConfig.search_shortcuts) against the planner before them: every
    # evaluation bounded on the 256-row subset only, every refined point predicted again.
    gate = _gate()
    model = GatedToy(gate)
    base = PlannerConfig(population=32, refine_iterations=6, trust_slack=1.0)
    assert TrustRatio(model, model.ood_threshold, 1.0).shortcut
    for gradient in ("differences", "autograd"):
        fast = replace(base, refine_gradient=gradient)
        slow = replace(fast, search_shortcuts=False)
        for target, z0 in ((4.0, 1.0), (8.5, 7.0), (0.5, 0.0)):  # between, in each region
            problem = _problem({"y1": target, "y2": target})
            z = torch.full((2,), z0)
            a, b = plan(model, z, problem, fast), plan(model, z, problem, slow)
            np.testing.assert_allclose(a.u, b.u, rtol=1e-5, atol=1e-5)
            assert a.costs == pytest.approx(b.costs, rel=1e-5, abs=1e-9)
            assert a.refined == b.refined and a.cem_cost == pytest.approx(b.cem_cost, rel=1e-6)
            np.testing.assert_allclose(a.ood_ratio, b.ood_ratio, rtol=1e-4)
    # Between the regions the trust region binds, so the exact score ran there too.
    between = plan(model, torch.full((2,), 1.0), _problem({"y1": 4.0, "y2": 4.0}), base)
    assert between.ood_ratio is not None and float(between.ood_ratio.max()) > 0.9


def test_the_coarse_bound_settles_latents_near_the_bank_and_keeps_the_exact_cost() -> None:
    model = GatedToy(_gate())
    coarse = TrustRatio(model, model.ood_threshold, 1.5)
    fine = TrustRatio(model, model.ood_threshold, 1.5, coarse=False)
    gen = torch.Generator().manual_seed(3)
    z = torch.cat(
        [0.3 * torch.randn(300, 2, generator=gen), 4.0 + 4.0 * torch.randn(300, 2, generator=gen)]
    )
    exact = coarse.exact(z)
    for trust in (coarse, fine):
        assert torch.equal(torch.relu(trust.bounded(z) - 1.0), torch.relu(exact - 1.0))


def test_the_refinement_keeps_to_its_evaluation_budget() -> None:
    model = _static_model()
    problem = _problem({"y1": 4.0, "y2": 2.5})
    width = 2 * len(CFG.blocks) * problem.n_mv + 1  # a cost evaluation by differences
    calls = []

    def counted(z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        if u.requires_grad or len(u) == width:
            calls.append(1)
        return ToyLinearModel.rollout(model, z, u)

    model.rollout = counted  # type: ignore[method-assign]
    for gradient in ("differences", "autograd"):
        cfg = replace(CFG, refine_gradient=gradient)
        for budget in (1, 2, 4):
            calls.clear()
            out = plan(model, torch.zeros(2), problem, replace(cfg, refine_evaluations=budget))
            assert 1 <= len(calls) <= budget
            assert not violations(out.u, problem)
        calls.clear()
        plan(model, torch.zeros(2), problem, cfg)
        assert len(calls) <= cfg.evaluation_budget == 4 * cfg.refine_iterations + 1


def test_gradients_by_differences_find_the_optimum_autograd_finds() -> None:
    model = _static_model()
    for setpoints in ({"y1": 4.0, "y2": 2.5}, {"y1": -3.0, "y2": 6.0}):
        problem = _problem(setpoints)
        by = {
            g: plan(model, torch.zeros(2), problem, replace(CFG, refine_gradient=g))
            for g in ("differences", "autograd")
        }
        np.testing.assert_allclose(by["differences"].u, by["autograd"].u, atol=2e-3)
        assert by["differences"].costs["total"] == pytest.approx(
            by["autograd"].costs["total"], rel=1e-3, abs=1e-6
        )


def test_the_prepared_bounds_follow_a_refitted_gate() -> None:
    # What TrustRatio prepares from the bank is kept per model between decisions; a gate
    # refitted on other latents (the plant's regions moved) must not be bounded by the old bank.
    gate = _gate()
    model = GatedToy(gate)
    gen = torch.Generator().manual_seed(1)
    z = torch.cat(
        [
            torch.randn(200, 2, generator=gen),
            4.0 + 4.0 * torch.randn(200, 2, generator=gen),
            -8.0 + torch.randn(50, 2, generator=gen),
        ]
    )
    assert TrustRatio(model, model.ood_threshold, 1.0).shortcut
    gate.fit(
        -8.0 + 0.5 * torch.randn(1200, 2, generator=gen),
        -8.0 + 0.5 * torch.randn(300, 2, generator=gen),
    )
    model.ood_threshold = gate.threshold
    trust = TrustRatio(model, model.ood_threshold, 1.0)
    assert trust.shortcut
    exact, bounded = trust.exact(z), trust.bounded(z)
    assert bool((exact[:400] > 1).all()) and bool((exact[400:] < 1).any())
    assert torch.equal(torch.relu(bounded - 1.0), torch.relu(exact - 1.0))
