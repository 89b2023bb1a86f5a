"""The planner: batched CEM in torch, then L-BFGS-B refinement on batched cost evaluations.

A plain function of the world model's verbs (`rollout`, `readout`, `ood_score`), so a toy linear
model, an ARX model and the JEPA twin are all planned on by the same code.

Hard CV limits (twin.plan.limits) are constraints, not only penalties: candidates whose band
crosses one rank behind every candidate that does not, the refined plan is kept only if it
crosses nothing the sampled best did not, and the final plan is checked once more. When no plan
(holding included) keeps the band inside, the Plan says so and no proposal is made.
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
from twin.plan.gating import TrustRatio
from twin.plan.limits import HardLimits
from twin.plan.moves import decode, expand, hold_decision, project, to_decision
from twin.plan.observer import rollout_disturbed
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
    refusal: str | None = None
    """Why no plan may be proposed: every plan found, holding included, has a band crossing a
    hard CV limit (the worst crossing of the best plan and of holding, in words). None: the plan
    keeps every hard limit."""


class PlanObjective:
    """Batched cost of decision variables through decode -> rollout -> readout -> cost."""

    def __init__(
        self,
        model: WorldModel,
        z0: torch.Tensor,
        problem: PlanProblem,
        config: PlannerConfig,
        offset: np.ndarray,
        latent: torch.Tensor | None = None,
    ) -> None:
        self.model = model
        self.z0 = z0.reshape(1, -1)  # (1, D)
        self.dtype = z0.dtype
        self.problem = problem
        self.config = config
        self.latent = None if latent is None else latent.to(self.dtype)
        self.c = CostTensors.of(problem, torch.as_tensor(offset), dtype=self.dtype)
        self.limits = HardLimits.of(problem, config.hard_operating)
        threshold = float(getattr(model, "ood_threshold", math.inf) or math.inf)
        # The trust bound: the twin's threshold times a slack, because latents rolled out by the
        # predictor score higher than encoded ones even where the plant is well known.
        self.trust = (
            TrustRatio(model, threshold, config.trust_slack, config.search_shortcuts)
            if math.isfinite(threshold) and threshold > 0
            else None
        )

    def predict(
        self, u: torch.Tensor, exact: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """MV values (B, H, n_mv) -> y (B, H, n_cv), q (B, H, n_cv, n_q), ood ratio over the
        trust bound (B, H) (None when the model has no finite OOD threshold).

        exact=False (the search): the ratio is exact only where it may exceed 1 and an upper
        bound at most 1 elsewhere (twin.plan.gating.TrustRatio), which leaves the trust cost and
        its gradient as they are."""
        b, h, _ = u.shape
        zs = rollout_disturbed(self.model, self.z0.expand(b, -1), u.to(self.dtype), self.latent)
        y, q = self.model.readout(zs)
        ratio = None
        if self.trust is not None:
            flat = zs.reshape(b * h, -1)
            score = self.trust.exact if exact else self.trust.bounded
            ratio = score(flat).reshape(b, h)
        return y, q, ratio

    def crossing(self, q: torch.Tensor) -> torch.Tensor:
        """Hard-limit crossing (B,) of uncorrected quantiles (B, H, n_cv, n_q); 0: feasible."""
        return self.limits.crossing(q[..., 0] + self.c.offset, q[..., -1] + self.c.offset)

    def terms(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Decision variables (B, K, n_mv) -> cost terms (each (B,)), MV values (B, H, n_mv) and
        the hard-limit crossing (B,)."""
        u = expand(decode(x, self.problem), self.config.blocks)  # (B, H, n_mv)
        y, q, ratio = self.predict(u, exact=False)
        return plan_cost(y, q, u, ratio, self.c, self.config), u, self.crossing(q)


