"""The move parameterisation: MV limits and max_move hold by construction, never by penalty.

A plan is a block of decision variables s in [-1, 1], one per move block and MV, that name a
target inside the MV's bounds (-1: the lower bound, 1: the upper). Block k moves each MV toward
its target by at most max_move from the previous block's value. Whatever the optimiser does to
s, every decoded plan satisfies the engineering limits, the operator limits and max_move; the
float64 `project` repeats the same map on the final plan so that what is proposed never depends
on float32 rounding. Absolute targets (rather than moves) keep the refinement well conditioned:
where max_move does not bind, the map is the identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from twin.plan.problem import PlanProblem


def block_of_interval(blocks: Sequence[int]) -> np.ndarray:
    """Index of the move block each control interval belongs to, shape (H,)."""
    return np.repeat(np.arange(len(blocks)), blocks)


def decode(x: torch.Tensor, problem: PlanProblem) -> torch.Tensor:
    """Decision variables (B, K, n_mv) -> absolute MV values per block (B, K, n_mv)."""
    dtype, device = x.dtype, x.device
    lo = torch.as_tensor(problem.mv_lo, dtype=dtype, device=device)  # (n_mv,)
    hi = torch.as_tensor(problem.mv_hi, dtype=dtype, device=device)
    mm = torch.as_tensor(problem.max_move, dtype=dtype, device=device)
    u = torch.as_tensor(problem.u_now, dtype=dtype, device=device).expand(x.shape[0], -1)
    target = lo + (x.clamp(-1.0, 1.0) + 1.0) * 0.5 * (hi - lo)  # (B, K, n_mv)
    out = []
    for k in range(x.shape[1]):
        step_lo = torch.maximum(lo, u - mm)  # (B, n_mv)
        step_hi = torch.minimum(hi, u + mm)
        u = torch.clamp(target[:, k], min=step_lo, max=step_hi)
        out.append(u)
    return torch.stack(out, dim=1)  # (B, K, n_mv)


def expand(u_blocks: torch.Tensor, blocks: Sequence[int]) -> torch.Tensor:
    """Per-block MV values (B, K, n_mv) -> per-interval MV values (B, H, n_mv)."""
    index = torch.as_tensor(block_of_interval(blocks), device=u_blocks.device)
    return u_blocks.index_select(1, index)


def project(u_blocks: np.ndarray, problem: PlanProblem) -> np.ndarray:
    """Float64 projection of a block plan (K, n_mv) onto the feasible set, block by block.

    The projection of a feasible plan is itself (up to rounding), so applying it to the final
    plan is the last, unconditional enforcement of the limits before anything is proposed.
    """
    u_prev = problem.u_now.astype(float)
    out = np.empty_like(u_blocks, dtype=float)
    for k in range(u_blocks.shape[0]):
        lo = np.maximum(problem.mv_lo, u_prev - problem.max_move)
        hi = np.minimum(problem.mv_hi, u_prev + problem.max_move)
        u_prev = np.minimum(np.maximum(u_blocks[k], lo), hi)
        out[k] = u_prev
    return out


def to_decision(u_blocks: np.ndarray, problem: PlanProblem) -> np.ndarray:
    """Block plan (K, n_mv) -> decision variables (K, n_mv) that decode to it (warm starts)."""
    span = np.maximum(problem.mv_hi - problem.mv_lo, 1e-12)
    return np.clip(2.0 * (u_blocks - problem.mv_lo) / span - 1.0, -1.0, 1.0)


def hold_decision(problem: PlanProblem, n_blocks: int) -> np.ndarray:
    """Decision variables (K, n_mv) of never moving (or the smallest move into the bounds)."""
    return to_decision(np.tile(problem.u_now, (n_blocks, 1)), problem)


def shift_plan(u_intervals: np.ndarray, blocks: Sequence[int], steps: int = 1) -> np.ndarray:
    """Last decision's per-interval plan (H, n_mv), advanced `steps` intervals (the last value
    held past its end) -> block plan (K, n_mv).

    Used as the warm start: what was planned for the next intervals is the first guess now.
    """
    steps = min(max(int(steps), 0), len(u_intervals) - 1)
    shifted = np.vstack([u_intervals[steps:], np.repeat(u_intervals[-1:], steps, axis=0)])
    starts = np.concatenate([[0], np.cumsum(blocks)[:-1]])
    starts = np.minimum(starts, len(shifted) - 1)
    return shifted[starts]


def violations(u_intervals: np.ndarray, problem: PlanProblem, tol: float = 1e-9) -> list[str]:
    """Every MV limit or max_move breach of a per-interval plan (H, n_mv); empty when none."""
    found = []
    prev = problem.u_now
    for t, u in enumerate(u_intervals):
        for i, name in enumerate(problem.mv_names):
            scale = tol * max(1.0, abs(problem.mv_hi[i]), abs(problem.mv_lo[i]))
            if u[i] < problem.mv_lo[i] - scale or u[i] > problem.mv_hi[i] + scale:
                found.append(
                    f"interval {t}: {name}={u[i]:g} outside [{problem.mv_lo[i]:g}, "
                    f"{problem.mv_hi[i]:g}]"
                )
            if abs(u[i] - prev[i]) > problem.max_move[i] + scale:
                found.append(
                    f"interval {t}: {name} moves {u[i] - prev[i]:g} > max_move "
                    f"{problem.max_move[i]:g}"
                )
        prev = u
    return found
