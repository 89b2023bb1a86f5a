"""Users of the control room and the CLI: create, list, change role or password, disable."""

from __future__ import annotations

import re

from twin.auth import Role, User, hash_password
from twin.errors import BadInput
from twin.store import Store, iso, now_utc

NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8


class UserExists(BadInput):
    """A user with this name already exists."""


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise BadInput(f"password: must be at least {MIN_PASSWORD} characters")


def create_user(store: Store, name: str, role: Role | str, password: str, *, actor: str) -> User:
    """Add a user (audited). The role check is the caller's: twin.api.add_user, or the local CLI."""
    if not NAME.match(name):
        raise BadInput(f"user name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-'")
    r = Role.parse(role)
    _check_password(password)
    h = hash_password(password)
    with store.write() as c:
        if c.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
            raise UserExists(f"user {name!r} already exists")
        c.execute(
            "INSERT INTO users (name, role, password_hash, created_at, created_by) VALUES (?, ?, ?, ?, ?)",
            (name, str(r), h, iso(now_utc()), actor),
        )
        store.audit(
            c,
            user=actor,
            kind="user_add",
            subject=f"user:{name}",
            what={"name": name, "role": str(r)},
        )
    return User(name, r)


def set_role(store: Store, name: str, role: Role | str, *, actor: str, why: str = "") -> None:
    r = Role.parse(role)
    with store.write() as c:
        row = c.execute("SELECT role FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise BadInput(f"no user named {name!r}")
        c.execute("UPDATE users SET role = ? WHERE name = ?", (str(r), name))
        store.audit(c, user=actor, kind="user_role", subject=f"user:{name}",
                    what={"from": row[0], "to": str(r)}, why=why)  # fmt: skip


def set_password(store: Store, name: str, password: str, *, actor: str) -> None:
    _check_password(password)
    h = hash_password(password)
    with store.write() as c:
        if c.execute("UPDATE users SET password_hash = ? WHERE name = ?", (h, name)).rowcount == 0:
            raise BadInput(f"no user named {name!r}")
        store.audit(c, user=actor, kind="user_password", subject=f"user:{name}", what={})


def set_disabled(store: Store, name: str, disabled: bool, *, actor: str, why: str = "") -> None:
    with store.write() as c:
        if (
            c.execute(
                "UPDATE users SET disabled = ? WHERE name = ?", (int(disabled), name)
            ).rowcount
            == 0
        ):
            raise BadInput(f"no user named {name!r}")
        store.audit(c, user=actor, kind="user_disable" if disabled else "user_enable",
                    subject=f"user:{name}", what={}, why=why)  # fmt: skip


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
