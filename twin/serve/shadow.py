"""Shadow evaluation: a candidate twin plans beside the active one and writes nothing.

Each control interval the candidate plans on the same live window and operating limits as the
active twin; its would-be proposal (values and predicted trajectories) goes to the state
store's shadow_proposals table and nowhere else. When the active twin made no proposal at that
interval (it abstained: out of its known region, a band over a limit), the shadow asks the active
version for its hold prediction on the same window (`active_hold`), and when the candidate makes
none it records its own (`hold`), so that an interval is not lost to either twin's refusal.
`score` later compares the two twins on the matured intervals, normalised as the drift test does
(twin.health.drift): where the MVs did not move, their recorded hold predictions; where they moved
(the active twin or its fallback controlling: `twin serve --mode auto`), both twins' predictions
replayed under the MVs the plant really got (`replay`), so that neither is judged on moves that
were never made."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import torch

from twin import api
from twin.health.drift import normalised_errors
from twin.health.monitor import HORIZON, expected_rmse
from twin.historian import Historian
from twin.paths import Home
from twin.plan.proposal import NoProposal, Proposal
from twin.plan.world import WorldModel
from twin.serve.alarms import Alarms
from twin.serve.fallback import is_fallback
from twin.serve.live import LiveState
from twin.spec import PlantSpec
from twin.state import Store
from twin.window import lookback, window_rows

log = logging.getLogger(__name__)


class VersionProposer:
    """One fixed model version and its planner (not the active one: it never reloads)."""

    def __init__(self, home: Home, spec: PlantSpec, version: str) -> None:
        from twin import registry  # the model stack (torch) loads only when a shadow runs
        from twin.plan.controller import PlanningController

        model = registry.load_version(home, spec, version)
        model.eval()
        self.version = version
        self.window = int(model.window)
        self.tag_names: list[str] = list(model.tag_names)
        self._controller = PlanningController(model, spec)

    def __call__(
        self,
        window: np.ndarray,
        data_ts: datetime,
        now: datetime,
        operating: Mapping[str, tuple[float, float]],
    ) -> Proposal | NoProposal:
        return self._controller.decide(window, data_ts, now, operating=dict(operating))

    def hold(
        self, window: np.ndarray, operating: Mapping[str, tuple[float, float]]
    ) -> dict[str, dict[str, list[float | None]]]:
        """The twin's predicted CV trajectories if the MVs stay where they are (JSON-ready)."""
        verdict = self._controller.evaluate(window, {}, operating=dict(operating))
        return {cv: _band_dict(b) for cv, b in verdict["predicted"].items()}


def _band_dict(band: Any) -> dict[str, list[float | None]]:
    return {
        k: [float(v) if math.isfinite(v) else None for v in getattr(band, k)]
        for k in ("mean", "lo", "hi")
    }


