"""Approve / modify / reject from the Proposals page, always through twin.api (role-checked).

A modification is re-evaluated by the twin the proposal was made with, from the same moment,
before twin.api.modify records it; the evaluation is stored with the decision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from app.logic.whatif import DEFAULT_HORIZON, Evaluation, evaluate_modification, window_at
from twin import api
from twin.auth import Session
from twin.errors import BadInput
from twin.historian import Historian
from twin.spec import PlantSpec
from twin.state import ProposalRecord, Store


def parse_values(raw: Mapping[str, Any], spec: PlantSpec) -> dict[str, float]:
    """Numbers typed by the engineer, one per MV; a clear message names the bad one."""
    out = {}
    for t in spec.mvs:
        text = raw.get(t.name)
        try:
            v = float(text)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise BadInput(f"{t.name}: {text!r} is not a number") from None
        if not math.isfinite(v):
            raise BadInput(f"{t.name}: {text!r} is not a finite number")
        out[t.name] = v
    return out


def horizon_of(p: ProposalRecord) -> int:
    predicted = (p.payload or {}).get("predicted") or {}
    for band in predicted.values():
        if band.get("mean"):
            return len(band["mean"])
    return DEFAULT_HORIZON


def evaluate(
    model: Any,
    hist: Historian,
    spec: PlantSpec,
    store: Store,
    p: ProposalRecord,
    values: Mapping[str, float],
) -> Evaluation:
    """The twin's verdict on `values` from the proposal's moment (its data time)."""
    window = window_at(hist, spec, list(model.tag_names), int(model.window), p.data_ts)
    current = (p.payload or {}).get("current") or (p.payload or {}).get("mv_live") or {}
    current = {t.name: float(current.get(t.name, values[t.name])) for t in spec.mvs}
    return evaluate_modification(
        model,
        spec,
        window,
        p.data_ts,
        values,
        current,
        api.operator_limits(store, spec),
        horizon_of(p),
    )


def modify(
    store: Store,
    user: Session,
    p: ProposalRecord,
    spec: PlantSpec,
    values: Mapping[str, float],
    note: str,
    model: Any,
    hist: Historian,
) -> int:
    """twin.api.modify with the twin's re-evaluation; raises ModificationRefused with reasons."""
    return api.modify(
        store,
        p.id,
        user,
        values,
        note,
        evaluate=lambda v: evaluate(model, hist, spec, store, p, v).to_dict(),
        spec=spec,
    )


def limit_problems(
    store: Store, spec: PlantSpec, p: ProposalRecord, values: Mapping[str, float]
) -> list[str]:
    """Why modified values may not be approved before the twin is even asked (limits, max_move).

    The same rules twin.api.modify enforces again when the decision is recorded.
    """
    from twin.guard import effective_limits

    overrides = store.operator_limits(spec.name)
    live = (p.payload or {}).get("mv_live") or (p.payload or {}).get("current") or {}
    problems = []
    for t in spec.mvs:
        v = values[t.name]
        lo, hi = effective_limits(spec, t.name, overrides)
        if not lo <= v <= hi:
            problems.append(
                f"{t.name}: {v:g} is outside the operator/engineering limits [{lo:g}, {hi:g}]"
            )
        cur = live.get(t.name)
        if cur is not None and t.max_move is not None and abs(v - float(cur)) > t.max_move + 1e-9:
            problems.append(
                f"{t.name}: move {v - float(cur):+g} from {float(cur):g} exceeds max_move {t.max_move:g}"
            )
    return problems
