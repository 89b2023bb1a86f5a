"""Log-in and what the signed-in user may see: the runtime's users and roles.

The pages hide buttons a role may not use, but that is a courtesy only: every change goes
through twin.api, which checks the stored role itself.
"""

from __future__ import annotations

from twin.auth import AuthError, Role, User, authenticate
from twin.state import Store


def log_in(store: Store, name: str, password: str) -> User:
    """The user, or AuthError with one message for every failure (no user-name probing)."""
    if not name.strip() or not password:
        raise AuthError("enter a user name and a password")
    return authenticate(store, name.strip(), password)


def current_role(store: Store, user: User) -> Role | None:
    """The role as stored now (a demotion or disabling takes effect on the next page run)."""
    rec = store.get_user(user.name)
    if rec is None or rec.disabled:
        return None
    return Role.parse(rec.role)


def may(store: Store, user: User | None, needed: Role) -> bool:
    """Whether to show controls that need `needed` to this user."""
    if user is None:
        return False
    role = current_role(store, user)
    return role is not None and role >= needed