def plan(
    model: WorldModel,
    z0: torch.Tensor,
    problem: PlanProblem,
    config: PlannerConfig,
    offset: np.ndarray | None = None,
    warm_blocks: np.ndarray | None = None,
    latent: torch.Tensor | None = None,
) -> Plan:
    """One planning decision from the current latent.

    z0: current latent (D,) or (1, D); offset: output disturbance (n_cv,) added to every
    predicted CV and quantile; latent: latent disturbance (D,) added after every predicted
    interval (both from twin.plan.observer; offset-free control); warm_blocks: a previous block
    plan (K, n_mv) to start the search from. Raises PlanInfeasible when the MV limits cannot be
    met from u_now; a plan whose band crosses a hard CV limit comes back with `refusal` set.
    """
    start = time.perf_counter()
    problem.check_feasible()
    offset = np.zeros(problem.n_cv) if offset is None else np.asarray(offset, dtype=float)
    obj = PlanObjective(model, z0.detach(), problem, config, offset, latent)
    k, n_mv = len(config.blocks), problem.n_mv
    gen = torch.Generator().manual_seed(config.seed)

    with torch.inference_mode():
        hold_x = torch.as_tensor(hold_decision(problem, k))
        x0 = hold_x
        if warm_blocks is not None:
            x0 = torch.as_tensor(to_decision(project(warm_blocks, problem), problem))
        best = _cem(obj, x0, hold_x, config, gen)

    x, refined = _refine(obj, best, config), False
    if x is None:
        x = best.x
    else:
        refined = True

    with torch.inference_mode():
        u_blocks = project(decode(x[None].double(), problem)[0].numpy(), problem)
        hold_blocks = project(np.tile(problem.u_now, (k, 1)), problem)
        hold = torch.as_tensor(problem.u_now).expand(1, config.horizon, n_mv)
        candidates = [torch.as_tensor(b)[None] for b in (u_blocks, hold_blocks)]
        plans = expand(torch.cat(candidates), config.blocks)  # (2, H, n_mv)
        every = torch.cat([plans, hold]).to(obj.dtype)  # plan, hold inside bounds, true hold
        y3, q3, ratio3 = obj.predict(every)
        terms3 = plan_cost(y3, q3, every, ratio3, obj.c, config)
        crossing = obj.crossing(q3)
        # The final check: a plan that crosses a hard limit where holding does not is
        # replaced by holding (float64 projection or refinement may have nudged it over).
        pick = 1 if float(crossing[0]) > 0 and float(crossing[1]) == 0 else 0
        if pick:
            u_blocks = hold_blocks
        y, q, y_h, q_h = y3[pick : pick + 1], q3[pick : pick + 1], y3[2:], q3[2:]
        ratio = None if ratio3 is None else ratio3[pick : pick + 1]
        terms = {n: v[pick : pick + 1] for n, v in terms3.items()}
        hold_terms = {n: v[2:] for n, v in terms3.items()}
        refusal = None
        if float(crossing[pick]) > 0:
            refusal = _refusal(obj, q3[pick], q3[1], offset)
    off = torch.as_tensor(offset, dtype=y.dtype)
    u_feasible = plans[pick : pick + 1]
    return Plan(
        u=u_feasible[0].numpy().astype(float),
        u_blocks=u_blocks,
        y=(y[0] + off).double().numpy(),
        q=(q[0] + off[:, None]).double().numpy(),
        ood_ratio=None if ratio is None else ratio[0].double().numpy(),
        costs={n: float(v[0]) for n, v in terms.items()},
        cem_cost=float(best.cost),
        refined=refined and pick == 0,
        elapsed_ms=1000.0 * (time.perf_counter() - start),
        hold_costs={n: float(v[0]) for n, v in hold_terms.items()},
        hold_y=(y_h[0] + off).double().numpy(),
        hold_q=(q_h[0] + off[:, None]).double().numpy(),
        refusal=refusal,
    )


def _refusal(
    obj: PlanObjective, q_plan: torch.Tensor, q_hold: torch.Tensor, off: np.ndarray
) -> str:
    """Why nothing may be proposed: the worst crossing of the best plan and of holding."""
    names, dt = obj.problem.cv_names, obj.problem.interval_s
    plan_says, hold_says = (
        obj.limits.describe(
            names, q[..., 0].double().numpy() + off, q[..., -1].double().numpy() + off, dt
        )
        for q in (q_plan, q_hold)
    )
    return (
        f"no plan keeps the predicted band inside the hard CV limits: with the best plan "
        f"{plan_says}; holding (within the MV limits), {hold_says}"
    )


