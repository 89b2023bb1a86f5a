"""What the control room and the CLI may do: every function takes the acting user's session
(`log_in`) and checks it and the user's role itself (twin.auth.require), so a page that forgets
a check, or a script that calls this module directly, still cannot approve as a viewer, and a
bare user name is refused. Approvals that write to the plant need the password entered
recently (`reauthenticate`); a step test needs a second engineer to approve it. Every change is
audited in the same transaction that makes it.

Decisions only record intent: the runtime picks approvals up, guards them against the live
plant and writes them (twin.serve). Nothing here talks to a plant.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from twin.auth import (
    RUNTIME,
    PermissionDenied,
    Role,
    RuntimeIdentity,
    SecurityConfig,
    Session,
    User,
    check_session,
    log_in,
    log_out,
    reauthenticate,
    require,
    require_fresh,
    resume,
)
from twin.errors import BadInput
from twin.guard import effective_limits
from twin.spec import PlantSpec, load_spec
from twin.state import ProposalClosed, ProposalRecord, Store, iso, now_utc
from twin.users import create_user, set_disabled, set_role

__all__ = ["log_in", "log_out", "reauthenticate", "resume"]  # sessions, from twin.auth

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


# ---- operator limits -------------------------------------------------------------------


def set_operator_limits(
    store: Store,
    user: Session,
    spec: PlantSpec,
    tag: str,
    lo: float,
    hi: float,
    reason: str = "",
) -> None:
    """Change a tag's operator limits (engineer); they must lie inside its engineering limits."""
    who = require(store, user, Role.ENGINEER, "change operator limits")
    t = spec.tag(tag) if tag in spec.tag_names else None
    if t is None:
        raise BadInput(f"plant {spec.name!r} has no tag {tag!r}")
    elo, ehi = t.limits
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
        raise BadInput(f"{tag}: operator limits [{lo}, {hi}] must be finite with lower < upper")
    if lo < elo or hi > ehi:
        raise BadInput(
            f"{tag}: operator limits [{lo:g}, {hi:g}] lie outside engineering limits [{elo:g}, {ehi:g}]"
        )
    before = effective_limits(spec, tag, store.operator_limits(spec.name))
    store.add_operator_limits(spec.name, tag, lo, hi, user=who.name, reason=reason, before=before)


def operator_limits(store: Store, spec: PlantSpec) -> dict[str, tuple[float, float]]:
    """The effective operator limits of every tag: the store's override, else the spec's."""
    overrides = store.operator_limits(spec.name)
    return {t.name: effective_limits(spec, t.name, overrides) for t in spec.tags}


# ---- models ----------------------------------------------------------------------------


def promote_model(
    store: Store, user: Session, home: Path | Any, plant: str, version: str, reason: str = ""
) -> None:
    """Make a model version the plant's active one (engineer); rolling back is the same call."""
    who = require(store, user, Role.ENGINEER, "promote a model")
    from twin import registry  # the registry is its own component; imported only when used

    registry.promote(home, plant, version)
    store.log_event(
        user=who.name,
        kind="model_promote",
        plant=plant,
        subject=f"model:{version}",
        what={"version": version},
        why=reason,
    )


# ---- step tests ------------------------------------------------------------------------


def request_steptest(
    store: Store, user: Session, spec: PlantSpec, design: Mapping[str, Any], note: str = ""
) -> int:
    """Ask for a step-test campaign on the live plant (engineer); it waits for approval."""
    who = require(store, user, Role.ENGINEER, "request a step test")
    moves = validate_design(spec, design)
    what = {"moves": len(moves), "duration_s": moves[-1]["at_s"] if moves else 0}
    return store.add_steptest(spec.name, design, user=who.name, note=note, what=what)


def approve_steptest(store: Store, user: Session, campaign_id: int, note: str = "") -> None:
    """Approve a requested campaign (engineer); the runtime then runs it, guarding each move.

    Two-person rule: the engineer who requested it cannot approve it, unless the home's
    security.toml says `single_operator = true` (then the waiver is audited).
    """
    who = require(store, user, Role.ENGINEER, "approve a step test")
    require_fresh(store, who, "approve a step test")
    requested_by = store.get_steptest(campaign_id).requested_by
    waived = requested_by == who.name
    if waived and not SecurityConfig.of(store).single_operator:
        raise PermissionDenied(
            f"approve a step test: two-person rule: {who.name!r} requested campaign "
            f"{campaign_id}, so another engineer must approve it (a one-person site sets "
            "single_operator = true in security.toml)"
        )
    _steptest_transition(
        store,
        campaign_id,
        who.name,
        "requested",
        "approved",
        "steptest_approve",
        note,
        approved_by=who.name,
        approved_at=iso(now_utc()),
    )
    if waived:
        store.log_event(
            user=who.name,
            kind="two_person_waived",
            subject=f"steptest:{campaign_id}",
            what={"requested_by": requested_by, "approved_by": who.name},
            why="single_operator = true in security.toml",
        )


