"""Operator limits, model promotion, users and incidents (see twin.api)."""

from __future__ import annotations

import math
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from twin.auth import Role, Session, User, check_session, require
from twin.errors import BadInput
from twin.guard import effective_limits
from twin.spec import PlantSpec
from twin.state import Store
from twin.users import create_user, set_disabled, set_role

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
