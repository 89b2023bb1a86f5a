"""Log-in, the session cookie, and what the signed-in user may see.

The pages hide buttons a role may not use, but that is a courtesy only: every change goes
through twin.api, which checks the session and the stored role itself.

The cookie carries the API's own session token with an HMAC of it under a key of the twin
home (`keys/room-cookie.key`, 0600): a reload or a deep link resumes the same session the API
checks (idle timeout, lifetime, revocation), and a cookie the room did not issue is dropped
before the store is asked. Why a cookie set by the page's script, and what that does not
defend, is in docs/security.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from pathlib import Path

from twin import api
from twin.auth import AuthError, NotAuthenticated, Role, Session
from twin.keyfiles import read_private, write_private
from twin.security_config import SecurityConfig
from twin.state import Store

COOKIE = "twin_session"
_KEY_FILE = "room-cookie.key"


def log_in(store: Store, name: str, password: str, source: str | None = None) -> Session:
    """A new session, or AuthError with one message for every failure (no user-name probing)."""
    if not name.strip() or not password:
        raise AuthError("enter a user name and a password")
    return api.log_in(store, name.strip(), password, source=source)


def current_role(store: Store, user: Session) -> Role | None:
    """The role as stored now (a demotion or disabling takes effect on the next page run)."""
    rec = store.get_user(user.name)
    if rec is None or rec.disabled:
        return None
    return Role.parse(rec.role)


def may(store: Store, user: Session | None, needed: Role) -> bool:
    """Whether to show controls that need `needed` to this user."""
    if user is None:
        return False
    role = current_role(store, user)
    return role is not None and role >= needed


def needs_reauth(store: Store, user: Session) -> bool:
    """Whether an approval that writes would ask for the password again now."""
    import time

    return time.time() - user.auth_at > SecurityConfig.of(store).reauth_s


# ---- the session cookie ----------------------------------------------------------------


def cookie_key(keys_dir: Path) -> bytes:
    """The home's cookie-signing key, made (0600, in one step) at first use."""
    path = keys_dir / _KEY_FILE
    if not path.is_file():
        write_private(path, secrets.token_bytes(32))  # a racing process's key wins: same file
    return read_private(path)


def _mac(key: bytes, token: str) -> str:
    return hmac.new(key, token.encode("utf-8"), hashlib.sha256).hexdigest()


def sign(key: bytes, token: str) -> str:
    """The cookie value for a session token."""
    return f"{token}.{_mac(key, token)}"


def unsign(key: bytes, value: str | None) -> str | None:
    """The token of a cookie the room issued, else None (a forged or mangled cookie)."""
    if not value or "." not in value:
        return None
    token, mac = value.rsplit(".", 1)
    return token if hmac.compare_digest(mac, _mac(key, token)) else None


def from_cookie(store: Store, key: bytes, value: str | None) -> Session | None:
    """The live session a cookie names, or None (unsigned, logged out, idle or expired)."""
    token = unsign(key, value)
    if token is None:
        return None
    try:
        return api.resume(store, token)
    except NotAuthenticated:
        return None


def cookie_script(value: str | None, max_age_s: float, secure: bool) -> str:
    """A script that sets the session cookie (or clears it when value is None).

    SameSite=Strict keeps other sites' pages from sending it; Secure when served over HTTPS.
    """
    parts = [f"{COOKIE}={value or ''}", "Path=/", "SameSite=Strict"]
    parts.append(f"Max-Age={int(max_age_s) if value else 0}")
    if secure:
        parts.append("Secure")
    return f"<script>document.cookie = {json.dumps('; '.join(parts))};</script>"
