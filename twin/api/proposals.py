"""Proposals: approve, modify, reject, and the runtime's auto-approval (see twin.api)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, is_dataclass
from typing import Any

from twin.auth import (
    RUNTIME,
    PermissionDenied,
    Role,
    RuntimeIdentity,
    Session,
    require,
    require_fresh,
)
from twin.errors import BadInput
from twin.guard import effective_limits
from twin.spec import PlantSpec, load_spec
from twin.state import ProposalClosed, ProposalRecord, Store, iso

# A modification's re-evaluation by the twin: given the modified MV values, returns the
# planner's evaluation (an object or dict with `ok`/`feasible` and `reasons`, or a bool).
Evaluator = Callable[[dict[str, float]], Any]


class ModificationRefused(BadInput):
    """A modified plan that breaks a limit or that the twin's re-evaluation rejects."""


def spec_for(proposal: ProposalRecord) -> PlantSpec:
    """The plant spec a proposal was made under (a path the runtime recorded, else the name)."""
    ref = proposal.payload.get("spec_path") or proposal.plant
    return load_spec(ref)


# ---- proposals -------------------------------------------------------------------------


def approve(store: Store, proposal_id: int, user: Session, note: str = "") -> int:
    """Approve a pending proposal as proposed; returns the decision id."""
    who = require(store, user, Role.OPERATOR, "approve a proposal")
    require_fresh(store, who, "approve a proposal")
    p = store.get_proposal(proposal_id)
    _check_not_expired(store, p)
    return _decide(store, p, who.name, "approve", p.mv_values, note, None)


def modify(
    store: Store,
    proposal_id: int,
    user: Session,
    new_values: Mapping[str, float],
    note: str = "",
    evaluate: Evaluator | None = None,
    spec: PlantSpec | None = None,
) -> int:
    """Approve modified MV values, after checking limits and the twin's re-evaluation."""
    who = require(store, user, Role.OPERATOR, "modify a proposal")
    require_fresh(store, who, "modify a proposal")
    p = store.get_proposal(proposal_id)
    _check_not_expired(store, p)
    spec = spec or spec_for(p)
    values = _check_modification(store, spec, p, new_values)
    evaluation = None
    if evaluate is not None:
        evaluation = _evaluation_dict(evaluate(dict(values)))
        if not evaluation.get("ok", True):
            reasons = "; ".join(evaluation.get("reasons") or ["the twin rejects the modified plan"])
            raise ModificationRefused(f"proposal {proposal_id}: {reasons}")
    return _decide(store, p, who.name, "modify", values, note, evaluation)


def reject(store: Store, proposal_id: int, user: Session, reason: str) -> int:
    """Reject a pending proposal; a reason is required (it is what the audit is for)."""
    who = require(store, user, Role.OPERATOR, "reject a proposal")
    if not reason.strip():
        raise BadInput("reject: a reason is required")
    p = store.get_proposal(proposal_id)
    return _decide(store, p, who.name, "reject", None, reason, None)


def auto_approve(store: Store, proposal_id: int, actor: RuntimeIdentity = RUNTIME) -> int:
    """The runtime in auto mode approving its own proposal, made in auto mode.

    The runtime's identity is accepted here only, and a person's session is not: people
    approve through `approve`. A process that can call this already holds the state store.
    """
    if not isinstance(actor, RuntimeIdentity):
        raise PermissionDenied(f"auto-approve: only the runtime may auto-approve, not {actor!r}")
    p = store.get_proposal(proposal_id)
    if p.mode != "auto":
        raise PermissionDenied(
            f"auto-approve: proposal {p.id} was made in {p.mode} mode; only auto mode approves itself"
        )
    return _decide(store, p, actor.name, "approve", p.mv_values, "auto mode", None)


def _decide(
    store: Store,
    p: ProposalRecord,
    who: str,
    kind: str,
    values: Mapping[str, float] | None,
    note: str,
    evaluation: dict[str, Any] | None,
) -> int:
    return store.decide(p, user=who, kind=kind, values=values, note=note, evaluation=evaluation)


def _check_not_expired(store: Store, p: ProposalRecord) -> None:
    status = store.get_status(p.plant)
    # The runtime's plant clock is the newest sample time; past the expiry, approving is moot.
    if (
        status is not None
        and status.last_sample_ts is not None
        and status.last_sample_ts > p.expires_at
    ):
        raise ProposalClosed(f"proposal {p.id} expired at {iso(p.expires_at)} (plant clock)")


def _check_modification(
    store: Store, spec: PlantSpec, p: ProposalRecord, new_values: Mapping[str, float]
) -> dict[str, float]:
    mvs = {t.name for t in spec.mvs}
    overrides = store.operator_limits(spec.name)
    live = p.payload.get("mv_live") or {}
    problems, out = [], {}
    for tag, raw in new_values.items():
        if tag not in mvs:
            problems.append(f"{tag}: not a manipulated variable")
            continue
        try:
            v = float(raw)
        except (TypeError, ValueError):
            problems.append(f"{tag}: {raw!r} is not a number")
            continue
        if not math.isfinite(v):
            problems.append(f"{tag}: {raw!r} is not a finite number")
            continue
        lo, hi = effective_limits(spec, tag, overrides)
        if not lo <= v <= hi:
            problems.append(
                f"{tag}: {v:g} is outside the operator/engineering limits [{lo:g}, {hi:g}]"
            )
        cur, mm = live.get(tag), spec.tag(tag).max_move
        if cur is not None and mm is not None and abs(v - float(cur)) > mm + 1e-9:
            problems.append(
                f"{tag}: move {v - float(cur):+g} from {float(cur):g} exceeds max_move {mm:g}"
            )
        out[tag] = v
    missing = mvs - set(new_values)
    if missing:
        problems.append(f"missing values for {', '.join(sorted(missing))}")
    if problems:
        raise ModificationRefused(f"proposal {p.id}: " + "; ".join(problems))
    return out


def _evaluation_dict(result: Any) -> dict[str, Any]:
    if isinstance(result, bool):
        return {"ok": result, "reasons": [] if result else ["the twin rejects the modified plan"]}
    if is_dataclass(result) and not isinstance(result, type):
        d = asdict(result)
    elif isinstance(result, Mapping):
        d = dict(result)
    elif hasattr(result, "__dict__"):
        d = dict(vars(result))
    else:
        d = {"result": repr(result)}
    if "ok" not in d:
        flag = d.get("feasible", d.get("accepted", True))
        d["ok"] = bool(flag) and not d.get("reasons")
    return d