class Shadow:
    """The runtime's shadow hook: `step` once per control interval. A failure of the candidate
    raises a runtime_error alarm and is never passed on to the active control."""

    def __init__(
        self,
        home: Home,
        spec: PlantSpec,
        store: Store,
        alarms: Alarms,
        live: LiveState,
        version: str | None,
    ) -> None:
        self.home, self.spec, self.store, self.alarms, self.live = home, spec, store, alarms, live
        self.version = version
        self._proposer: VersionProposer | None = None
        self._active: VersionProposer | None = None
        self._last_active_id: int | None = None
        self._failing = False

    def follow(self, version: str) -> None:
        """Shadow `version` from the next interval on (a retrain on drift registered it)."""
        if version != self.version:
            self.version, self._proposer, self._failing = version, None, False

    async def step(self, active_version: str | None, active_proposal_id: int | None) -> None:
        """Plan with the candidate on this interval's window and record the would-be proposal."""
        if self.version is None or self.version == active_version:
            return  # nothing to compare with (the candidate itself serves)
        paired = active_proposal_id if active_proposal_id != self._last_active_id else None
        self._last_active_id = active_proposal_id
        try:
            await self._plan(active_version, paired)
        except Exception as exc:  # the active twin keeps control whatever the candidate does
            log.exception("shadow twin %s failed", self.version)
            if not self._failing:
                self.alarms.raise_(
                    "runtime_error", None, f"shadow twin {self.version} failed: {exc!r}"
                )
            self._failing = True
        else:
            self._failing = False

    async def _plan(self, active_version: str | None, paired: int | None) -> None:
        assert self.version is not None
        if self._proposer is None:
            self._proposer = await asyncio.to_thread(
                VersionProposer, self.home, self.spec, self.version
            )
        proposer = self._proposer
        now, data_ts = self.live.clock.now(), self.live.newest_ts()
        if paired is not None:  # the very window the active twin planned on
            data_ts = self.store.get_proposal(paired).data_ts
        if now is None or data_ts is None:
            return
        window = self.live.window(proposer.tag_names, proposer.window, data_ts)
        operating = api.operator_limits(self.store, self.spec)
        result = await asyncio.to_thread(proposer, window, data_ts, now, operating)
        proposed = result.proposed if isinstance(result, Proposal) else None
        if isinstance(result, NoProposal):
            payload: dict[str, Any] = {
                "code": result.code,
                "reason": result.reason,
                "hold": await asyncio.to_thread(proposer.hold, window, operating),
            }
        else:
            payload = result.to_dict()
        if paired is None and active_version is not None:
            # The active twin abstained (or planned nothing new): its hold prediction on this
            # window, so that the interval still compares the two twins.
            active = await self._active_twin(active_version)
            active_window = self.live.window(active.tag_names, active.window, data_ts)
            payload["active_hold"] = await asyncio.to_thread(active.hold, active_window, operating)
        self.store.add_shadow(
            plant=self.spec.name,
            version=self.version,
            active_version=active_version,
            active_proposal_id=paired,
            data_ts=data_ts,
            mv_values=None if proposed is None else dict(proposed),
            payload=payload,
        )

    async def _active_twin(self, version: str) -> VersionProposer:
        if self._active is None or self._active.version != version:
            self._active = await asyncio.to_thread(VersionProposer, self.home, self.spec, version)
        return self._active


@dataclass(frozen=True)
class ShadowScore:
    """Active vs candidate on the matured intervals where nothing was written, so that both
    twins' predictions under hold are tested against what the plant did."""

    version: str
    active_versions: list[str]
    shadow_rows: int
    candidate_proposals: int
    scored: int
    active_one_step: float | None
    active_multi_step: float | None
    candidate_one_step: float | None
    candidate_multi_step: float | None
    active_fallback: int = 0
    """Scored intervals where the active twin abstained and its fallback (the linear MPC of
    the same version) proposed: its predictions stand for the active side there."""
    replayed: int = 0
    """Scored intervals over which the MVs moved (auto mode): both twins' predictions there are
    replays under the MVs the plant got (`replay`), not their recorded hold predictions."""

    @property
    def improvement(self) -> float | None:
        """1 - candidate/active multi-step error (0.1: the candidate's error is 10 % lower)."""
        a, c = self.active_multi_step, self.candidate_multi_step
        return None if a is None or c is None or a <= 0 else 1.0 - c / a

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {**asdict(self), "improvement": self.improvement}


