"""Roles, password hashing and the role check every API function makes.

Roles are ordered: viewer < operator (approve/reject) < engineer (also operator limits, step
tests, model promotion) < admin (users). The check reads the user's role from the state store
every time, so a caller cannot grant itself a role by passing a forged user object, and a
demoted or disabled user loses their rights at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from twin.errors import BadInput, TwinError

if TYPE_CHECKING:
    from twin.state import Store

log = logging.getLogger(__name__)

_hasher = PasswordHasher()


class Role(IntEnum):
    VIEWER = 0
    OPERATOR = 1
    ENGINEER = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str | Role) -> Role:
        if isinstance(text, Role):
            return text
        try:
            return cls[str(text).strip().upper()]
        except KeyError:
            names = ", ".join(r.name.lower() for r in cls)
            raise BadInput(f"role {text!r} is not one of {names}") from None

    def __str__(self) -> str:
        return self.name.lower()


class PermissionDenied(TwinError):
    """The acting user's role does not allow this action."""


class AuthError(TwinError):
    """Wrong user name or password, or a disabled user (one message for all: no user probing)."""


@dataclass(frozen=True)
class User:
    """An authenticated person: what the control room and the CLI pass to twin.api."""

    name: str
    role: Role


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def authenticate(store: Store, name: str, password: str) -> User:
    """The user with this name and password; raises AuthError otherwise."""
    rec = store.get_user(name)
    if rec is None or rec.disabled or not verify_password(rec.password_hash, password):
        # Spend the same time on unknown users as on known ones.
        if rec is None:
            verify_password(_DUMMY_HASH, password)
        log.info("failed log-in for %r", name)
        raise AuthError("wrong user name or password")
    return User(rec.name, Role.parse(rec.role))


def require(store: Store, user: User | str, needed: Role, action: str) -> User:
    """The acting user as stored, if their stored role allows `action`; else PermissionDenied."""
    name = user.name if isinstance(user, User) else str(user)
    rec = store.get_user(name)
    if rec is None or rec.disabled:
        raise PermissionDenied(f"{action}: unknown or disabled user {name!r}")
    role = Role.parse(rec.role)
    if role < needed:
        raise PermissionDenied(f"{action}: user {name!r} is a {role}; needs {needed} or above")
    return User(rec.name, role)


_DUMMY_HASH = hash_password("not a real password")