@dataclass
class _Best:
    """The best candidate so far: feasible ones (crossing 0) first, then by cost."""

    x: torch.Tensor
    cost: float
    crossing: float

    def beaten_by(self, cost: float, crossing: float) -> bool:
        if crossing > 0 or self.crossing > 0:
            return crossing < self.crossing or (crossing == self.crossing and cost < self.cost)
        return cost < self.cost


def _cem(
    obj: PlanObjective,
    x0: torch.Tensor,
    hold_x: torch.Tensor,
    config: PlannerConfig,
    gen: torch.Generator,
) -> _Best:
    """Cross-entropy search around x0 (K, n_mv); returns the best candidate found.

    Candidates that keep the hard CV limits rank ahead of every one that does not (those by how
    far they cross), so the elites leave an infeasible region by the shortest way.
    """
    mean = x0.to(obj.dtype)
    std = torch.full_like(mean, config.cem_init_std)
    # Always score the warm start and "hold" so that the search can only improve on them.
    fixed = torch.stack([mean, hold_x.to(obj.dtype)])
    best = _Best(mean, math.inf, math.inf)
    for it in range(config.cem_iterations):
        noise = torch.randn(
            (config.population, *mean.shape), generator=gen, dtype=torch.float64
        ).to(obj.dtype)
        x = (mean + std * noise).clamp(-1.0, 1.0)  # (P, K, n_mv)
        if it == 0:
            x[: len(fixed)] = fixed
        x[-1] = best.x
        terms, _, crossing = obj.terms(x)
        total = torch.nan_to_num(terms["total"].double(), nan=math.inf)
        crossing = torch.nan_to_num(crossing.double(), nan=math.inf)
        feasible = crossing <= 0
        worst = float(total[feasible & torch.isfinite(total)].max()) if feasible.any() else 0.0
        rank = torch.where(feasible, total, abs(worst) + 1.0 + crossing * 1e6)
        order = torch.argsort(rank)
        top = int(order[0])
        if best.beaten_by(float(total[top]), float(crossing[top])):
            best = _Best(x[top].clone(), float(total[top]), float(crossing[top]))
        elite = x[order[: config.elites]]  # (E, K, n_mv)
        m = config.cem_momentum
        mean = m * mean + (1 - m) * elite.mean(dim=0)
        std = (m * std + (1 - m) * elite.std(dim=0)).clamp_min(MIN_STD)
    if not math.isfinite(best.cost):
        with torch.inference_mode():
            terms, _, crossing = obj.terms(best.x[None])
        best = _Best(best.x, float(terms["total"][0]), float(crossing[0]))
    return best


DIFFERENCE_STEP = 1e-3
"""Step of the refinement's central differences in decision units (1 = half an MV's range)."""


def _differences(
    obj: PlanObjective, x: np.ndarray, shape: torch.Size
) -> tuple[float, np.ndarray, float]:
    """Cost, its gradient and the hard-limit crossing at decision variables x (K * n_mv,): the
    cost differentiated by central differences, all 2 K n_mv + 1 plans costed in one batched
    evaluation (a step is shortened at a bound of [-1, 1]).

    The twin is smooth and every cost term is continuously differentiable in the predictions
    (squares, and squares of the penalties that start at a limit or at the trust bound), so
    the differences are the gradient up to O(h^2) and float rounding: no autograd pass."""
    n = x.size
    i = np.arange(n)
    xs = np.tile(x, (2 * n + 1, 1))  # (2n + 1, n): x, then x + h e_i and x - h e_i per i
    xs[1 + 2 * i, i] += DIFFERENCE_STEP
    xs[2 + 2 * i, i] -= DIFFERENCE_STEP
    xs = np.clip(xs, -1.0, 1.0)
    step = xs[1 + 2 * i, i] - xs[2 + 2 * i, i]  # (n,)
    with torch.inference_mode():
        x_all = torch.as_tensor(xs.reshape(-1, *shape), dtype=obj.dtype)
        u = expand(decode(x_all, obj.problem), obj.config.blocks)  # (2n + 1, H, n_mv)
        y, q, ratio = obj.predict(u, exact=False)
        total = plan_cost(y, q, u.to(obj.dtype), ratio, obj.c, obj.config)["total"].double()
        crossing = float(obj.crossing(q[:1])[0])
    g = (total[1::2] - total[2::2]).numpy() / step
    return float(total[0]), g, crossing