def score(
    home: Home, spec: PlantSpec, store: Store, version: str, replay_moved: bool = True
) -> ShadowScore:
    """Score the candidate against the active twin of each interval it shadowed. Errors are
    divided by the active twin's held-out RMSE (the candidate's if the active has no card), so
    both twins are measured on one scale; lower is better, about 1 is as good as the card.
    Where the MVs did not move over an interval's horizon, both recorded hold predictions are
    scored (whatever was proposed, approved or refused: the plant is the judge). Where they
    moved, both twins are replayed under the moves the plant really got (`replay`), or, with
    `replay_moved` False, the interval is left out (as before the replay)."""
    rows = store.list_shadow(spec.name, version)
    actives = sorted({r.active_version for r in rows if r.active_version})
    frame = _history(home, spec, rows)
    step = timedelta(seconds=float(spec.plant.control_interval_s))
    scales: dict[str, dict[str, list[float]]] = {}
    twins = _Twins(home, spec)
    active_e: list[list[float]] = []
    cand_e: list[list[float]] = []
    fallback = replayed = 0
    for r in rows:
        if frame is None or r.data_ts + HORIZON * step > frame.index.max():
            continue  # not matured yet
        if not _held(frame, spec, r.data_ts, r.data_ts + HORIZON * step):
            if not replay_moved or not r.active_version:
                continue  # a move was written: hold predictions do not apply
            key = r.active_version
            if key not in scales:
                scales[key] = expected_rmse(home, spec, key) or expected_rmse(home, spec, version)
            rmse = scales[key]
            actual = {
                cv: [_at(frame, cv, r.data_ts + (k + 1) * step) for k in range(HORIZON)]
                for cv in rmse
            }
            a_pred = _replayed(twins.get(key), frame, spec, r.data_ts)
            c_pred = _replayed(twins.get(version), frame, spec, r.data_ts)
            if a_pred is None or c_pred is None:
                continue  # an MV value is missing over the horizon: nothing to replay under
            a = normalised_errors({c: a_pred[c] for c in rmse if c in a_pred}, actual, rmse)
            c = normalised_errors({c: c_pred[c] for c in rmse if c in c_pred}, actual, rmse)
            if len(a) == HORIZON and len(c) == HORIZON:
                active_e.append(a)
                cand_e.append(c)
                replayed += 1
            continue
        by_fallback = False
        if r.active_proposal_id is not None:
            active = store.get_proposal(r.active_proposal_id)
            by_fallback = is_fallback(active.payload)
            # A fallback's proposal names its own model (the twin's ARX): the scale is the
            # active twin's card.
            key = (None if by_fallback else active.model_version) or r.active_version or ""
            active_payload = active.payload
        else:
            key = r.active_version or ""
            active_payload = {"hold": r.payload.get("active_hold") or {}}
        if key not in scales:
            scales[key] = expected_rmse(home, spec, key) if key else {}
            scales[key] = scales[key] or expected_rmse(home, spec, version)
        rmse = scales[key]
        actual = {
            cv: [_at(frame, cv, r.data_ts + (k + 1) * step) for k in range(HORIZON)] for cv in rmse
        }
        a = normalised_errors(_hold(active_payload, rmse), actual, rmse)
        c = normalised_errors(_hold(r.payload, rmse), actual, rmse)
        if len(a) == HORIZON and len(c) == HORIZON:
            active_e.append(a)
            cand_e.append(c)
            fallback += by_fallback
    return ShadowScore(
        version=version,
        active_versions=[str(v) for v in actives],
        shadow_rows=len(rows),
        candidate_proposals=sum(r.mv_values is not None for r in rows),
        scored=len(active_e),
        active_one_step=_mean([e[0] for e in active_e]),
        active_multi_step=_mean([sum(e) / len(e) for e in active_e]),
        candidate_one_step=_mean([e[0] for e in cand_e]),
        candidate_multi_step=_mean([sum(e) / len(e) for e in cand_e]),
        active_fallback=fallback,
        replayed=replayed,
    )


def replay(model: WorldModel, window: np.ndarray, applied: np.ndarray) -> dict[str, list[float]]:
    """A twin's predicted CV means over `len(applied)` control intervals from `window` (W,
    n_tags in `model.tag_names` order, NaN missing), under the MV values `applied` (H, n_mv in
    `model.mv_names` order) that the plant really got. The prediction is anchored at the last
    measurement (each CV's offset is its measured value minus the readout of the encoded
    latent), the same rule for every twin, so that a candidate and the active twin are
    compared on their dynamics, not on how long each one's observer has been running."""
    x = np.array(window, dtype=float)
    with torch.inference_mode():
        xt = torch.as_tensor(x, dtype=torch.float32)[None]  # (1, W, n_tags)
        z0 = model.encode(torch.nan_to_num(xt), torch.isfinite(xt))  # (1, D)
        y0, _ = model.readout(z0)  # (1, n_cv)
        u = torch.as_tensor(np.array(applied, dtype=float), dtype=z0.dtype)[None]  # (1, H, n_mv)
        y, _ = model.readout(model.rollout(z0, u))  # (1, H, n_cv)
    names = list(model.tag_names)
    out = {}
    for i, cv in enumerate(model.cv_names):
        seen = x[:, names.index(cv)]
        seen = seen[np.isfinite(seen)]
        if not len(seen):
            continue
        offset = float(seen[-1]) - float(y0[0, i])
        out[cv] = [float(v) + offset for v in y[0, :, i].double().numpy()]
    return out


class _Twins:
    """Model versions loaded once per score (only when an interval needs a replay)."""

    def __init__(self, home: Home, spec: PlantSpec) -> None:
        self.home, self.spec = home, spec
        self._loaded: dict[str, WorldModel] = {}

    def get(self, version: str) -> WorldModel:
        if version not in self._loaded:
            from twin import registry

            model = registry.load_version(self.home, self.spec, version)
            model.eval()
            self._loaded[version] = model
        return self._loaded[version]


