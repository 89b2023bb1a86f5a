"""Users of the control room and the CLI: create, list, change role or password, disable."""

from __future__ import annotations

import re

from twin.auth import Role, User, hash_password
from twin.errors import BadInput
from twin.state import Store

NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise BadInput(f"password: must be at least {MIN_PASSWORD} characters")


def create_user(store: Store, name: str, role: Role | str, password: str, *, actor: str) -> User:
    """Add a user (audited). The role check is the caller's: twin.api.add_user, or the local CLI."""
    if not NAME.match(name):
        raise BadInput(f"user name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-'")
    r = Role.parse(role)
    _check_password(password)
    store.add_user(name, str(r), hash_password(password), actor=actor)
    return User(name, r)


def set_role(store: Store, name: str, role: Role | str, *, actor: str, why: str = "") -> None:
    store.set_user_role(name, str(Role.parse(role)), actor=actor, why=why)


def set_password(store: Store, name: str, password: str, *, actor: str) -> None:
    _check_password(password)
    store.set_user_password_hash(name, hash_password(password), actor=actor)


def set_disabled(store: Store, name: str, disabled: bool, *, actor: str, why: str = "") -> None:
    store.set_user_disabled(name, disabled, actor=actor, why=why)


def list_users(store: Store) -> list[tuple[str, Role, bool]]:
    """(name, role, disabled) for every user, by name."""
    return [(u.name, Role.parse(u.role), u.disabled) for u in store.list_users()]


def bootstrap_user(
    store: Store, name: str, role: Role | str, password: str, *, actor: str = "bootstrap"
) -> User:
    """Create the user, or reset their role and password if they exist (demo and first set-up).

    Local only, like `twin users add`: whoever runs it owns the state store already.
    """
    if store.get_user(name) is None:
        return create_user(store, name, role, password, actor=actor)
    set_role(store, name, role, actor=actor, why="bootstrap")
    set_password(store, name, password, actor=actor)
    set_disabled(store, name, False, actor=actor, why="bootstrap")
    return User(name, Role.parse(role))
