"""One planning problem: limits, targets and weights as arrays in the twin's tag order."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from twin.errors import TwinError
from twin.spec import PlantSpec


class PlanInfeasible(TwinError):
    """No plan can satisfy the MV limits and max_move from the current MV values."""


Range = tuple[float, float]


@dataclass(frozen=True)
class PlanProblem:
    """Everything the cost and the move parameterisation need, in engineering units.

    MV arrays have shape (n_mv,), CV arrays (n_cv,), both in the order of `mv_names` and
    `cv_names` (the twin's order).
    """

    mv_names: tuple[str, ...]
    cv_names: tuple[str, ...]
    u_now: np.ndarray
    """Current MV values: the first move is measured from here."""
    mv_lo: np.ndarray
    """Lower MV bound: the tighter of the engineering and the operator limit."""
    mv_hi: np.ndarray
    """Upper MV bound: the tighter of the engineering and the operator limit."""
    max_move: np.ndarray
    """Largest change per control interval."""
    mv_span: np.ndarray
    """MV operating span: moves are costed as fractions of it."""
    move_weight: np.ndarray
    """Move-suppression weight per MV."""
    setpoint: np.ndarray
    """CV targets; NaN where a CV has none."""
    weight: np.ndarray
    """Tracking weight per CV (0 where a CV has no setpoint)."""
    cv_span: np.ndarray
    """CV operating span: tracking errors and limit crossings are fractions of it."""
    cv_op_lo: np.ndarray
    cv_op_hi: np.ndarray
    cv_eng_lo: np.ndarray
    cv_eng_hi: np.ndarray
    economic_cv: np.ndarray
    """Linear economic cost per unit of each CV (0: none)."""
    economic_mv: np.ndarray
    """Linear economic cost per unit of each MV (0: none)."""
    interval_s: float = 1.0
    """Length of one predicted interval (the control interval), s."""

    @property
    def n_mv(self) -> int:
        return len(self.mv_names)

    @property
    def n_cv(self) -> int:
        return len(self.cv_names)

    def first_move_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Where the first move may land: inside the bounds and within max_move of u_now."""
        lo = np.maximum(self.mv_lo, self.u_now - self.max_move)
        hi = np.minimum(self.mv_hi, self.u_now + self.max_move)
        return lo, hi

    def check_feasible(self) -> None:
        """Raise PlanInfeasible (naming the MV) when no first move satisfies every limit."""
        for i, name in enumerate(self.mv_names):
            if not math.isfinite(self.u_now[i]):
                raise PlanInfeasible(f"current value of MV {name!r} is missing")
        lo, hi = self.first_move_range()
        for i, name in enumerate(self.mv_names):
            if lo[i] > hi[i]:
                raise PlanInfeasible(
                    f"MV {name!r} is at {self.u_now[i]:g}, more than max_move "
                    f"{self.max_move[i]:g} outside its limits [{self.mv_lo[i]:g}, "
                    f"{self.mv_hi[i]:g}]; bring it inside by hand"
                )

    @classmethod
    def from_spec(
        cls,
        spec: PlantSpec,
        u_now: Mapping[str, float],
        *,
        cv_names: Sequence[str] | None = None,
        mv_names: Sequence[str] | None = None,
        setpoints: Mapping[str, float] | None = None,
        operating: Mapping[str, Range] | None = None,
    ) -> PlanProblem:
        """Build the problem from the spec's limits and objective.

        `setpoints` override the spec's (a scenario's schedule, the control room);
        `operating` overrides operator limits per tag (edited in the control room), clipped to
        the engineering limits because those are never crossed.
        """
        cv_names = tuple(cv_names if cv_names is not None else [t.name for t in spec.cvs])
        mv_names = tuple(mv_names if mv_names is not None else [t.name for t in spec.mvs])
        operating = dict(operating or {})
        targets = dict(spec.objective.setpoints)
        targets.update(setpoints or {})

        def op(name: str) -> Range:
            tag = spec.tag(name)
            lo, hi = operating.get(name, tag.operating_limits)
            elo, ehi = tag.limits
            return max(lo, elo), min(hi, ehi)

        mvs = [spec.tag(n) for n in mv_names]
        cvs = [spec.tag(n) for n in cv_names]
        mv_op = np.array([op(n) for n in mv_names], dtype=float).reshape(-1, 2)
        cv_op = np.array([op(n) for n in cv_names], dtype=float).reshape(-1, 2)
        cv_eng = np.array([t.limits for t in cvs], dtype=float).reshape(-1, 2)
        setpoint = np.array([targets.get(n, math.nan) for n in cv_names], dtype=float)
        has_sp = np.isfinite(setpoint)
        weight = (
            np.array([spec.objective.weights.get(n, 1.0) for n in cv_names], dtype=float) * has_sp
        )
        econ = spec.objective.economic
        problem = cls(
            mv_names=mv_names,
            cv_names=cv_names,
            u_now=np.array([u_now.get(n, math.nan) for n in mv_names], dtype=float),
            mv_lo=mv_op[:, 0],
            mv_hi=mv_op[:, 1],
            max_move=np.array([t.max_move for t in mvs], dtype=float),
            mv_span=mv_op[:, 1] - mv_op[:, 0],
            move_weight=np.array(
                [spec.objective.move_weights.get(n, 0.0) for n in mv_names], dtype=float
            ),
            setpoint=setpoint,
            weight=weight,
            cv_span=cv_op[:, 1] - cv_op[:, 0],
            cv_op_lo=cv_op[:, 0],
            cv_op_hi=cv_op[:, 1],
            cv_eng_lo=cv_eng[:, 0],
            cv_eng_hi=cv_eng[:, 1],
            economic_cv=np.array([econ.get(n, 0.0) for n in cv_names], dtype=float),
            economic_mv=np.array([econ.get(n, 0.0) for n in mv_names], dtype=float),
            interval_s=spec.plant.control_interval_s,
        )
        return problem
