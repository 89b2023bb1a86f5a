"""Oracle NMPC: the same problem solved on the plant's true simulator model from the true state.

The upper bound any learned planner is measured against. It uses the same horizon, move blocks,
limits (the same by-construction parameterisation), cost and setpoints as the planner, and knows
no more of the future: disturbances and setpoints are held at their current values. Its
optimiser is scipy SLSQP on the move sequence, warm-started from its previous plan.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import torch

from plants.base import PlantModel, integrate
from twin.plan.cost import CostTensors, plan_cost
from twin.plan.moves import decode, expand, hold_decision, project, shift_plan, to_decision
from twin.plan.problem import PlanProblem
from twin.plan.settings import PlannerConfig
from twin.spec import PlantSpec


@dataclass(frozen=True)
class OracleConfig:
    """Settings of the oracle's optimiser and integrator."""

    max_iterations: int = 15
    """SLSQP iterations per decision (warm-started from the previous plan)."""
    max_step_s: float = 5.0
    """Largest integrator step of the oracle's predictions (error control shrinks it)."""
    rtol: float = 1e-5
    """Relative tolerance of the oracle's predictions."""


class OracleNMPC:
    """Plans on `model` (the true physics) from the true state."""

    name = "oracle"

    def __init__(
        self,
        spec: PlantSpec,
        model: PlantModel,
        planner: PlannerConfig | None = None,
        config: OracleConfig | None = None,
    ) -> None:
        self.spec = spec
        # A copy with a longer largest step: adaptive error control keeps it accurate, and the
        # simulator's own cap (sized for its worst case) would make the oracle too slow to run.
        self.model = copy.copy(model)
        self.model.max_step_s = max(model.max_step_s, (config or OracleConfig()).max_step_s)
        self.planner = (planner or PlannerConfig()).for_interval(spec.plant.control_interval_s)
        self.config = config or OracleConfig()
        self.dt = spec.plant.control_interval_s
        self.cv_names = [t.name for t in spec.cvs]
        self.mv_names = list(model.mv_names)
        self._warm: np.ndarray | None = None

    def _predict(self, x: np.ndarray, d: np.ndarray, u: np.ndarray, t0: float) -> np.ndarray:
        """True CVs at the end of each interval under per-interval MVs (H, n_mv) -> (H, n_cv)."""
        ys = []
        for k, uk in enumerate(u):
            try:
                x = integrate(
                    self.model,
                    x,
                    uk,
                    d,
                    t0 + k * self.dt,
                    self.dt,
                    rtol=self.config.rtol,
                    atol=1e-8,
                )
            except (RuntimeError, OverflowError, FloatingPointError):
                # A trial plan the integrator cannot follow (a runaway): the worst possible plan.
                return np.full((len(u), len(self.cv_names)), np.nan)
            out = self.model.outputs(x, uk, d)
            ys.append([out[n] for n in self.cv_names])
        return np.array(ys)

    def decide(
        self,
        x: np.ndarray,
        d: np.ndarray,
        u_now: Mapping[str, float],
        setpoints: Mapping[str, float],
        t0: float = 0.0,
    ) -> dict[str, float]:
        """The first move of the best plan from true state x with disturbances d held."""
        problem = PlanProblem.from_spec(
            self.spec, u_now, setpoints=setpoints, mv_names=self.mv_names
        )
        problem.check_feasible()
        blocks = self.planner.blocks
        c = CostTensors.of(problem, torch.zeros(problem.n_cv), dtype=torch.float64)

        def cost(s: np.ndarray) -> float:
            xs = torch.as_tensor(s.reshape(len(blocks), -1))[None]
            u = expand(decode(xs, problem), blocks)  # (1, H, n_mv)
            y = torch.as_tensor(self._predict(x, d, u[0].numpy(), t0))[None]
            if not torch.isfinite(y).all():
                return 1e6
            total = plan_cost(y, y[..., None], u, None, c, self.planner)["total"]
            return float(total[0])

        starts = [hold_decision(problem, len(blocks))]
        if self._warm is not None:
            starts.insert(0, to_decision(project(shift_plan(self._warm, blocks), problem), problem))
        best_s, best = starts[0], math.inf
        for s0 in starts:
            value = cost(s0)
            if value < best:
                best_s, best = s0, value
        result = scipy.optimize.minimize(
            cost,
            best_s.ravel(),
            method="SLSQP",
            bounds=[(-1.0, 1.0)] * best_s.size,
            options={"maxiter": self.config.max_iterations, "ftol": 1e-10, "eps": 1e-4},
        )
        s = result.x if result.fun < best else best_s.ravel()
        u_blocks = project(
            decode(torch.as_tensor(s.reshape(len(blocks), -1))[None], problem)[0].numpy(), problem
        )
        self._warm = expand(torch.as_tensor(u_blocks)[None], blocks)[0].numpy()
        return {n: float(u_blocks[0, i]) for i, n in enumerate(self.mv_names)}