def abort_steptest(store: Store, user: Session, campaign_id: int, reason: str = "") -> None:
    """Stop a campaign (operator and above: stopping is a safety action anyone on shift may take)."""
    who = require(store, user, Role.OPERATOR, "abort a step test")
    _steptest_transition(
        store,
        campaign_id,
        who.name,
        ("requested", "approved", "running"),
        "aborted",
        "steptest_abort",
        reason,
        aborted_by=who.name,
        finished_at=iso(now_utc()),
    )


def _steptest_transition(
    store: Store,
    cid: int,
    who: str,
    from_: str | tuple[str, ...],
    to: str,
    kind: str,
    why: str,
    **cols: Any,
) -> None:
    allowed = (from_,) if isinstance(from_, str) else from_
    store.move_steptest(cid, user=who, from_=allowed, to=to, kind=kind, why=why, **cols)


def validate_design(spec: PlantSpec, design: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A campaign's moves: {"moves": [{"at_s": seconds from start, "values": {mv: value}}, ...]}.

    Every value must lie inside the MV's operating limits and consecutive values may differ by
    at most max_move (the first move is checked against the live value when it runs).
    """
    moves = design.get("moves") if isinstance(design, Mapping) else None
    if not isinstance(moves, list) or not moves:
        raise BadInput("step-test design: 'moves' must be a non-empty list")
    mvs = {t.name: t for t in spec.mvs}
    last_at, last_val = -math.inf, cast(dict[str, float], {})
    for i, m in enumerate(moves):
        at, values = m.get("at_s"), m.get("values")
        if not isinstance(at, int | float) or not math.isfinite(at) or at < 0 or at < last_at:
            raise BadInput(
                f"step-test design: moves[{i}].at_s {at!r} must be >= 0 and not decrease"
            )
        if not isinstance(values, Mapping) or not values:
            raise BadInput(f"step-test design: moves[{i}].values must map MV names to values")
        for tag, v in values.items():
            t = mvs.get(tag)
            if t is None:
                raise BadInput(
                    f"step-test design: moves[{i}].values.{tag}: not an MV of {spec.name!r}"
                )
            lo, hi = t.operating_limits
            if not isinstance(v, int | float) or not math.isfinite(v) or not lo <= v <= hi:
                raise BadInput(
                    f"step-test design: moves[{i}].values.{tag}: {v!r} outside [{lo:g}, {hi:g}]"
                )
            if (
                tag in last_val
                and t.max_move is not None
                and abs(v - last_val[tag]) > t.max_move + 1e-9
            ):
                raise BadInput(
                    f"step-test design: moves[{i}].values.{tag}: step {v - last_val[tag]:+g} exceeds max_move {t.max_move:g}"
                )
            last_val[tag] = float(v)
        last_at = at
    return list(moves)


# ---- users, incidents ------------------------------------------------------------------


def add_user(store: Store, user: Session, name: str, role: Role | str, password: str) -> User:
    """Create a user (admin)."""
    who = require(store, user, Role.ADMIN, "add a user")
    return create_user(store, name, role, password, actor=who.name)


def change_role(store: Store, user: Session, name: str, role: Role | str, why: str = "") -> None:
    who = require(store, user, Role.ADMIN, "change a user's role")
    set_role(store, name, role, actor=who.name, why=why)


def disable_user(store: Store, user: Session, name: str, why: str = "") -> None:
    who = require(store, user, Role.ADMIN, "disable a user")
    set_disabled(store, name, True, actor=who.name, why=why)
    store.revoke_user_sessions(name, actor=who.name, why=f"user disabled: {why}", now=time.time())


def end_sessions(store: Store, user: Session, name: str, why: str = "") -> int:
    """Log a user out everywhere (admin; anyone may do it for themselves with log_out)."""
    who = check_session(store, user, "end a user's sessions")
    if who.name != name:
        who = require(store, user, Role.ADMIN, "end another user's sessions")
    return store.revoke_user_sessions(name, actor=who.name, why=why, now=time.time())


def mark_incident(
    store: Store,
    user: Session,
    plant: str,
    start: datetime,
    end: datetime,
    title: str,
    notes: str = "",
) -> int:
    """Mark a time window as an incident (any signed-in user: investigators are often viewers)."""
    who = require(store, user, Role.VIEWER, "mark an incident")
    if end < start:
        raise BadInput(f"incident: end {end} is before start {start}")
    if not title.strip():
        raise BadInput("incident: a title is required")
    return store.add_incident(plant, start, end, title, notes, user=who.name)
