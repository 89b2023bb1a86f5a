"""The runtime's drift hook: once per control interval, score the active twin's matured
predictions against what the plant did, run the drift tests (twin.health.drift), and raise
`model_drift` with a "retrain_recommended" audit event carrying the evidence when one fires.

A version that starts serving is first commissioned: after `settle_s` of plant time, the
predictions of the next `commission_s` (at least `min_commission` of them) set the reference
levels of both tests, recorded as a "drift_commissioned" audit event beside the model card's
figures. Each prediction is scored against the CV values at the very plant times it predicted
(data_ts + k control intervals, on the sample grid), however late the runtime got to it."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from twin.health.commissioning import Commissioning, Reference
from twin.health.drift import (
    AbstentionRun,
    BiasState,
    DriftState,
    followed_steps,
    innovations,
    normalised_errors,
)
from twin.health.drift_config import DriftConfig, config_from_env
from twin.health.mv_level import MVLevelCommissioning, MVLevelState
from twin.paths import Home
from twin.serve.alarms import Alarms
from twin.serve.config import ACTOR
from twin.serve.live import LiveState
from twin.spec import PlantSpec, Tag
from twin.state import Store

log = logging.getLogger(__name__)

HORIZON = 5
"""Control intervals of each prediction that are scored."""


@dataclass
class _Pending:
    id: int
    data_ts: datetime
    payload: dict[str, Any]


class DriftMonitor:
    """Keeps the drift tests of the serving model version (reset when the version changes)."""

    def __init__(
        self,
        home: Home,
        spec: PlantSpec,
        store: Store,
        alarms: Alarms,
        live: LiveState,
        config: DriftConfig | None = None,
    ) -> None:
        self.home, self.spec, self.store, self.alarms, self.live = home, spec, store, alarms, live
        self.config = config or config_from_env(os.environ)
        self.version: str | None = None
        self.state = DriftState(self.config)
        self.bias: BiasState | None = None
        self.reference: Reference | None = None
        self._commissioning = Commissioning(self.config)
        self._rmse: dict[str, list[float]] = {}
        self._seen = 0
        self._pending: list[_Pending] = []
        self._started: datetime | None = None
        self._onset: dict[str, datetime | None] = {
            "errors": None,
            "disturbance": None,
            "mv_level": None,
        }
        self._fired = False
        self._abstaining = AbstentionRun()
        self.mv_level: MVLevelState | None = None
        """The MV-level test (twin.health.mv_level), once its commissioning stretch is over."""
        self._mv_commissioning = MVLevelCommissioning()
        self._mv_fed: datetime | None = None
        self._mv_started: datetime | None = None
        """Where the MV-level test's clock starts: the version's start, or the last change of
        the operator limits (which moves the MVs as a drift would)."""
        self._mv_limits: dict[str, tuple[float, float]] | None = None
        self.recommendation: dict[str, Any] | None = None
        """The evidence of the serving version's last "retrain recommended" event."""
        # CV values on the sample grid (grid index -> values), filled from the live buffer.
        self._values: dict[int, dict[str, float | None]] = {}

    @property
    def _step(self) -> timedelta:
        return timedelta(seconds=float(self.spec.plant.control_interval_s))

    def check(self, version: str | None, ood_ratio: float | None) -> None:
        """One control interval's update (cheap: a few store reads and small sums)."""
        if version != self.version:
            self._start(version)
        ts = self.live.newest_ts()
        if self.version is None or not self._rmse or ts is None:
            return
        if self._started is None:
            self._started = ts
        self._record(ts)
        self._recommission_mv_level_on_new_limits(ts)
        self._check_mv_level(ts)
        for r in sorted(self.store.list_proposals(self.spec.name, limit=5), key=lambda r: r.id):
            if r.id > self._seen and r.model_version == self.version:
                self._pending.append(_Pending(r.id, r.data_ts, r.payload))
            self._seen = max(self._seen, r.id)
        ready = [p for p in self._pending if p.data_ts + HORIZON * self._step <= ts]
        self._pending = [p for p in self._pending if p not in ready]
        for p in ready:
            scored = self._score(p)
            if scored is not None:
                self._feed(p, *scored, ood_ratio, ts)
        self._check_ood(ood_ratio, ts)

    def _check_ood(self, ood_ratio: float | None, now: datetime) -> None:
        """Once commissioned, a twin that keeps abstaining for `ood_persist` intervals fires
        the drift alarm (`AbstentionRun` counts them)."""
        if self.reference is None:
            return
        run = self._abstaining.update(ood_ratio, now)
        if run >= self.config.ood_persist and not self._fired:
            self._fired = True
            self._fire(now, "ood")

    def _recommission_mv_level_on_new_limits(self, now: datetime) -> None:
        """An engineer's new operator limits move the MVs to a new level on purpose: the
        MV-level test starts again (settling, then commissioning) from that moment."""
        limits = self.store.operator_limits(self.spec.name)
        if self._mv_started is None:
            self._mv_started, self._mv_limits = self._started, limits
        elif limits != self._mv_limits:
            log.info("operator limits changed: the MV-level test of %s starts again", self.version)
            self._mv_started, self._mv_limits = now, limits
            self.mv_level, self._mv_commissioning = None, MVLevelCommissioning()
            self._onset["mv_level"] = None

    def _check_mv_level(self, now: datetime) -> None:
        """Feed the MV-level test one term per control interval of plant time since the last
        check (a runtime that fell behind still gives it every interval it has values of)."""
        assert self._mv_started is not None
        cfg, step = self.config, self._step
        t = self._mv_fed + step if self._mv_fed is not None else self._mv_started
        while t <= now:
            self._mv_fed = t
            since = (t - self._mv_started).total_seconds()
            mvs = {m.name: self._at(t).get(m.name) for m in self.spec.mvs}
            t += step
            if since < cfg.settle_s:
                continue
            if since < cfg.settle_s + cfg.mv_commission_s:
                self._mv_commissioning.add(mvs)
                continue
            if self.mv_level is None:
                if self._mv_commissioning.count < 3:
                    continue
                spans = {m.name: _span(m) for m in self.spec.mvs}
                ref = self._mv_commissioning.reference(spans, cfg)
                self.mv_level = MVLevelState(ref, cfg, float(self.spec.plant.control_interval_s))
                log.info("MV-level test of twin %s commissioned: %s", self.version, ref)
            fired = self.mv_level.update(mvs)
            if self.mv_level.level <= 0:
                self._onset["mv_level"] = None
            elif self._onset["mv_level"] is None:
                self._onset["mv_level"] = self._mv_fed
            if fired and not self._fired:
                self._fired = True
                self._fire(self._mv_fed, "mv_level")

    def _start(self, version: str | None) -> None:
        self.version, self.state = version, DriftState(self.config)
        self.bias, self.reference = None, None
        self._commissioning = Commissioning(self.config)
        self._pending, self._values, self._started = [], {}, None
        self._onset = {"errors": None, "disturbance": None, "mv_level": None}
        self._fired = False
        self._abstaining = AbstentionRun()
        self.mv_level, self._mv_commissioning, self._mv_fed = None, MVLevelCommissioning(), None
        self._mv_started, self._mv_limits = None, None
        self.recommendation = None
        self.alarms.condition("model_drift", {})
        self._rmse = expected_rmse(self.home, self.spec, version) if version else {}

    def _record(self, ts: datetime) -> None:
        """The CVs' and MVs' values at the sample instants of the last few intervals (the live
        buffer holds more than that), so that late checks still see the values at their times."""
        period = self.spec.plant.sample_period_s
        n = (HORIZON + 3) * self.spec.plant.samples_per_interval
        names = [t.name for t in (*self.spec.cvs, *self.spec.mvs)]
        rows = self.live.window(names, n, ts)
        last = round(ts.timestamp() / period)
        for i, row in enumerate(rows):
            k = last - n + 1 + i
            vals = {c: (float(v) if v == v else None) for c, v in zip(names, row, strict=True)}
            if any(v is not None for v in vals.values()) or k not in self._values:
                self._values[k] = vals
        keep = 4 * n
        for k in [k for k in self._values if k < last - keep]:
            del self._values[k]

    def _at(self, ts: datetime) -> dict[str, float | None]:
        return self._values.get(round(ts.timestamp() / self.spec.plant.sample_period_s), {})

    def _score(self, p: _Pending) -> tuple[list[float], dict[str, float]] | None:
        """Errors under the move really made: the plan if approved as proposed and written,
        hold if nothing was written (not approved, or refused by the guard at write time); a
        modified move was not predicted, so it is not scored."""
        d = self.store.get_decision(p.id)
        if d is not None and d.kind == "modify":
            return None
        written = (
            d is not None
            and d.kind == "approve"
            and any(
                w.status in ("done", "mismatch") for w in self.store.writes_for(decision_id=d.id)
            )
        )
        key = "predicted" if written else "hold"
        bands = p.payload.get(key) or {}
        steps = self._followed(p, key)
        after = [self._at(p.data_ts + (k + 1) * self._step) for k in range(steps)]
        predicted = {cv: list(b["mean"][:steps]) for cv, b in bands.items() if cv in self._rmse}
        actual = {cv: [v.get(cv) for v in after] for cv in predicted}
        return normalised_errors(predicted, actual, self._rmse), innovations(predicted, actual)

    def _followed(self, p: _Pending, key: str) -> int:
        """How many steps of the prediction the MVs really followed (`followed_steps`)."""
        if key == "predicted":
            plan = {mv: list(vs) for mv, vs in (p.payload.get("mv_plan") or {}).items()}
        else:
            current = p.payload.get("current") or p.payload.get("mv_live") or {}
            plan = {mv: [v] * HORIZON for mv, v in current.items()}
        seen = [self._at(p.data_ts + (k + 1) * self._step) for k in range(HORIZON)]
        return followed_steps(plan, seen, {t.name: t.limits for t in self.spec.mvs})

    def _feed(
        self,
        p: _Pending,
        errors: list[float],
        innovation: dict[str, float],
        ood_ratio: float | None,
        now: datetime,
    ) -> None:
        cfg = self.config
        assert self._started is not None
        if self.reference is None:
            since = (p.data_ts - self._started).total_seconds()
            if since < cfg.settle_s:
                return
            self._commissioning.add(errors, innovation)
            done = since >= cfg.settle_s + cfg.commission_s
            if done and self._commissioning.count >= cfg.min_commission:
                longest = since >= cfg.settle_s + cfg.commission_longest_s
                card = {cv: rmse[0] for cv, rmse in self._rmse.items()}
                interval = float(self.spec.plant.control_interval_s)
                if longest or self._commissioning.precise(card, interval):
                    self._commissioned(now, p.data_ts)
            return
        assert self.bias is not None
        fired = self.state.update(errors, ood_ratio)
        fired_bias = self.bias.update(innovation)
        for name, level in (("errors", self.state.level), ("disturbance", self.bias.level)):
            if level <= 0:
                self._onset[name] = None
            elif self._onset[name] is None:
                self._onset[name] = p.data_ts
        if (fired or fired_bias) and not self._fired:
            self._fired = True
            self._fire(now, "errors" if fired else "disturbance")

    def _commissioned(self, now: datetime, last: datetime) -> None:
        card = {cv: rmse[0] for cv, rmse in self._rmse.items()}
        ref = self._commissioning.reference(card)
        self.reference = ref
        self.state = DriftState(self.config, ref.one_step, ref.multi_step)
        self.bias = BiasState(
            dict(ref.innovation_mean),
            dict(ref.innovation_scale),
            self.config,
            interval_s=float(self.spec.plant.control_interval_s),
            mean_se=dict(ref.innovation_mean_se),
        )
        bound = "" if ref.within_card_bound else f" (bounded at {self.config.max_reference:g})"
        why = (
            f"twin {self.version} commissioned on {ref.predictions} live predictions: errors at"
            f" {ref.measured_one_step:.2f}x (one-step) and {ref.measured_multi_step:.2f}x"
            f" (horizon) its held-out card{bound}; the drift tests are referenced to this"
        )
        log.info(why)
        self.store.log_event(
            user=ACTOR,
            kind="drift_commissioned",
            plant=self.spec.name,
            subject=f"model:{self.version}",
            what={
                "model_version": self.version,
                "data_ts": now.isoformat(),
                "started_ts": None if self._started is None else self._started.isoformat(),
                "last_prediction_ts": last.isoformat(),
                "card_rmse": {cv: list(r) for cv, r in self._rmse.items()},
                "trend_threshold": self.bias.threshold,
                "trend_false_alarm": self.bias.false_alarm,
                "trend_window_s": self.config.bias_window_s,
                **ref.to_dict(),
            },
            why=why,
        )

    def _fire(self, now: datetime, by: str) -> None:
        from twin.maintain.retrain import retrain_command

        onset = (self._abstaining.onset if by == "ood" else self._onset[by]) or now
        evidence = {
            "model_version": self.version,
            "fired_by": by,
            **self.state.evidence(),
            "disturbance": None if self.bias is None else self.bias.evidence(),
            "mv_level": None if self.mv_level is None else self.mv_level.evidence(),
            "reference": None if self.reference is None else self.reference.to_dict(),
            "data_ts": now.isoformat(),
            "onset_ts": onset.isoformat(),
            "retrain": retrain_command(self.spec.name, onset),
        }
        if by == "ood":
            what = (
                f"the plant has been outside the twin's known region for {self._abstaining.intervals} "
                "control intervals (it abstains)"
            )
        elif by == "errors":
            what = (
                f"live prediction errors exceed their commissioned level (one-step CUSUM "
                f"{self.state.one_step:.1f}, multi-step {self.state.multi_step:.1f}"
                f" >= {self.config.threshold:g})"
            )
        elif by == "mv_level":
            assert self.mv_level is not None
            what = self.mv_level.describe()
        else:
            assert self.bias is not None
            what = (
                f"the disturbance estimate of {self.bias.worst()} trends away from its "
                f"commissioned level (innovation CUSUM {self.bias.level:.1f}"
                f" >= {self.bias.threshold:.1f})"
            )
        message = (
            f"twin {self.version}: {what} since about {onset:%Y-%m-%d %H:%M} plant time; "
            f"retraining recommended: {evidence['retrain']}"
        )
        log.warning(message)
        self.alarms.condition("model_drift", {None: message})
        self.store.log_event(
            user=ACTOR,
            kind="retrain_recommended",
            plant=self.spec.name,
            subject=f"model:{self.version}",
            what=evidence,
            why=message,
        )
        self.recommendation = evidence


