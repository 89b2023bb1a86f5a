"""Oracle NMPC: the same problem solved on the plant's true simulator model from the true state.

The upper bound any learned planner is measured against. It knows no more of the future than
the planner (disturbances and setpoints are held at their current values) and keeps the same
limits and cost, but it predicts with the true physics from the true state, looks further ahead
(at least `OracleConfig.blocks`, 20 control intervals, where the planner's horizon is shorter)
and treats every CV operating limit as a hard constraint at every sample inside the horizon,
not only as a penalty. Its optimiser is scipy SLSQP on the move sequence (one move per block,
bounded by max_move; the MV limits are linear constraints on the running sum), warm-started from
its previous plan, with forward-difference gradients of every trial plan integrated as one batch
(`integrate_batch`). A plan that stays inside the limits beats any plan that does not.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import torch

from plants.base import PlantModel, integrate_batch
from twin.plan.cost import CostTensors, plan_cost
from twin.plan.moves import block_of_interval, project, shift_plan
from twin.plan.problem import PlanProblem
from twin.plan.settings import PlannerConfig
from twin.spec import PlantSpec

_BIG = 1e6
"""Cost of a trial plan the integrator cannot follow."""


@dataclass(frozen=True)
class OracleConfig:
    """Settings of the oracle's optimiser and integrator."""

    blocks: tuple[int, ...] = (1, 1, 2, 3, 5, 8)
    """Move blocks in control intervals (20 in all); the last is stretched where the planner
    looks further ahead, so the oracle never sees less of the future than the planner."""
    max_iterations: int = 25
    """SLSQP iterations per decision (from the best of the candidate plans)."""
    ladder: int = 9
    """Candidate plans that move each MV as fast as allowed to one of this many levels."""
    random_starts: int = 24
    """Candidate plans with random move sequences (seeded: decisions are reproducible)."""
    seed: int = 0
    max_points_per_interval: int = 3
    """CV samples checked against the limits per control interval (all, up to this many)."""
    fd_step: float = 1e-4
    """Forward-difference step, as a fraction of max_move."""
    max_step_s: float = 5.0
    """Largest integrator step of the oracle's predictions (error control shrinks it)."""
    rtol: float = 1e-6
    """Relative tolerance of the oracle's predictions."""
    feasibility_tol: float = 1e-4
    """A plan crossing a CV operating limit by less than this fraction of its span is inside."""


