"""Roles, passwords, log-in sessions and the check every API function makes.

Roles are ordered: viewer < operator (approve/reject) < engineer (also operator limits, step
tests, model promotion) < admin (users). twin.api takes a `Session` made by `log_in`: a random
token whose SHA-256 is stored with the user, an idle timeout and an absolute lifetime; it is
checked against the store on every call (revoked, idle, expired, user disabled), and the role
is read from the store each time, so a demoted or disabled user loses their rights at once.
A bare user name, or a `User` built by the caller, is refused. The runtime's own actions use
`RUNTIME`, which only the functions made for it accept. Settings: `SecurityConfig`
(twin.security_config), read from `security.toml` beside the state store (docs/security.md).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from twin.errors import TwinError
from twin.roles import Role
from twin.security_config import SecurityConfig

if TYPE_CHECKING:
    from twin.state import Store

log = logging.getLogger(__name__)

_hasher = PasswordHasher()


class PermissionDenied(TwinError):
    """The acting user's role does not allow this action."""


class NotAuthenticated(PermissionDenied):
    """No valid session: a bare name, an unknown, logged-out, idle or expired session."""


class ReauthRequired(PermissionDenied):
    """An action that writes to the plant needs the password entered again recently."""


class AuthError(TwinError):
    """Wrong user name or password, or a disabled user (one message for all: no user probing)."""


class LoginThrottled(AuthError):
    """Too many failed log-ins for this name or from this source: wait for the back-off."""


@dataclass(frozen=True)
class User:
    """A user and their role (what `authenticate` returns); twin.api does not accept it."""

    name: str
    role: Role


@dataclass(frozen=True)
class Session:
    """A logged-in user: what the control room and scripts pass to twin.api.

    Only the token matters to the API: name and role are a convenience for display, and the
    API reads both from the store again on every call.
    """

    token: str = field(repr=False)
    name: str
    role: Role
    auth_at: float = 0.0
    """When the password was last entered, or the user last authenticated at the identity
    provider (Unix seconds)."""

    @property
    def sid(self) -> str:
        return token_id(self.token)


@dataclass(frozen=True)
class ExternalIdentity:
    """A user an identity provider vouched for, read from a verified ID token."""

    name: str
    role: Role
    provider: str
    """The provider's issuer (`iss`), named in the audit entry."""
    auth_at: float
    """When the user authenticated at the provider (`auth_time`, else `iat`; Unix seconds)."""


@dataclass(frozen=True)
class RuntimeIdentity:
    """The runtime acting on its own (auto mode): accepted only by twin.api.auto_approve."""

    name: str = "runtime(auto)"


RUNTIME = RuntimeIdentity()


