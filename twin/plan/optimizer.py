"""The planner: batched CEM in torch, then L-BFGS-B refinement with gradients through the rollout.

A plain function of the world model's verbs (`rollout`, `readout`, `ood_score`), so a toy linear
model, an ARX model and the JEPA twin are all planned on by the same code.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.optimize
import torch

from twin.plan.cost import CostTensors, plan_cost
from twin.plan.moves import decode, expand, hold_decision, project, to_decision
from twin.plan.problem import PlanProblem
from twin.plan.settings import PlannerConfig
from twin.plan.world import WorldModel

log = logging.getLogger(__name__)

MIN_STD = 0.05
"""CEM std floor (fraction of max_move): keeps some exploration after the elites agree."""


@dataclass
class Plan:
    """The result of one planning decision; arrays in engineering units."""

    u: np.ndarray
    """Planned MV values per control interval (H, n_mv); u[0] is the proposed move."""
    u_blocks: np.ndarray
    """Planned MV values per move block (K, n_mv)."""
    y: np.ndarray
    """Predicted CV means under the plan (H, n_cv), offset-corrected."""
    q: np.ndarray
    """Predicted CV quantiles under the plan (H, n_cv, n_q), offset-corrected."""
    ood_ratio: np.ndarray | None
    """OOD score over the trust bound per predicted interval (H,): above 1 leaves the region
    the twin knows; None if the model has no OOD score."""
    costs: dict[str, float]
    """Cost terms of the final plan (see twin.plan.cost.TERMS) and their total."""
    cem_cost: float
    """Best total cost CEM found before refinement."""
    refined: bool
    """Whether the scipy refinement improved on CEM."""
    elapsed_ms: float
    """Wall time of the decision."""
    hold_costs: dict[str, float] = field(default_factory=dict)
    """Cost terms of never moving, for comparison."""
    hold_y: np.ndarray | None = None
    """Predicted CV means if nothing moves (H, n_cv), offset-corrected."""
    hold_q: np.ndarray | None = None
    """Predicted CV quantiles if nothing moves (H, n_cv, n_q), offset-corrected."""


class PlanObjective:
    """Batched cost of decision variables through decode -> rollout -> readout -> cost."""

    def __init__(
        self,
        model: WorldModel,
        z0: torch.Tensor,
        problem: PlanProblem,
        config: PlannerConfig,
        offset: np.ndarray,
    ) -> None:
        self.model = model
        self.z0 = z0.reshape(1, -1)  # (1, D)
        self.dtype = z0.dtype
        self.problem = problem
        self.config = config
        self.c = CostTensors.of(problem, torch.as_tensor(offset), dtype=self.dtype)
        threshold = float(getattr(model, "ood_threshold", math.inf) or math.inf)
        self.threshold = threshold if math.isfinite(threshold) and threshold > 0 else None
        # The trust bound: the twin's threshold times a slack, because latents rolled out by the
        # predictor score higher than encoded ones even where the plant is well known.
        self.bound = config.trust_slack

    def predict(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """MV values (B, H, n_mv) -> y (B, H, n_cv), q (B, H, n_cv, n_q), ood ratio (B, H)
        (None when the model has no finite OOD threshold)."""
        b, h, _ = u.shape
        zs = self.model.rollout(self.z0.expand(b, -1), u.to(self.dtype))  # (B, H, D)
        y, q = self.model.readout(zs)
        ratio = None
        if self.threshold is not None:
            ratio = self.model.ood_score(zs.reshape(b * h, -1)).reshape(b, h) / self.threshold
            ratio = ratio / self.bound
        return y, q, ratio

    def terms(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Decision variables (B, K, n_mv) -> cost terms (each (B,)) and MV values (B, H, n_mv)."""
        u = expand(decode(x, self.problem), self.config.blocks)  # (B, H, n_mv)
        y, q, ratio = self.predict(u)
        return plan_cost(y, q, u, ratio, self.c, self.config), u


