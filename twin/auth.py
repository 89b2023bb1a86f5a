"""Roles, passwords, log-in sessions and the check every API function makes.

Roles are ordered: viewer < operator (approve/reject) < engineer (also operator limits, step
tests, model promotion) < admin (users). twin.api takes a `Session` made by `log_in`: a random
token whose SHA-256 is stored with the user, an idle timeout and an absolute lifetime; it is
checked against the store on every call (revoked, idle, expired, user disabled), and the role
is read from the store each time, so a demoted or disabled user loses their rights at once.
A bare user name, or a `User` built by the caller, is refused. The runtime's own actions use
`RUNTIME`, which only the functions made for it accept. Settings: `SecurityConfig`, read from
`security.toml` beside the state store (docs/security.md).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
import tomllib
from dataclasses import dataclass, field, fields
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


@dataclass(frozen=True)
class OidcConfig:
    """The site's OpenID Connect identity provider (`[oidc]` in `security.toml`).

    The control room offers "Log in with <name>" (Streamlit's `st.login`) beside the password
    form; `twin.api.log_in_external` turns the provider's signed ID token into the same API
    session a password makes. docs/security.md says what it trusts.
    """

    server_metadata_url: str
    """The provider's discovery document (`.../.well-known/openid-configuration`)."""
    client_id: str
    """The control room's client id at the provider; ID tokens must name it in `aud`."""
    roles: dict[str, Role]
    """Values of `role_claim` -> the role they give (`twin-operators = "operator"`); the
    highest role among a user's values wins, and a user with none of them is refused."""
    client_secret_env: str = "TWIN_OIDC_CLIENT_SECRET"
    """The environment variable holding the client secret (never written in this file)."""
    name: str = "the identity provider"
    """What the log-in button calls the provider ("Log in with <name>")."""
    redirect_uri: str | None = None
    """The room's callback URL as the browser sees it (`https://room.site/oauth2callback`);
    default: `twin app`'s own address, which is wrong behind a reverse proxy."""
    scope: str = "openid profile email"
    """Scopes asked for; some providers send the groups claim only for an extra scope."""
    username_claim: str = "preferred_username"
    """The claim that names the user in the room's user table (pick one the provider's
    administrators set, not one users may edit)."""
    role_claim: str = "groups"
    """The claim (a string or a list of strings) whose values `roles` maps."""
    create_users: bool = False
    """Add an unknown user with the mapped role at their first log-in (else refuse them)."""
    login_window_s: float = 300.0
    """An ID token opens a session only this soon after the provider issued it (`iat`), and
    only once: a log-in cookie kept in another browser cannot reopen a logged-out session."""

    def __post_init__(self) -> None:
        texts = ("server_metadata_url", "client_id", "client_secret_env", "name", "scope")
        for key in (*texts, "username_claim", "role_claim"):
            v = getattr(self, key)
            if not isinstance(v, str) or not v.strip():
                raise BadInput(f"security.toml: oidc.{key} = {v!r} must be a non-empty string")
        for key in ("server_metadata_url", "redirect_uri"):
            v = getattr(self, key)
            if v is not None and not str(v).startswith(("https://", "http://")):
                raise BadInput(f"security.toml: oidc.{key} = {v!r} must be an absolute URL")
        if "openid" not in self.scope.split():
            raise BadInput(f"security.toml: oidc.scope = {self.scope!r} must include openid")
        if not isinstance(self.create_users, bool):
            raise BadInput(
                f"security.toml: oidc.create_users = {self.create_users!r} must be true or false"
            )
        v = self.login_window_s
        if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
            raise BadInput(f"security.toml: oidc.login_window_s = {v!r} must be a positive number")
        if not self.roles:
            raise BadInput("security.toml: oidc.roles must map at least one claim value to a role")

    @classmethod
    def from_toml(cls, raw: object, path: Path) -> OidcConfig:
        """The `[oidc]` table, with `[oidc.roles]` parsed; unknown keys are refused."""
        if not isinstance(raw, dict):
            raise BadInput(f"{path}: oidc must be a table ([oidc])")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise BadInput(f"{path}: unknown oidc setting(s) {', '.join(unknown)}")
        missing = [k for k in ("server_metadata_url", "client_id", "roles") if k not in raw]
        if missing:
            raise BadInput(f"{path}: [oidc] needs {', '.join(missing)}")
        roles = raw["roles"]
        if not isinstance(roles, dict):
            raise BadInput(f"{path}: oidc.roles must be a table of claim value = role")
        try:
            parsed = {str(k): Role.parse(v) for k, v in roles.items()}
        except BadInput as exc:
            raise BadInput(f"{path}: oidc.roles: {exc}") from None
        return cls(**{**raw, "roles": parsed})

    def role_of(self, claims: dict[str, Any]) -> Role | None:
        """The highest role the user's `role_claim` values map to, or None."""
        values = claims.get(self.role_claim)
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list):
            return None
        found = [self.roles[v] for v in values if isinstance(v, str) and v in self.roles]
        return max(found) if found else None


@dataclass(frozen=True)
class SecurityConfig:
    """Session and log-in rules of a twin home (`security.toml` beside `state.db`)."""

    idle_timeout_s: float = 900.0
    """A session unused this long ends (the control room's page runs count as use)."""
    session_lifetime_s: float = 12 * 3600.0
    """A session ends this long after its log-in, however busy (one shift)."""
    reauth_s: float = 600.0
    """An approval that writes to the plant needs the password entered within this time."""
    max_failures: int = 5
    """Failed log-ins of one name within `failure_window_s` before it is locked."""
    max_source_failures: int = 20
    """Failed log-ins from one source (any name) within the window before it is locked."""
    failure_window_s: float = 900.0
    """How far back failed log-ins count."""
    backoff_s: float = 300.0
    """How long log-ins stay refused after the failure that reached the limit."""
    single_operator: bool = False
    """Let the engineer who requested a step test approve it (a one-person site; audited)."""

    oidc: OidcConfig | None = None
    """The site's identity provider (`[oidc]`), if the control room offers its log-in."""

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "oidc":
                continue
            if f.type == "bool":
                if not isinstance(v, bool):
                    raise BadInput(f"security.toml: {f.name} = {v!r} must be true or false")
            elif isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
                raise BadInput(f"security.toml: {f.name} = {v!r} must be a positive number")

    @classmethod
    def load(cls, path: Path) -> SecurityConfig:
        """The file's settings over the defaults; a missing file means the defaults."""
        try:
            raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise BadInput(f"{path}: cannot read: {exc}") from exc
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise BadInput(f"{path}: unknown setting(s) {', '.join(unknown)}")
        if "oidc" in raw:
            raw["oidc"] = OidcConfig.from_toml(raw["oidc"], path)
        return cls(**raw)

    @classmethod
    def of(cls, store: Store) -> SecurityConfig:
        # Read at every use (a small file): a changed setting applies without a restart.
        return cls.load(Path(store.path).parent / "security.toml")


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