class _Spent(Exception):
    """The refinement's evaluation budget is used up (raised from inside scipy's loop)."""


def _refine(obj: PlanObjective, start: _Best, config: PlannerConfig) -> torch.Tensor | None:
    """A few L-BFGS-B iterations on x in [-1, 1], with the cost differentiated by central
    differences in one batched evaluation (config.refine_gradient "differences": on one CPU
    thread the model's cost is in dispatching its small ops, so 2 K n_mv + 1 plans at once
    cost less than one plan's rollout and backward pass) or by autograd through the rollout
    ("autograd").

    The refinement minimises the penalised cost; its result is kept only if it beats the
    sampled best on the hard limits first and the cost second (None otherwise). At most
    config.evaluation_budget cost evaluations (when they run out inside a line search, the
    search stops there); of every point evaluated, the best is returned, ranked on the cost
    and crossing found when it was evaluated (not predicted again).
    """
    if config.refine_iterations == 0:
        return None
    x0, start_cost = start.x, start.cost
    shape = x0.shape
    # L-BFGS-B's stopping tests are absolute: scale the cost to about 1 at the start so that a
    # plant whose costs are small numbers still gets its iterations.
    scale = 1.0 / max(abs(start_cost), 1e-12) if math.isfinite(start_cost) else 1.0
    # Precondition: a block held for L intervals weighs about L times more in the cost, so the
    # search runs on v = x * sqrt(L), which makes the curvature of every block alike.
    w = np.repeat(np.sqrt(np.asarray(config.blocks, dtype=float)), shape[1])  # (K * n_mv,)
    budget = config.evaluation_budget
    seen: list[_Best] = []  # every point evaluated (x), its cost and crossing

    def fun(v: np.ndarray) -> tuple[float, np.ndarray]:
        if len(seen) >= budget:
            raise _Spent
        if config.refine_gradient == "differences":
            value, grad, crossing = _differences(obj, v / w, shape)
        else:
            x = torch.tensor((v / w).reshape(shape), dtype=obj.dtype, requires_grad=True)
            with torch.enable_grad():
                terms, _, crossed = obj.terms(x[None])
                total = terms["total"][0]
                (g_x,) = torch.autograd.grad(total, x)
            value, grad = float(total.detach()), g_x.double().numpy().ravel()
            crossing = float(crossed[0].detach())
        x_seen = torch.as_tensor(v / w, dtype=obj.dtype).reshape(shape)
        seen.append(_Best(x_seen, _finite(value), _finite(crossing)))
        value *= scale
        g = grad * scale / w
        if not (math.isfinite(value) and np.all(np.isfinite(g))):
            value, g = math.inf, np.zeros_like(v)
        return value, g

    try:
        scipy.optimize.minimize(
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
    except _Spent:
        pass
    # Of every point evaluated, the best on the hard limits first and the cost second
    # (scipy's last iterate is one of them; one on a hard limit's edge may cross it by a
    # rounding, where a point just inside does not).
    if seen and not config.search_shortcuts:  # the planner before: all predicted again
        xs = torch.stack([p.x for p in seen])
        with torch.inference_mode():
            terms, _, crossing = obj.terms(xs)
        seen = [
            _Best(x, _finite(float(t)), _finite(float(c)))
            for x, t, c in zip(xs, terms["total"], crossing, strict=True)
        ]
    best = start
    for point in seen:
        if best.beaten_by(point.cost, point.crossing):
            best = point
    return None if best is start else best.x


def _finite(value: float) -> float:
    """NaN (a prediction that broke down) ranks last, as infinity."""
    return math.inf if math.isnan(value) else value