def plan(
    model: WorldModel,
    z0: torch.Tensor,
    problem: PlanProblem,
    config: PlannerConfig,
    offset: np.ndarray | None = None,
    warm_blocks: np.ndarray | None = None,
) -> Plan:
    """One planning decision from the current latent.

    z0: current latent (D,) or (1, D); offset: measured CV minus readout of z0 (n_cv,), added
    to every prediction (offset-free control); warm_blocks: a previous block plan (K, n_mv) to
    start the search from. Raises PlanInfeasible when the MV limits cannot be met from u_now.
    """
    start = time.perf_counter()
    problem.check_feasible()
    offset = np.zeros(problem.n_cv) if offset is None else np.asarray(offset, dtype=float)
    obj = PlanObjective(model, z0.detach(), problem, config, offset)
    k, n_mv = len(config.blocks), problem.n_mv
    gen = torch.Generator().manual_seed(config.seed)

    with torch.inference_mode():
        hold_x = torch.as_tensor(hold_decision(problem, k))
        x0 = hold_x
        if warm_blocks is not None:
            x0 = torch.as_tensor(to_decision(project(warm_blocks, problem), problem))
        best_x, best_cost = _cem(obj, x0, hold_x, config, gen)

    refined_x, refined_cost = _refine(obj, best_x, best_cost, config)
    refined = refined_cost < best_cost
    x = refined_x if refined else best_x

    with torch.inference_mode():
        u_blocks = project(decode(x[None].double(), problem)[0].numpy(), problem)
        u_feasible = expand(torch.as_tensor(u_blocks)[None], config.blocks)  # (1, H, n_mv)
        hold = torch.as_tensor(problem.u_now).expand(1, config.horizon, n_mv)
        both = torch.cat([u_feasible, hold]).to(obj.dtype)  # (2, H, n_mv): plan and hold
        y2, q2, ratio2 = obj.predict(both)
        terms2 = plan_cost(y2, q2, both, ratio2, obj.c, config)
        y, q, y_h, q_h = y2[:1], q2[:1], y2[1:], q2[1:]
        ratio = None if ratio2 is None else ratio2[:1]
        terms = {n: v[:1] for n, v in terms2.items()}
        hold_terms = {n: v[1:] for n, v in terms2.items()}
    off = torch.as_tensor(offset, dtype=y.dtype)
    return Plan(
        u=u_feasible[0].numpy().astype(float),
        u_blocks=u_blocks,
        y=(y[0] + off).double().numpy(),
        q=(q[0] + off[:, None]).double().numpy(),
        ood_ratio=None if ratio is None else ratio[0].double().numpy(),
        costs={n: float(v[0]) for n, v in terms.items()},
        cem_cost=float(best_cost),
        refined=refined,
        elapsed_ms=1000.0 * (time.perf_counter() - start),
        hold_costs={n: float(v[0]) for n, v in hold_terms.items()},
        hold_y=(y_h[0] + off).double().numpy(),
        hold_q=(q_h[0] + off[:, None]).double().numpy(),
    )


def _cem(
    obj: PlanObjective,
    x0: torch.Tensor,
    hold_x: torch.Tensor,
    config: PlannerConfig,
    gen: torch.Generator,
) -> tuple[torch.Tensor, float]:
    """Cross-entropy search around x0 (K, n_mv); returns the best candidate and its cost."""
    mean = x0.to(obj.dtype)
    std = torch.full_like(mean, config.cem_init_std)
    # Always score the warm start and "hold" so that the search can only improve on them.
    fixed = torch.stack([mean, hold_x.to(obj.dtype)])
    best_x, best_cost = mean, math.inf
    for it in range(config.cem_iterations):
        noise = torch.randn(
            (config.population, *mean.shape), generator=gen, dtype=torch.float64
        ).to(obj.dtype)
        x = (mean + std * noise).clamp(-1.0, 1.0)  # (P, K, n_mv)
        if it == 0:
            x[: len(fixed)] = fixed
        x[-1] = best_x if math.isfinite(best_cost) else mean
        total = obj.terms(x)[0]["total"]
        total = torch.nan_to_num(total, nan=math.inf)
        costs, order = torch.sort(total)
        if float(costs[0]) < best_cost:
            best_cost, best_x = float(costs[0]), x[order[0]].clone()
        elite = x[order[: config.elites]]  # (E, K, n_mv)
        m = config.cem_momentum
        mean = m * mean + (1 - m) * elite.mean(dim=0)
        std = (m * std + (1 - m) * elite.std(dim=0)).clamp_min(MIN_STD)
    if not math.isfinite(best_cost):
        best_x = x0.to(obj.dtype)
        with torch.inference_mode():
            best_cost = float(obj.terms(best_x[None])[0]["total"][0])
    return best_x, best_cost


def _refine(
    obj: PlanObjective, x0: torch.Tensor, start_cost: float, config: PlannerConfig
) -> tuple[torch.Tensor, float]:
    """A few L-BFGS-B iterations on x in [-1, 1] with autograd gradients through the rollout."""
    if config.refine_iterations == 0:
        return x0, math.inf
    shape = x0.shape
    # L-BFGS-B's stopping tests are absolute: scale the cost to about 1 at the start so that a
    # plant whose costs are small numbers still gets its iterations.
    scale = 1.0 / max(abs(start_cost), 1e-12) if math.isfinite(start_cost) else 1.0
    # Precondition: a block held for L intervals weighs about L times more in the cost, so the
    # search runs on v = x * sqrt(L), which makes the curvature of every block alike.
    w = np.repeat(np.sqrt(np.asarray(config.blocks, dtype=float)), shape[1])  # (K * n_mv,)

    def fun(v: np.ndarray) -> tuple[float, np.ndarray]:
        x = torch.tensor((v / w).reshape(shape), dtype=obj.dtype, requires_grad=True)
        with torch.enable_grad():
            total = obj.terms(x[None])[0]["total"][0]
            (grad,) = torch.autograd.grad(total, x)
        value = float(total.detach()) * scale
        g = grad.double().numpy().ravel() * scale / w
        if not (math.isfinite(value) and np.all(np.isfinite(g))):
            return math.inf, np.zeros_like(v)
        return value, g

    result = scipy.optimize.minimize(
        fun,
        x0.double().numpy().ravel() * w,
        jac=True,
        method="L-BFGS-B",
        bounds=[(-wi, wi) for wi in w],
        options={
            "maxiter": config.refine_iterations,
            "maxfun": config.refine_iterations + 3,
            "ftol": 1e-12,
            "gtol": 1e-10,
        },
    )
    if not math.isfinite(float(result.fun)):
        return x0, math.inf
    x = torch.as_tensor((result.x / w).reshape(shape), dtype=obj.dtype)
    return x, float(result.fun) / scale