def _replayed(
    model: WorldModel, frame: pd.DataFrame, spec: PlantSpec, data_ts: datetime
) -> dict[str, list[float]] | None:
    """`replay` of one shadow interval: the twin's window up to `data_ts` and the MVs in force
    over each of the next HORIZON control intervals (an interval's value is its last sample's,
    as the observer reads a window), both from the historian. None: an MV value is missing."""
    spi = spec.plant.samples_per_interval
    step = timedelta(seconds=float(spec.plant.control_interval_s))
    window = window_rows(frame, spec, list(model.tag_names), int(model.window), data_ts)
    after = window_rows(frame, spec, list(model.mv_names), HORIZON * spi, data_ts + HORIZON * step)
    applied = after[spi - 1 :: spi]  # (HORIZON, n_mv)
    if applied.shape[0] != HORIZON or not np.isfinite(applied).all():
        return None
    return replay(model, window, applied)


def _held(frame: pd.DataFrame, spec: PlantSpec, t0: datetime, t1: datetime) -> bool:
    """Every MV kept one value from `t0` to `t1` (the value in force at t0 included)."""
    for t in spec.mvs:
        if t.name not in frame:
            continue
        values = frame[t.name].loc[:t1].dropna()
        before = values.loc[:t0]
        seg = values.loc[before.index[-1] :] if len(before) else values.loc[t0:]
        lo, hi = t.limits
        if len(seg) and float(seg.max() - seg.min()) > 1e-6 * (float(hi) - float(lo)):
            return False
    return True


def _history(home: Home, spec: PlantSpec, rows: list[Any]) -> pd.DataFrame | None:
    folder = home.historian_dir(spec.name)
    if not rows or not folder.exists():
        return None
    with Historian(folder) as h:
        span = h.time_range()
        if span is None:
            return None
        # A replay reads each twin's window before its interval (twin windows are a few
        # control intervals long; 20 are read).
        back = lookback(spec, 20 * spec.plant.samples_per_interval)
        start = min(r.data_ts for r in rows) - max(timedelta(minutes=10), back)
        frame = h.read(start, span[1], tags=list(spec.tag_names))
    return None if frame.empty else frame


def _hold(payload: Mapping[str, Any], rmse: Mapping[str, Any]) -> dict[str, list[float]]:
    bands = payload.get("hold") or {}
    return {cv: list(b["mean"][:HORIZON]) for cv, b in bands.items() if cv in rmse}


def _at(frame: pd.DataFrame, cv: str, ts: datetime) -> float | None:
    """The CV's newest value at or before `ts` (what the runtime saw at that interval)."""
    if cv not in frame:
        return None
    v = frame[cv].loc[:ts].dropna()
    return float(v.iloc[-1]) if len(v) else None


def _mean(xs: list[float]) -> float | None:
    xs = [x for x in xs if math.isfinite(x)]
    return sum(xs) / len(xs) if xs else None


MIN_SCORED = 10
"""Matured intervals a gated promotion needs at least (fewer is no evidence either way)."""
MIN_ACTING = 0.5
"""Share of its shadow intervals on which a candidate must have made a proposal: one that
predicts well but abstains (out of distribution) would leave the plant to its fallback."""


def gate(
    result: ShadowScore,
    active: str | None,
    margin: float,
    min_scored: int = MIN_SCORED,
    min_acting: float = MIN_ACTING,
) -> list[str]:
    """Why the candidate may not replace the active twin (empty: it may): it must have been
    scored against the version serving now, on enough intervals, beat it by `margin`, and
    have proposed on at least `min_acting` of its shadow intervals."""
    reasons = []
    if result.shadow_rows and result.candidate_proposals < min_acting * result.shadow_rows:
        share = result.candidate_proposals / result.shadow_rows
        reasons.append(
            f"{result.version} proposed on {result.candidate_proposals} of "
            f"{result.shadow_rows} shadow intervals ({share:.0%}; {min_acting:.0%} needed): "
            "a twin that abstains leaves the plant to its fallback"
        )
    if result.active_versions != [active]:
        reasons.append(
            f"the shadow run compared {result.version} with {result.active_versions or 'nothing'},"
            f" not with the active version {active}"
        )
    if result.scored < min_scored:
        reasons.append(f"{result.scored} matured intervals scored; {min_scored} needed")
    gain = result.improvement
    if gain is None or gain < margin:
        shown = "unknown" if gain is None else f"{gain:+.3f}"
        reasons.append(f"improvement over the active twin {shown} < margin {margin:g}")
    return reasons
