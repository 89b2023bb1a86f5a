"""Step-test campaigns: request, approve (two-person rule), abort, and the design's checks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, cast

from twin.auth import PermissionDenied, Role, Session, require, require_fresh
from twin.errors import BadInput
from twin.security_config import SecurityConfig
from twin.spec import PlantSpec
from twin.state import Store, iso, now_utc


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
