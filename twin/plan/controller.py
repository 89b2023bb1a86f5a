"""One decision per control interval: window of recent data -> gate -> plan -> Proposal.

Holds what carries over between decisions: the previous plan (warm start) and the disturbance
observer (offset-free correction, twin.plan.observer).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import datetime, timedelta

import numpy as np
import torch

from twin.plan.cost import plan_cost
from twin.plan.gating import gate, ood_ratio
from twin.plan.moves import shift_plan, violations
from twin.plan.observer import (
    MAX_GAP,
    DisturbanceObserver,
    ObserverGains,
    horizon_amplification,
    latent_floor,
    settling_gain,
)
from twin.plan.optimizer import Plan, PlanObjective, plan
from twin.plan.problem import PlanInfeasible, PlanProblem
from twin.plan.proposal import Band, NoProposal, Proposal
from twin.plan.settings import PlannerConfig
from twin.plan.world import WorldModel
from twin.spec import PlantSpec

log = logging.getLogger(__name__)

Range = tuple[float, float]


class PlanningController:
    """Turns windows of plant data into proposals with one world model and one spec.

    `config.hard_operating` makes the CV operating limits hard (the runtime's auto mode);
    `observer_gains` are the disturbance observer's gains fitted on the twin's validation block
    (twin.plan.observer.fit_gains); without them the config's constant gains are used.
    """

    def __init__(
        self,
        model: WorldModel,
        spec: PlantSpec,
        config: PlannerConfig | None = None,
        observer_gains: ObserverGains | None = None,
    ) -> None:
        self.model = model
        self.spec = spec
        self.config = (config or PlannerConfig()).for_interval(spec.plant.control_interval_s)
        self.cv_names = list(model.cv_names)
        self.mv_names = list(model.mv_names)
        self.tag_names = list(model.tag_names)
        gains = observer_gains or ObserverGains.constant(
            self.config.observer_latent_gain, self.config.observer_output_gain
        )
        # An output-disturbance estimate that has not settled when the prediction ends leaves
        # the plan aimed at a stale disturbance for longer than it looks ahead; versions saved
        # before this floor (at 0.05) get it here (twin.plan.observer.settling_gain). The
        # latent gains stay as fitted: raised to the same floor they took cstr/fouling from
        # 4.3x to 1.75-1.9x the oracle (trained twin, gate off), but left a four_tank twin
        # 0.092 cm off on leak_small (tests/plan/test_offset_free.py; docs/control.md);
        # they get a floor capped by the horizon's amplification at the first decision
        # (_floor_latent_gain).
        gains = gains.output_at_least(settling_gain(self.config.horizon))
        self.observer = DisturbanceObserver(gains, spec.plant.control_interval_s)
        self.latent_floor: float | None = None
        """The floor under the latent gains (twin.plan.observer.latent_floor), set at the first
        decision; None before it."""
        self._warm: tuple[np.ndarray, datetime] | None = None
        """The last plan (H, n_mv) and the data time it was made at (the next warm start)."""

    def reset(self) -> None:
        """Forget the warm start and the disturbance estimate (e.g. after a data gap)."""
        self._warm = None
        self.observer.reset()

    def decide(
        self,
        window: np.ndarray,
        data_ts: datetime,
        now: datetime | None = None,
        *,
        setpoints: Mapping[str, float] | None = None,
        operating: Mapping[str, Range] | None = None,
    ) -> Proposal | NoProposal:
        """A proposal from the last `model.window` samples (W, n_tags), NaN where missing."""
        now = now or data_ts
        name = self.spec.name
        blocked = gate(
            name,
            model_version=self.model.version or None,
            data_ts=data_ts,
            now=now,
            max_staleness_s=self.spec.safety.max_staleness_s,
        )
        if blocked is not None:
            return blocked
        window = np.array(window, dtype=float)  # a writable copy for torch
        latest = _last_finite(window)
        missing = [
            n for n in self.cv_names + self.mv_names if not math.isfinite(latest[self._col(n)])
        ]
        if missing:
            self.reset()
            return NoProposal(name, "missing_data", f"no good recent value of {missing}", data_ts)

        with torch.inference_mode():
            x = torch.as_tensor(window, dtype=torch.float32)[None]  # (1, W, n_tags)
            z0 = self.model.encode(torch.nan_to_num(x), torch.isfinite(x))  # (1, D)
        # The one OOD check, shared with the write guard (twin.plan.gating.ood_ratio).
        found = ood_ratio(self.model, window, z0)
        ratio = 0.0 if found is None else found
        blocked = gate(
            name,
            model_version=self.model.version,
            data_ts=data_ts,
            now=now,
            max_staleness_s=self.spec.safety.max_staleness_s,
            ood_score=found,
            ood_threshold=None if found is None else 1.0,
        )
        if blocked is not None:
            # The warm start and the disturbance estimate both stay: the disturbance that
            # pushed the plant to the edge of what the twin knows is still there when it comes
            # back, and a search started cold from "hold" after every refusal found poor plans
            # (a toy loop refused every third interval cycled between 7.5 and 10 around a
            # setpoint of 12 instead of settling).
            return blocked

        y_meas = np.array([latest[self._col(n)] for n in self.cv_names])
        u_now = {n: float(latest[self._col(n)]) for n in self.mv_names}
        problem = self._problem(u_now, setpoints, operating)
        with torch.inference_mode():
            self._floor_latent_gain(z0, problem)
            est = self.observer.update(self.model, z0, y_meas, self._held(window), data_ts)
        warm = self._warm_start(data_ts)
        try:
            z_plan = z0 if est.z0 is None else est.z0
            result = plan(
                self.model, z_plan[0], problem, self.config, est.output, warm, latent=est.latent
            )
        except PlanInfeasible as exc:
            self._warm = None
            return NoProposal(name, "infeasible", str(exc), data_ts)
        if result.refusal is not None:
            self._warm = None
            return NoProposal(name, "cv_limit", result.refusal, data_ts)
        broken = violations(result.u, problem)
        if broken:  # cannot happen by construction; refuse rather than propose it
            raise AssertionError(f"planner produced an infeasible plan: {broken}")
        self._warm = (result.u, data_ts)
        return self._proposal(problem, result, data_ts, now, ratio)

    def evaluate(
        self,
        window: np.ndarray,
        values: Mapping[str, float],
        *,
        setpoints: Mapping[str, float] | None = None,
        operating: Mapping[str, Range] | None = None,
    ) -> dict:
        """The twin's verdict on engineer-modified MV values held over the horizon.

        Returns {"ok", "reasons", "predicted": {cv: Band}, "cost": {...}}: not ok when the
        values break a limit or max_move, when a CV band is predicted to cross a hard limit
        (engineering; operating too in auto mode), or an operating limit that holding would not
        cross, or when the plan leaves the twin's known region.
        """
        window = np.array(window, dtype=float)
        latest = _last_finite(window)
        u_now = {n: float(latest[self._col(n)]) for n in self.mv_names}
        problem = self._problem(u_now, setpoints, operating)
        u = np.tile(
            [float(values.get(n, u_now[n])) for n in self.mv_names], (self.config.horizon, 1)
        )
        reasons = violations(u[:1], problem)
        with torch.inference_mode():
            x = torch.as_tensor(window, dtype=torch.float32)[None]
            z0 = self.model.encode(torch.nan_to_num(x), torch.isfinite(x))
            y_meas = np.array([latest[self._col(n)] for n in self.cv_names])
            est = self.observer.current(self.model, z0, y_meas)
            offset = est.output
            obj = PlanObjective(self.model, z0[0], problem, self.config, offset, est.latent)
            ut = torch.as_tensor(u)[None]
            y, q, ratio = obj.predict(ut)
            terms = plan_cost(y, q, ut.to(obj.dtype), ratio, obj.c, self.config)
            off_np = offset[None, :]
            crossing = obj.limits.describe(
                problem.cv_names,
                q[0, ..., 0].double().numpy() + off_np,
                q[0, ..., -1].double().numpy() + off_np,
                problem.interval_s,
            )
            hold = torch.as_tensor(problem.u_now).expand(1, self.config.horizon, problem.n_mv)
            y_h, q_h, ratio_h = obj.predict(hold)
            hold_terms = plan_cost(y_h, q_h, hold.to(obj.dtype), ratio_h, obj.c, self.config)
        if crossing is not None:
            reasons.append(f"the predicted band crosses a hard limit: {crossing}")
        elif float(terms["cv_limits"][0]) > max(1e-6, 1.01 * float(hold_terms["cv_limits"][0])):
            reasons.append("a CV band is predicted to cross an operating limit")
        if ratio is not None and float(ratio.max()) > 1.0:
            reasons.append("the plan leaves the region the twin has seen (trust region)")
        off = torch.as_tensor(offset, dtype=y.dtype)
        return {
            "ok": not reasons,
            "reasons": reasons,
            "predicted": _bands(
                problem, (y[0] + off).double().numpy(), (q[0] + off[:, None]).double().numpy()
            ),
            "cost": {n: float(v[0]) for n, v in terms.items()},
        }

    def _floor_latent_gain(self, z0: torch.Tensor, problem: PlanProblem) -> None:
        """Once, at the first decision: raise the latent gains to the settling gain of the
        horizon capped at 1 / (the horizon's amplification of a latent disturbance, from this
        latent with the MVs held). The fitted latent gain is the 0.05 floor on every benchmark
        twin (no unmeasured disturbance in the validation block); the benchmark's cstr twin 0
        gets 0.14 (amplification 7.2 over 10 intervals), its four_tank twin 0.077 (13 over
        20). cstr/fouling, that twin, seeds 7/8/9: 1.92/2.58/2.14x the oracle without the
        floor, 1.76/2.45/1.90x with it (docs/control.md)."""
        if self.latent_floor is not None:
            return
        horizon = self.config.horizon
        amplification = horizon_amplification(
            self.model, z0, problem.u_now, horizon, problem.cv_span
        )
        self.latent_floor = latent_floor(horizon, amplification)
        self.observer.gains = self.observer.gains.latent_at_least(self.latent_floor)

    def _problem(
        self,
        u_now: Mapping[str, float],
        setpoints: Mapping[str, float] | None,
        operating: Mapping[str, Range] | None,
    ) -> PlanProblem:
        return PlanProblem.from_spec(
            self.spec,
            u_now,
            cv_names=self.cv_names,
            mv_names=self.mv_names,
            setpoints=setpoints,
            operating=operating,
        )

    def _held(self, window: np.ndarray) -> np.ndarray:
        """The MVs held over each of the window's last control intervals, oldest first
        (n, n_mv): an interval's value is its last sample's (what was applied at its start),
        the newest finite one where a sample is missing."""
        spi = self.spec.plant.samples_per_interval
        n = max(1, min(MAX_GAP, len(window) // spi))
        mv = window[:, [self._col(m) for m in self.mv_names]]
        ends = [len(window) - 1 - k * spi for k in reversed(range(n))]
        return np.stack([_last_finite(mv[: e + 1]) for e in ends])

    def _warm_start(self, data_ts: datetime) -> np.ndarray | None:
        """The last plan advanced to now (K, n_mv); None when there is none or it has run out."""
        if self._warm is None:
            return None
        u, made = self._warm
        elapsed = (data_ts - made).total_seconds() / self.spec.plant.control_interval_s
        steps = max(1, round(elapsed))  # one interval on the grid; more after a refusal
        if steps >= len(u):
            return None
        return shift_plan(u, self.config.blocks, steps)

    def _col(self, tag: str) -> int:
        return self.tag_names.index(tag)

    def _proposal(
        self, problem: PlanProblem, result: Plan, data_ts: datetime, now: datetime, ratio: float
    ) -> Proposal:
        levels = tuple(self.model.quantile_levels)
        return Proposal(
            plant=self.spec.name,
            model_version=str(self.model.version),
            created_at=now,
            data_ts=data_ts,
            expires_at=now + timedelta(seconds=self.spec.proposal_ttl_s),
            current={n: float(problem.u_now[i]) for i, n in enumerate(problem.mv_names)},
            proposed={n: float(result.u[0, i]) for i, n in enumerate(problem.mv_names)},
            mv_plan={n: result.u[:, i].tolist() for i, n in enumerate(problem.mv_names)},
            interval_s=self.spec.plant.control_interval_s,
            setpoints={
                n: float(problem.setpoint[i])
                for i, n in enumerate(problem.cv_names)
                if math.isfinite(problem.setpoint[i])
            },
            predicted=_bands(problem, result.y, result.q),
            hold=_bands(problem, result.hold_y, result.hold_q),
            quantile_levels=(float(levels[0]), float(levels[-1])),
            cost=result.costs,
            hold_cost=result.hold_costs,
            margins=_margins(problem, result),
            ood_score=ratio,
            notes=_notes(problem, result),
            plan_ms=result.elapsed_ms,
        )


def _last_finite(window: np.ndarray) -> np.ndarray:
    """Newest finite value of each column (NaN where a column has none)."""
    out = np.full(window.shape[1], np.nan)
    for j in range(window.shape[1]):
        ok = np.flatnonzero(np.isfinite(window[:, j]))
        if len(ok):
            out[j] = window[ok[-1], j]
    return out


def _bands(problem: PlanProblem, y: np.ndarray | None, q: np.ndarray | None) -> dict[str, Band]:
    if y is None or q is None:
        return {}
    return {
        n: Band(mean=y[:, i].tolist(), lo=q[:, i, 0].tolist(), hi=q[:, i, -1].tolist())
        for i, n in enumerate(problem.cv_names)
    }


def _margins(problem: PlanProblem, result: Plan) -> dict[str, float]:
    """Smallest distance of the band to each CV limit and of the plan to each MV limit."""
    out: dict[str, float] = {}
    for i, n in enumerate(problem.cv_names):
        lo, hi = result.q[:, i, 0], result.q[:, i, -1]
        out[f"{n}.operating_lo"] = float(np.min(lo - problem.cv_op_lo[i]))
        out[f"{n}.operating_hi"] = float(np.min(problem.cv_op_hi[i] - hi))
        out[f"{n}.limits_lo"] = float(np.min(lo - problem.cv_eng_lo[i]))
        out[f"{n}.limits_hi"] = float(np.min(problem.cv_eng_hi[i] - hi))
    for i, n in enumerate(problem.mv_names):
        out[f"{n}.lo"] = float(np.min(result.u[:, i] - problem.mv_lo[i]))
        out[f"{n}.hi"] = float(np.min(problem.mv_hi[i] - result.u[:, i]))
    return out


def _notes(problem: PlanProblem, result: Plan) -> list[str]:
    """Plain-language warnings: unseen region, predicted limit crossings, unreachable targets."""
    notes = []
    trust_binds = result.ood_ratio is not None and float(np.max(result.ood_ratio)) > 0.9
    for i, n in enumerate(problem.cv_names):
        sp = problem.setpoint[i]
        if not math.isfinite(sp) or problem.weight[i] == 0:
            continue
        end = result.y[-1, i]
        if abs(end - sp) > 0.05 * problem.cv_span[i]:
            if trust_binds:
                notes.append(
                    f"target {n}={sp:g} lies outside the region the twin has seen; the plan "
                    f"keeps to the known region ({n} predicted {end:.4g} at the horizon)"
                )
            else:
                notes.append(f"{n} is predicted at {end:.4g} at the horizon, not its target {sp:g}")
    if result.costs.get("cv_limits", 0.0) > 1e-6:
        notes.append("the band of a CV is predicted to cross an operating limit")
    return notes
