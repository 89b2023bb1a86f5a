"""The planner's one typed config."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class PlannerConfig:
    """How hard and how far the planner searches; validated on construction."""

    blocks: tuple[int, ...] = (1, 1, 3, 5)
    """Move blocks in control intervals: a move at the start of each, held within it. Their sum
    is the horizon; short blocks first because only the first move is ever written."""
    min_horizon_s: float = 200.0
    """The horizon is extended (by a last, long block) to cover at least this many seconds: a
    plant with slow or inverse-response dynamics needs to see past its first reactions."""
    population: int = 96
    """CEM candidates per iteration (batched through the rollout)."""
    elites: int = 10
    """CEM candidates the next sampling distribution is fitted to."""
    cem_iterations: int = 3
    """CEM iterations before refinement."""
    cem_init_std: float = 0.3
    """Initial CEM std of each block's MV target, in units of half the MV's range."""
    cem_momentum: float = 0.1
    """Weight of the previous mean and std when refitting CEM (damps jitter)."""
    refine_iterations: int = 3
    """L-BFGS-B iterations of the scipy refinement."""
    refine_evaluations: int | None = None
    """Most cost evaluations (each with its gradient) of the refinement, its line searches
    included; when it binds, the best point evaluated is kept. None: four per iteration and the
    start (13 for 3 iterations). A line search that struggled otherwise ran to 17-24
    evaluations where 5-8 are usual: the slowest 5 % of the decisions (benchmarks/plan.py
    compares the planner with and without the cap)."""
    refine_gradient: str = "differences"
    """How the refinement gets the cost's gradient: "differences", the cost differentiated by
    central differences, 2 K n_mv + 1 plans costed in one batched evaluation (the twin is
    smooth and every cost term continuously differentiable; on one thread, where the small
    model's ops cost their dispatch, about half the CPU time of a backward pass through a
    rollout), or "autograd", backpropagation through the rollout (the planner before;
    benchmarks/plan.py compares the decisions of both)."""
    search_shortcuts: bool = True
    """Shortcuts that leave the search's decisions as they are (up to float rounding): the
    trust ratio bounded on a coarse subset of the twin's bank first (twin.plan.gating
    .TrustRatio), and the refinement's best point picked on the costs found when each point
    was evaluated, where they were predicted again in one batch. False: the planner before
    (benchmarks/plan.py times both; tests/plan/test_planning_speed.py compares their plans)."""
    cv_limit_weight: float = 1000.0
    """Penalty weight on a quantile crossing a CV operating limit (fraction of span, squared)."""
    cv_hard_weight: float = 100000.0
    """Penalty weight on a quantile crossing a CV engineering limit."""
    trust_weight: float = 10.0
    """Penalty weight on predicted latents whose OOD score exceeds the trust bound."""
    trust_slack: float = 2.5
    """Trust bound as a multiple of the twin's OOD threshold: latents rolled out by the
    predictor score higher than encoded ones even where the plant is well known, so only clear
    excursions are penalised."""
    hard_operating: bool = False
    """CV operating limits are hard, like the engineering limits: no proposal whose predicted
    band crosses one. The runtime sets this in `auto` mode (safety rule 4); otherwise they are
    soft, a penalty the engineer sees in the proposal's margins."""
    observer_latent_gain: float = 0.3
    """Kalman gain of the latent disturbance state when the twin brings no gains fitted on its
    validation block (twin.plan.observer.fit_gains); 0 turns that state off."""
    observer_output_gain: float = 0.6
    """Kalman gain of the output disturbance state when no fitted gains are given."""
    seed: int = 0
    """Seed of the sampling generator (decisions are reproducible)."""

    def __post_init__(self) -> None:
        if not self.blocks or any(b < 1 for b in self.blocks):
            raise ValueError(f"blocks {self.blocks} must be positive interval counts")
        if self.population < 2 or not 1 <= self.elites < self.population:
            raise ValueError(
                f"need population >= 2 and 1 <= elites < population, got "
                f"{self.population} and {self.elites}"
            )
        if self.cem_iterations < 0 or self.refine_iterations < 0:
            raise ValueError("iteration counts must not be negative")
        if self.refine_gradient not in ("differences", "autograd"):
            raise ValueError(f"refine_gradient {self.refine_gradient!r}: differences or autograd")
        if self.refine_evaluations is not None and self.refine_evaluations < 1:
            raise ValueError(f"refine_evaluations {self.refine_evaluations} must be at least 1")
        for name in ("observer_latent_gain", "observer_output_gain"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} {getattr(self, name)} must lie in [0, 1]")
        if self.trust_slack < 1:
            raise ValueError(f"trust_slack {self.trust_slack} must be at least 1")
        if not 0 <= self.cem_momentum < 1:
            raise ValueError(f"cem_momentum {self.cem_momentum} must lie in [0, 1)")

    def for_interval(self, control_interval_s: float) -> PlannerConfig:
        """This config with a last block added so that the horizon spans min_horizon_s."""
        needed = math.ceil(self.min_horizon_s / control_interval_s - 1e-9)
        if needed <= self.horizon:
            return self
        return replace(self, blocks=(*self.blocks, needed - self.horizon))

    @property
    def evaluation_budget(self) -> int:
        """The refinement's cost evaluations at most (refine_evaluations or its default)."""
        if self.refine_evaluations is not None:
            return self.refine_evaluations
        return 4 * self.refine_iterations + 1

    @property
    def horizon(self) -> int:
        """Control intervals predicted ahead."""
        return sum(self.blocks)