def _span(tag: Tag) -> float:
    """An MV's operating span (its engineering span where it has no operating limits)."""
    lo, hi = tag.operating_limits
    return float(hi) - float(lo)


def expected_rmse(home: Home, spec: PlantSpec, version: str) -> dict[str, list[float]]:
    """Held-out RMSE of each CV at horizons 1..HORIZON in engineering units: the model card's
    NRMSE (at the nearest evaluated horizon) times the CV's training std."""
    from twin import registry

    try:
        ckpt = registry.load_checkpoint(home, spec, version)
    except Exception:  # no card, no test: a broken checkpoint is the loader's alarm, not ours
        log.exception("drift test off: cannot read model %s", version)
        return {}
    norm = ckpt.get("normalizer") or {}
    std = dict(zip(norm.get("tags", []), norm.get("std", []), strict=False))
    per = (((ckpt.get("card") or {}).get("evaluation") or {}).get("models") or {}).get("jepa", {})
    table = per.get("nrmse_per_cv") or {}
    if not table:
        return {}
    horizons = sorted(int(h) for h in table)
    out: dict[str, list[float]] = {}
    for t in spec.cvs:
        row = []
        for k in range(1, HORIZON + 1):
            h = min(horizons, key=lambda x: abs(x - k))
            nrmse = (table.get(str(h)) or {}).get(t.name)
            if nrmse is None or t.name not in std:
                break
            row.append(float(nrmse) * float(std[t.name]))
        if len(row) == HORIZON:
            out[t.name] = row
    return out
