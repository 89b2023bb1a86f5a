"""The planning cost in engineering units, batched over candidate plans.

Errors are costed as fractions of each tag's operating span so that a CV in mol/L and one in K
weigh what the spec's weights say, not what their units happen to make them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from twin.plan.problem import PlanProblem
from twin.plan.settings import PlannerConfig

TERMS = ("tracking", "moves", "economic", "cv_limits", "trust")


@dataclass(frozen=True)
class CostTensors:
    """The problem's arrays as tensors, made once per decision."""

    setpoint: torch.Tensor
    weight: torch.Tensor
    cv_span: torch.Tensor
    cv_op_lo: torch.Tensor
    cv_op_hi: torch.Tensor
    cv_eng_lo: torch.Tensor
    cv_eng_hi: torch.Tensor
    economic_cv: torch.Tensor
    economic_mv: torch.Tensor
    mv_span: torch.Tensor
    move_weight: torch.Tensor
    u_now: torch.Tensor
    offset: torch.Tensor

    @classmethod
    def of(
        cls, problem: PlanProblem, offset: torch.Tensor, dtype: torch.dtype = torch.float32
    ) -> CostTensors:
        def t(a: object) -> torch.Tensor:
            return torch.as_tensor(a, dtype=dtype)

        return cls(
            setpoint=t(torch.nan_to_num(torch.as_tensor(problem.setpoint), nan=0.0)),
            weight=t(problem.weight),
            cv_span=t(problem.cv_span),
            cv_op_lo=t(problem.cv_op_lo),
            cv_op_hi=t(problem.cv_op_hi),
            cv_eng_lo=t(problem.cv_eng_lo),
            cv_eng_hi=t(problem.cv_eng_hi),
            economic_cv=t(problem.economic_cv),
            economic_mv=t(problem.economic_mv),
            mv_span=t(problem.mv_span),
            move_weight=t(problem.move_weight),
            u_now=t(problem.u_now),
            offset=offset.to(dtype),
        )


def plan_cost(
    y: torch.Tensor,
    q: torch.Tensor,
    u: torch.Tensor,
    ood_ratio: torch.Tensor | None,
    c: CostTensors,
    config: PlannerConfig,
) -> dict[str, torch.Tensor]:
    """Cost terms of B candidate plans, each of shape (B,), plus their sum under "total".

    y: predicted CV means (B, H, n_cv); q: quantiles (B, H, n_cv, n_q), both before the
    offset-free correction, which is added here; u: MV values (B, H, n_mv); ood_ratio: OOD
    score over the twin's threshold per predicted latent (B, H), None when not available.
    """
    y = y + c.offset  # (B, H, n_cv)
    q_lo = q[..., 0] + c.offset  # (B, H, n_cv) lowest quantile
    q_hi = q[..., -1] + c.offset  # highest quantile
    err = (y - c.setpoint) / c.cv_span
    tracking = (c.weight * err.square()).sum(dim=(1, 2))
    prev = torch.cat([c.u_now.expand(u.shape[0], 1, -1), u[:, :-1]], dim=1)
    du = (u - prev) / c.mv_span  # (B, H, n_mv)
    moves = (c.move_weight * du.square()).sum(dim=(1, 2))
    economic = (c.economic_cv * y / c.cv_span).sum(dim=(1, 2)) + (
        c.economic_mv * u / c.mv_span
    ).sum(dim=(1, 2))
    over_op = torch.relu(q_hi - c.cv_op_hi) + torch.relu(c.cv_op_lo - q_lo)
    over_eng = torch.relu(q_hi - c.cv_eng_hi) + torch.relu(c.cv_eng_lo - q_lo)
    # In auto mode the operating limits are hard: the feasibility filter (twin.plan.limits)
    # decides, and the penalty only steers the search toward the feasible side.
    op_weight = config.cv_hard_weight if config.hard_operating else config.cv_limit_weight
    cv_limits = op_weight * (over_op / c.cv_span).square().sum(dim=(1, 2))
    cv_limits = cv_limits + config.cv_hard_weight * (over_eng / c.cv_span).square().sum(dim=(1, 2))
    if ood_ratio is None:
        trust = torch.zeros_like(tracking)
    else:
        trust = config.trust_weight * torch.relu(ood_ratio - 1.0).square().sum(dim=1)
    terms = {
        "tracking": tracking,
        "moves": moves,
        "economic": economic,
        "cv_limits": cv_limits,
        "trust": trust,
    }
    terms["total"] = tracking + moves + economic + cv_limits + trust
    return terms
