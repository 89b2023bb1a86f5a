"""The runtime's drift hook: once per control interval, score the active twin's matured
predictions against what the plant did, run the drift test (twin.health.drift), and raise
`model_drift` with a "retrain_recommended" audit event carrying the evidence when it fires."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from twin.health.drift import DriftConfig, DriftState, normalised_errors
from twin.paths import Home
from twin.serve.alarms import Alarms
from twin.serve.config import ACTOR
from twin.serve.live import LiveState
from twin.spec import PlantSpec
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
    """Keeps the drift test of the serving model version (reset when the version changes)."""

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
        self.config = config or DriftConfig()
        self.version: str | None = None
        self.state = DriftState(self.config)
        self._rmse: dict[str, list[float]] = {}
        self._seen = 0
        self._pending: list[_Pending] = []
        self._onset: datetime | None = None  # first prediction since the CUSUMs were last at 0
        # (newest sample time, CV values) at each interval: what happened, one per interval.
        self._ticks: deque[tuple[datetime, dict[str, float | None]]] = deque(maxlen=4 * HORIZON)

    def check(self, version: str | None, ood_ratio: float | None) -> None:
        """One control interval's update (cheap: a few store reads and small sums)."""
        if version != self.version:
            self._start(version)
        ts = self.live.newest_ts()
        if self.version is None or not self._rmse or ts is None:
            return
        self._ticks.append((ts, {t.name: self.live.value(t.name) for t in self.spec.cvs}))
        for r in sorted(self.store.list_proposals(self.spec.name, limit=5), key=lambda r: r.id):
            if r.id > self._seen and r.model_version == self.version:
                self._pending.append(_Pending(r.id, r.data_ts, r.payload))
            self._seen = max(self._seen, r.id)
        for p in self._matured():
            errors = self._score(p)
            fired = self.state.update(errors, ood_ratio)
            if max(self.state.one_step, self.state.multi_step) <= 0:
                self._onset = None
            elif self._onset is None:
                self._onset = p.data_ts
            if fired:
                self._fire(ts)

    def _start(self, version: str | None) -> None:
        self.version, self.state = version, DriftState(self.config)
        self._pending, self._ticks = [], deque(maxlen=4 * HORIZON)
        self._onset = None
        self.alarms.condition("model_drift", {})
        self._rmse = expected_rmse(self.home, self.spec, version) if version else {}

    def _matured(self) -> list[_Pending]:
        ready = [p for p in self._pending if sum(t > p.data_ts for t, _ in self._ticks) >= HORIZON]
        self._pending = [p for p in self._pending if p not in ready]
        return ready

    def _score(self, p: _Pending) -> list[float]:
        """Errors under the move really made: the plan if approved as proposed, hold if it was
        not written; a modified move was not predicted, so it is not scored."""
        d = self.store.get_decision(p.id)
        if d is not None and d.kind == "modify":
            return []
        key = "predicted" if d is not None and d.kind == "approve" else "hold"
        bands = p.payload.get(key) or {}
        after = [v for t, v in self._ticks if t > p.data_ts][:HORIZON]
        predicted = {cv: list(b["mean"][:HORIZON]) for cv, b in bands.items() if cv in self._rmse}
        actual = {cv: [v.get(cv) for v in after] for cv in predicted}
        return normalised_errors(predicted, actual, self._rmse)

    def _fire(self, now: datetime) -> None:
        from twin.maintain.retrain import retrain_command

        onset = self._onset or now
        evidence = {
            "model_version": self.version,
            **self.state.evidence(),
            "data_ts": now.isoformat(),
            "onset_ts": onset.isoformat(),
            "retrain": retrain_command(self.spec.name, onset),
        }
        message = (
            f"twin {self.version}: live prediction errors exceed its held-out figures "
            f"(one-step CUSUM {self.state.one_step:.1f}, multi-step {self.state.multi_step:.1f}"
            f" >= {self.config.threshold:g}) since about {onset:%Y-%m-%d %H:%M} plant time; "
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