@dataclass(frozen=True)
class _Eval:
    """Cost and constraint values of one plan and their forward-difference derivatives."""

    cost: float
    grad: np.ndarray
    g: np.ndarray
    """CV operating-limit margins per interval, fractions of span; >= 0 means inside."""
    g_jac: np.ndarray


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
        self.config = config or OracleConfig()
        # A copy with a longer largest step: adaptive error control keeps it accurate, and the
        # simulator's own cap (sized for its worst case) would make the oracle too slow to run.
        self.model = copy.copy(model)
        self.model.max_step_s = max(model.max_step_s, self.config.max_step_s)
        self.dt = spec.plant.control_interval_s
        self.samples = spec.plant.samples_per_interval
        planner_h = (planner or PlannerConfig()).for_interval(self.dt).horizon
        blocks = list(self.config.blocks)
        blocks[-1] += max(0, planner_h - sum(blocks))
        self.blocks = tuple(blocks)
        self.horizon = sum(self.blocks)
        self.cost_config = planner or PlannerConfig()
        self.cv_names = [t.name for t in spec.cvs]
        self.mv_names = list(model.mv_names)
        self._index = block_of_interval(self.blocks)
        self._warm: np.ndarray | None = None
        self._calls = 0
        self.last_feasible = True
        """Whether the last decision's plan kept every CV inside its operating limits."""

    # ---- predictions ------------------------------------------------------------------

    def _simulate(
        self, x: np.ndarray, d: np.ndarray, u: np.ndarray, t0: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CVs of B plans u (B, H, n_mv): at each interval's end, and the lowest and highest
        sampled inside it, each (B, H, n_cv). NaN rows where the integrator gave up."""
        b, h = u.shape[:2]
        n_cv = len(self.cv_names)
        end = np.full((b, h, n_cv), np.nan)
        low, high = end.copy(), end.copy()
        xs = np.tile(np.asarray(x, dtype=float), (b, 1))
        alive = np.ones(b, dtype=bool)
        points = self.points_per_interval
        step = self.dt / points
        for k in range(h):
            samples = []
            for j in range(points):
                t = t0 + k * self.dt + j * step
                xs[alive] = self._advance(xs[alive], u[alive, k], d, t, step)
                alive &= np.isfinite(xs).all(axis=1)
                samples.append(self._outputs(xs, u[:, k], d, alive))
            stacked = np.stack(samples, axis=1)  # (B, points, n_cv)
            end[:, k], low[:, k], high[:, k] = stacked[:, -1], stacked.min(1), stacked.max(1)
            if not alive.any():
                break
        return end, low, high

    @property
    def points_per_interval(self) -> int:
        """Evenly spaced samples checked per control interval: the most that divide the
        interval's samples without exceeding `max_points_per_interval`."""
        cap = max(1, min(self.samples, self.config.max_points_per_interval))
        return max(p for p in range(1, cap + 1) if self.samples % p == 0)

    def _advance(
        self, xs: np.ndarray, u: np.ndarray, d: np.ndarray, t: float, step: float
    ) -> np.ndarray:
        """One sample step of a batch; rows the integrator cannot follow come back NaN."""
        if len(xs) == 0:
            return xs
        with np.errstate(all="ignore"):
            try:
                return integrate_batch(self.model, xs, u, d, t, step, rtol=self.config.rtol)
            except RuntimeError:
                if len(xs) == 1:
                    return np.full_like(xs, np.nan)
        # A row the integrator cannot follow (a numerical blow-up): find it, keep the others.
        return np.vstack(
            [self._advance(xs[i : i + 1], u[i : i + 1], d, t, step) for i in range(len(xs))]
        )

    def _outputs(
        self, xs: np.ndarray, u: np.ndarray, d: np.ndarray, alive: np.ndarray
    ) -> np.ndarray:
        out = np.full((len(xs), len(self.cv_names)), np.nan)
        for i in np.flatnonzero(alive):
            values = self.model.outputs(xs[i], u[i], d)
            out[i] = [values[n] for n in self.cv_names]
        return out

    # ---- one decision -----------------------------------------------------------------

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
        c = CostTensors.of(problem, torch.zeros(problem.n_cv), dtype=torch.float64)
        n_blocks, n_mv = len(self.blocks), problem.n_mv
        step = np.where(np.isfinite(problem.max_move), problem.max_move, problem.mv_span)
        limited = np.isfinite(problem.cv_op_lo) | np.isfinite(problem.cv_op_hi)
        block_starts = np.cumsum((0, *self.blocks[:-1]))

        def plans(v: np.ndarray) -> np.ndarray:
            """Decision rows (B, K*n_mv) -> per-interval MV values (B, H, n_mv)."""
            moves = v.reshape(len(v), n_blocks, n_mv) * step
            return (problem.u_now + np.cumsum(moves, axis=1))[:, self._index]

        def score(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """Cost (B,) and CV operating-limit margins (B, m) of decision rows (B, K*n_mv)."""
            u = plans(rows)
            end, low, high = self._simulate(x, d, u, t0)
            y = torch.as_tensor(np.nan_to_num(end, nan=0.0))
            q = torch.as_tensor(np.nan_to_num(np.stack([low, high], axis=-1), nan=0.0))
            total = plan_cost(y, q, torch.as_tensor(u), None, c, self.cost_config)["total"]
            costs = total.numpy().copy()
            failed = ~np.isfinite(end).all(axis=(1, 2))
            costs[failed] = _BIG
            span = problem.cv_span
            margin = np.concatenate(
                [
                    ((problem.cv_op_hi - high) / span)[..., limited],
                    ((low - problem.cv_op_lo) / span)[..., limited],
                ],
                axis=-1,
            ).reshape(len(rows), -1)
            margin[failed] = -1.0
            return costs, margin

        cache: dict[bytes, _Eval] = {}

        def evaluate(v: np.ndarray) -> _Eval:
            key = v.tobytes()
            if key not in cache:
                h = self.config.fd_step
                costs, margin = score(np.vstack([v, v + h * np.eye(v.size)]))
                cache[key] = _Eval(
                    cost=float(costs[0]),
                    grad=(costs[1:] - costs[0]) / h,
                    g=margin[0],
                    g_jac=((margin[1:] - margin[0]) / h).T,
                )
            return cache[key]

        # 1. Candidate plans, simulated as one batch: the warm start, hold, a move toward
        #    each of a ladder of MV levels, and random move sequences.
        starts = self._starts(problem, step, n_blocks)
        costs, margin = score(starts)
        ranks = [self._rank(cost, m) for cost, m in zip(costs, margin, strict=True)]
        first = min(range(len(starts)), key=ranks.__getitem__)
        best, best_rank = starts[first], ranks[first]
        # 2. SLSQP from the best: hard CV constraints where the start keeps inside them; where
        #    nothing tried does, the penalised cost alone (its penalty grows with the crossing).
        tri = np.kron(np.tril(np.ones((n_blocks, n_blocks))), np.diag(step))
        lin = np.vstack([tri, -tri])
        lin_b = np.concatenate(
            [
                np.tile(problem.u_now - problem.mv_lo, n_blocks),
                np.tile(problem.mv_hi - problem.u_now, n_blocks),
            ]
        )
        constraints = [{"type": "ineq", "fun": lambda v: lin @ v + lin_b, "jac": lambda v: lin}]
        if best_rank[0] == 0 and limited.any():
            constraints.append(
                {"type": "ineq", "fun": lambda v: evaluate(v).g, "jac": lambda v: evaluate(v).g_jac}
            )
        result = scipy.optimize.minimize(
            lambda v: evaluate(v).cost,
            best,
            jac=lambda v: evaluate(v).grad,
            method="SLSQP",
            bounds=[(-1.0, 1.0)] * best.size,
            constraints=constraints,
            options={"maxiter": self.config.max_iterations, "ftol": 1e-9},
        )
        final = np.clip(result.x, -1.0, 1.0)
        e = evaluate(final)
        if (final_rank := self._rank(e.cost, e.g)) <= best_rank:
            best, best_rank = final, final_rank
        self.last_feasible = best_rank[0] == 0
        u_blocks = project(plans(best[None])[0][block_starts], problem)
        self._warm = u_blocks[self._index]
        return {n: float(u_blocks[0, i]) for i, n in enumerate(self.mv_names)}

    def _starts(self, problem: PlanProblem, step: np.ndarray, n_blocks: int) -> np.ndarray:
        """Decision rows to try first: warm start, hold, MV-level ladder, random sequences."""
        n_mv = problem.n_mv
        rows = [np.zeros((n_blocks, n_mv))]
        if self._warm is not None:
            rows.append(self._moves_toward(problem, shift_plan(self._warm, self.blocks), step))
        for level in np.linspace(0.0, 1.0, self.config.ladder):
            target = problem.mv_lo + level * (problem.mv_hi - problem.mv_lo)
            rows.append(self._moves_toward(problem, np.tile(target, (n_blocks, 1)), step))
        rng = np.random.default_rng(self.config.seed + self._calls)
        self._calls += 1
        for _ in range(self.config.random_starts):
            rows.append(rng.uniform(-1.0, 1.0, (n_blocks, n_mv)))
        return np.clip(np.array([r.ravel() for r in rows]), -1.0, 1.0)

    @staticmethod
    def _moves_toward(problem: PlanProblem, targets: np.ndarray, step: np.ndarray) -> np.ndarray:
        """Moves (K, n_mv) / step that go to each block's target as fast as max_move allows."""
        u_blocks = project(targets, problem)
        return np.diff(np.vstack([problem.u_now, u_blocks]), axis=0) / step

    def _rank(self, cost: float, margin: np.ndarray) -> tuple[int, float]:
        """Plans inside the limits first, then by cost (which penalises any crossing)."""
        inside = margin.size == 0 or float(margin.min()) >= -self.config.feasibility_tol
        return (0 if inside else 1, float(cost) if math.isfinite(cost) else _BIG)
