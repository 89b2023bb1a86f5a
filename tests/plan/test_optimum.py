"""With a toy linear model the planner finds the optimum known in closed form."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import torch

from tests.plan.toy import ToyLinearModel, toy_spec
from twin.plan.controller import PlanningController
from twin.plan.moves import violations
from twin.plan.optimizer import plan
from twin.plan.problem import PlanProblem
from twin.plan.settings import PlannerConfig

# Converged one-shot plans: the default config trims the refinement for latency and relies on
# warm starts across decisions (see test_default_config_converges_with_warm_starts).
CFG = PlannerConfig(refine_iterations=12)
CVS = [
    {"name": "y1", "limits": [-10.0, 10.0]},
    {"name": "y2", "limits": [-10.0, 10.0]},
]
MVS = [
    {"name": "u1", "limits": [-5.0, 5.0], "max_move": 10.0},
    {"name": "u2", "limits": [-5.0, 5.0], "max_move": 10.0},
]
K = np.array([[1.0, 0.3], [0.2, 1.0]])
C = np.array([0.5, -0.5])


def _static_model() -> ToyLinearModel:
    return ToyLinearModel(np.zeros((2, 2)), K, C, ["y1", "y2"], ["u1", "u2"])


def _problem(setpoints: dict[str, float], u_now: dict[str, float] | None = None) -> PlanProblem:
    spec = toy_spec(CVS, MVS, {"setpoints": setpoints})
    return PlanProblem.from_spec(spec, u_now or {"u1": 0.0, "u2": 0.0})


def test_static_plant_reaches_the_exact_inverse() -> None:
    sp = np.array([3.0, -2.0])
    result = plan(_static_model(), torch.zeros(2), _problem({"y1": 3.0, "y2": -2.0}), CFG)
    expected = np.linalg.solve(K, sp - C)
    np.testing.assert_allclose(result.u[0], expected, atol=0.02)
    np.testing.assert_allclose(result.y[-1], sp, atol=0.02)
    assert result.costs["tracking"] < 1e-5


def test_offset_free_correction_removes_a_constant_model_error() -> None:
    sp = np.array([3.0, -2.0])
    residual = np.array([1.0, 0.5])  # the plant reads this much above what the model says
    result = plan(
        _static_model(), torch.zeros(2), _problem({"y1": 3.0, "y2": -2.0}), CFG, offset=residual
    )
    expected = np.linalg.solve(K, sp - C - residual)
    np.testing.assert_allclose(result.u[0], expected, atol=0.02)


def test_unreachable_target_saturates_at_the_bound() -> None:
    result = plan(_static_model(), torch.zeros(2), _problem({"y1": 9.5, "y2": 9.5}), CFG)
    np.testing.assert_allclose(result.u[0], [5.0, 5.0], atol=1e-9)
    assert violations(result.u, _problem({"y1": 9.5, "y2": 9.5})) == []


def test_first_order_plant_gets_the_deadbeat_plan() -> None:
    # y+ = a y + b u: zero cost needs u0 = (sp - a y0) / b, then u = (1 - a) sp / b.
    a, b, y0, sp = 0.8, 2.0, 1.0, 4.0
    model = ToyLinearModel(np.array([[a]]), np.array([[b]]), np.zeros(1), ["y"], ["u"])
    spec = toy_spec(
        [{"name": "y", "limits": [-50.0, 50.0]}],
        [{"name": "u", "limits": [-5.0, 5.0], "max_move": 10.0}],
        {"setpoints": {"y": sp}},
    )
    problem = PlanProblem.from_spec(spec, {"u": 0.0})
    result = plan(model, torch.tensor([y0]), problem, CFG)
    assert abs(result.u[0, 0] - (sp - a * y0) / b) < 0.02
    assert abs(result.u[-1, 0] - (1 - a) * sp / b) < 0.02


def test_max_move_limits_the_first_step_toward_a_far_target() -> None:
    mvs = [dict(m, max_move=0.5) for m in MVS]
    spec = toy_spec(CVS, mvs, {"setpoints": {"y1": 3.0, "y2": -2.0}})
    problem = PlanProblem.from_spec(spec, {"u1": 0.0, "u2": 0.0})
    result = plan(_static_model(), torch.zeros(2), problem, CFG)
    target = np.linalg.solve(K, np.array([3.0, -2.0]) - C)
    np.testing.assert_allclose(result.u[0], np.sign(target) * 0.5, atol=1e-6)
    assert violations(result.u, problem) == []


def test_default_config_converges_with_warm_starts() -> None:
    """In operation each decision starts from the last plan: a few decisions reach the optimum."""
    spec = toy_spec(CVS, MVS, {"setpoints": {"y1": 3.0, "y2": -2.0}})
    ctl = PlanningController(_static_model(), spec, PlannerConfig())
    window = np.tile([0.0, 0.0, 0.0, 0.0], (3, 1))
    for _ in range(4):
        out = ctl.decide(window, datetime(2026, 1, 1, tzinfo=UTC))
    expected = np.linalg.solve(K, np.array([3.0, -2.0]) - C)
    np.testing.assert_allclose([out.proposed["u1"], out.proposed["u2"]], expected, atol=0.02)
