"""Hard CV limits (safety rule 4): no proposal whose predicted band crosses one.

Engineering limits are always hard; operating limits are hard too when the planner runs in
`auto` mode. The band is the twin's outermost quantiles, disturbance-corrected, at every step
of the horizon. One check serves the optimiser three ways: it filters the sampled candidates,
it accepts or rejects the refined plan, and it says in words why no proposal could be made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from twin.plan.problem import PlanProblem


@dataclass(frozen=True)
class HardLimits:
    """The tightest hard limit on each side of each CV, in the problem's CV order."""

    lo: np.ndarray
    hi: np.ndarray
    lo_kind: tuple[str, ...]
    """"engineering" or "operating": which limit `lo` is, for the message."""
    hi_kind: tuple[str, ...]
    span: np.ndarray
    """Operating span per CV: crossings are compared as fractions of it."""

    @classmethod
    def of(cls, problem: PlanProblem, hard_operating: bool) -> HardLimits:
        lo, hi = problem.cv_eng_lo.copy(), problem.cv_eng_hi.copy()
        lo_kind = ["engineering"] * problem.n_cv
        hi_kind = ["engineering"] * problem.n_cv
        if hard_operating:
            for i in range(problem.n_cv):
                if problem.cv_op_lo[i] > lo[i]:
                    lo[i], lo_kind[i] = problem.cv_op_lo[i], "operating"
                if problem.cv_op_hi[i] < hi[i]:
                    hi[i], hi_kind[i] = problem.cv_op_hi[i], "operating"
        span = np.where(problem.cv_span > 0, problem.cv_span, 1.0)
        return cls(lo, hi, tuple(lo_kind), tuple(hi_kind), span)

    def excess(self, q_lo: torch.Tensor, q_hi: torch.Tensor) -> torch.Tensor:
        """How far the bands cross, per step, CV and side: (..., H, n_cv, 2), 0 where inside.

        q_lo, q_hi: lowest and highest corrected quantile (..., H, n_cv), engineering units.
        """
        lo = torch.as_tensor(self.lo, dtype=q_lo.dtype)
        hi = torch.as_tensor(self.hi, dtype=q_hi.dtype)
        return torch.stack([torch.relu(lo - q_lo), torch.relu(q_hi - hi)], dim=-1)

    def crossing(self, q_lo: torch.Tensor, q_hi: torch.Tensor) -> torch.Tensor:
        """Total crossing of each candidate (B,), in fractions of the CVs' spans; 0: feasible."""
        span = torch.as_tensor(self.span, dtype=q_lo.dtype)[:, None]
        return (self.excess(q_lo, q_hi) / span).sum(dim=(-3, -2, -1))

    def describe(
        self, cv_names: tuple[str, ...], q_lo: np.ndarray, q_hi: np.ndarray, interval_s: float
    ) -> str | None:
        """The worst crossing of one band (H, n_cv) in words, or None when it crosses nothing."""
        ex = self.excess(torch.as_tensor(q_lo), torch.as_tensor(q_hi)).numpy()  # (H, n_cv, 2)
        if not np.any(ex > 0):
            return None
        rel = ex / self.span[:, None]
        step, i, side = np.unravel_index(int(np.argmax(rel)), rel.shape)
        if side == 0:
            limit, kind, value, word = self.lo[i], self.lo_kind[i], q_lo[step, i], "below"
        else:
            limit, kind, value, word = self.hi[i], self.hi_kind[i], q_hi[step, i], "above"
        return (
            f"{cv_names[i]} predicted {value:.4g} {word} its {kind} limit {limit:g} "
            f"in {(step + 1) * interval_s:g} s"
        )