def token_id(token: str) -> str:
    """What the store keeps of a token: its SHA-256 (a copy of the database logs no one in)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def authenticate(store: Store, name: str, password: str) -> User:
    """The user with this name and password; raises AuthError otherwise (not throttled: use
    log_in, which is)."""
    rec = store.get_user(name)
    if rec is None or rec.disabled or not verify_password(rec.password_hash, password):
        # Spend the same time on unknown users as on known ones.
        if rec is None:
            verify_password(_DUMMY_HASH, password)
        log.info("failed log-in for %r", name)
        raise AuthError("wrong user name or password")
    return User(rec.name, Role.parse(rec.role))


# ---- sessions --------------------------------------------------------------------------


def log_in(store: Store, name: str, password: str, source: str | None = None) -> Session:
    """A new session for a good password; failures count towards throttling (name, source)."""
    cfg, now = SecurityConfig.of(store), time.time()
    _check_throttle(store, cfg, name, source, now)
    try:
        user = authenticate(store, name, password)
    except AuthError:
        store.record_failed_login(name, source, now)
        _note_lock(store, cfg, name, source, now)
        raise
    now = time.time()  # the session starts after the (deliberately slow) password check
    return _new_session(store, cfg, user, source, auth_at=now)


def open_external_session(
    store: Store, identity: ExternalIdentity, source: str | None = None
) -> Session:
    """A session for a user an identity provider vouched for (twin.api.log_in_external makes
    the identity from a verified ID token; nothing else should)."""
    cfg = SecurityConfig.of(store)
    user = User(identity.name, identity.role)
    return _new_session(
        store, cfg, user, source, auth_at=identity.auth_at, provider=identity.provider
    )


def _new_session(
    store: Store,
    cfg: SecurityConfig,
    user: User,
    source: str | None,
    *,
    auth_at: float,
    provider: str | None = None,
) -> Session:
    now = time.time()
    token = secrets.token_urlsafe(32)
    store.add_session(
        token_id(token),
        user.name,
        now=now,
        expires_at=now + cfg.session_lifetime_s,
        source=source,
        auth_at=auth_at,
        provider=provider,
    )
    return Session(token, user.name, user.role, auth_at)


def check_session(store: Store, session: object, action: str = "act") -> Session:
    """The session as it stands now (stored role, last password time), or NotAuthenticated."""
    if not isinstance(session, Session):
        raise NotAuthenticated(
            f"{action}: needs a logged-in session (twin.api.log_in), not {_kind(session)}"
        )
    cfg, now = SecurityConfig.of(store), time.time()
    rec = store.get_session(session.sid)
    if rec is None:
        raise NotAuthenticated(f"{action}: unknown session; log in again")
    if rec.revoked_at is not None:
        raise NotAuthenticated(f"{action}: the session was logged out ({rec.revoked_why})")
    if now >= rec.expires_at:
        raise NotAuthenticated(
            f"{action}: the session reached its lifetime of {cfg.session_lifetime_s:g} s; "
            "log in again"
        )
    if now - rec.last_seen > cfg.idle_timeout_s:
        raise NotAuthenticated(
            f"{action}: the session was idle {now - rec.last_seen:.0f} s "
            f"(timeout {cfg.idle_timeout_s:g} s); log in again"
        )
    user = store.get_user(rec.user)
    if user is None or user.disabled:
        raise NotAuthenticated(f"{action}: user {rec.user!r} is unknown or disabled")
    # One write per few seconds at most: page reruns must not each commit a transaction.
    if now - rec.last_seen > min(5.0, cfg.idle_timeout_s / 10):
        store.touch_session(rec.id, now)
    return Session(session.token, rec.user, Role.parse(user.role), rec.auth_at)


def resume(store: Store, token: str) -> Session:
    """The session of a token (from the control room's cookie), checked like any API call."""
    return check_session(store, Session(token, "", Role.VIEWER), "resume a session")


def reauthenticate(store: Store, session: Session, password: str) -> Session:
    """The password entered again in a live session: approvals that write may follow."""
    s = check_session(store, session, "re-authenticate")
    cfg, now = SecurityConfig.of(store), time.time()
    _check_throttle(store, cfg, s.name, None, now)
    try:
        authenticate(store, s.name, password)
    except AuthError:
        store.record_failed_login(s.name, None, now)
        _note_lock(store, cfg, s.name, None, now)
        raise
    now = time.time()
    store.reauth_session(s.sid, s.name, now)
    return Session(s.token, s.name, s.role, now)


def reauthenticate_external(store: Store, session: Session, identity: ExternalIdentity) -> Session:
    """A fresh provider log-in of the session's own user (twin.api.reauthenticate_external
    makes the identity from a verified ID token): approvals that write may follow."""
    s = check_session(store, session, "re-authenticate")
    if identity.name != s.name:
        raise AuthError(
            f"the identity provider logged in {identity.name!r}, not {s.name!r}: log out first"
        )
    store.reauth_session(
        s.sid, s.name, time.time(), auth_at=identity.auth_at, provider=identity.provider
    )
    return Session(s.token, s.name, s.role, identity.auth_at)


def require_fresh(store: Store, session: Session, action: str) -> None:
    """Refuse unless the session's password (or provider log-in) is younger than `reauth_s`."""
    cfg = SecurityConfig.of(store)
    age = time.time() - session.auth_at
    if age > cfg.reauth_s:
        raise ReauthRequired(
            f"{action}: writes to the plant; enter your password again, or log in with the "
            f"identity provider again (last done {age:.0f} s ago, at most {cfg.reauth_s:g} s)"
        )


def log_out(store: Store, session: Session, *, everywhere: bool = False) -> int:
    """End this session, or every session of its user; returns how many ended."""
    s = check_session(store, session, "log out")
    now = time.time()
    if everywhere:
        return store.revoke_user_sessions(s.name, actor=s.name, why="log out everywhere", now=now)
    return int(store.revoke_session(s.sid, actor=s.name, why="log out", now=now))


def require(store: Store, session: object, needed: Role, action: str) -> Session:
    """The acting session as stored now, if its user's stored role allows `action`."""
    s = check_session(store, session, action)
    if s.role < needed:
        raise PermissionDenied(f"{action}: user {s.name!r} is a {s.role}; needs {needed} or above")
    return s


def _kind(obj: object) -> str:
    if isinstance(obj, str):
        return f"a bare user name ({obj!r})"
    if isinstance(obj, User):
        return f"a User object ({obj.name!r}) without a session"
    return f"a {type(obj).__name__}"


# ---- log-in throttling -----------------------------------------------------------------


def _locks(
    store: Store, cfg: SecurityConfig, name: str, source: str | None, now: float
) -> list[tuple[str, float]]:
    """(what is locked, until when) for the name and the source, if either is locked now."""
    since, out = now - cfg.failure_window_s, []
    by_name = store.failed_logins(since=since, name=name)
    if by_name.count >= cfg.max_failures and by_name.newest is not None:
        out.append((f"user name {name!r}", by_name.newest + cfg.backoff_s))
    if source:
        by_src = store.failed_logins(since=since, source=source)
        if by_src.count >= cfg.max_source_failures and by_src.newest is not None:
            out.append((f"source {source}", by_src.newest + cfg.backoff_s))
    return [(what, until) for what, until in out if until > now]


def _check_throttle(
    store: Store, cfg: SecurityConfig, name: str, source: str | None, now: float
) -> None:
    locks = _locks(store, cfg, name, source, now)
    if not locks:
        return
    what, until = max(locks, key=lambda w: w[1])
    why = f"too many failed log-ins for {what}: try again in {until - now:.0f} s"
    store.log_event(
        user=name,
        kind="login_refused",
        subject=f"user:{name}",
        what={"source": source, "locked": what, "until": until},
        why=why,
    )
    raise LoginThrottled(why)


def _note_lock(
    store: Store, cfg: SecurityConfig, name: str, source: str | None, now: float
) -> None:
    """Audit the failure that locks a name or source (once, when the lock starts)."""
    since = now - cfg.failure_window_s
    n_name = store.failed_logins(since=since, name=name).count
    counts = [(f"user name {name!r}", n_name, cfg.max_failures)]
    if source:
        n = store.failed_logins(since=since, source=source).count
        counts.append((f"source {source}", n, cfg.max_source_failures))
    for what, n, limit in counts:
        if n == limit:
            store.log_event(
                user=name,
                kind="login_locked",
                subject=f"user:{name}",
                what={"source": source, "failures": n, "backoff_s": cfg.backoff_s},
                why=f"{n} failed log-ins for {what} within {cfg.failure_window_s:g} s",
            )


_DUMMY_HASH = hash_password("not a real password")
