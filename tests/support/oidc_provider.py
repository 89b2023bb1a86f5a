"""A small OpenID Connect provider on 127.0.0.1 for the tests: discovery document, an authorize
endpoint with a log-in form, a token endpoint issuing RS256-signed ID tokens, and its JWKS.

Enough of OIDC Core for the authorization-code flow a real client (Streamlit's `st.login`,
Authlib) runs: `state`, `nonce`, PKCE S256, client authentication (basic or post), `prompt=login`
and `max_age`. A browser that logged in before keeps the provider's own session cookie and is
sent straight back (single sign-on) unless the client asks for a fresh log-in. Every authorize
request and every form shown is recorded, so a test can tell whether the provider asked again.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.support.procs import free_port


@dataclass
class ProviderUser:
    password: str
    claims: dict[str, Any]
    """Extra ID token claims: preferred_username, groups, ..."""


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    user: str
    nonce: str | None
    auth_time: float
    challenge: str | None


@dataclass
class OidcProvider:
    """Start with `start()`, stop with `stop()`; `issuer` is its base URL."""

    client_id: str
    client_secret: str
    users: dict[str, ProviderUser]
    token_lifetime_s: int = 300
    port: int = field(default_factory=free_port)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    forms_shown: int = 0
    logins: list[str] = field(default_factory=list)
    """Names of users who entered their password, in order."""

    def __post_init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
        self._grants: dict[str, _Grant] = {}
        self._sessions: dict[str, tuple[str, float]] = {}  # cookie -> (user, auth_time)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def start(self) -> OidcProvider:
        provider = self

        class Handler(_Handler):
            op = provider

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # ---- what the endpoints do --------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce"],
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.as_dict(private=False)]}

    def id_token(self, grant: _Grant, **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": f"sub-{grant.user}",
            "aud": grant.client_id,
            "iat": now,
            "exp": now + self.token_lifetime_s,
            "auth_time": int(grant.auth_time),
            "jti": secrets.token_hex(8),
            **self.users[grant.user].claims,
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        claims.update(overrides)
        return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.key)

    def issue(self, user: str, *, auth_time: float | None = None, **claims: Any) -> str:
        """An ID token for `user` as the token endpoint would sign it (claims override)."""
        grant = _Grant(self.client_id, "", user, None, auth_time or time.time(), None)
        return self.id_token(grant, **claims)

    def needs_login(self, params: dict[str, str], cookie: str | None) -> str | None:
        """The signed-in user if the browser may skip the form, else None."""
        with self._lock:
            held = self._sessions.get(cookie or "")
        if held is None or "login" in params.get("prompt", "").split():
            return None
        max_age = params.get("max_age")
        if max_age is not None and time.time() - held[1] > float(max_age):
            return None
        return held[0]

    def grant(self, params: dict[str, str], user: str, auth_time: float) -> str:
        """A redirect back to the client with a fresh authorization code."""
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._grants[code] = _Grant(
                client_id=params["client_id"],
                redirect_uri=params["redirect_uri"],
                user=user,
                nonce=params.get("nonce"),
                auth_time=auth_time,
                challenge=params.get("code_challenge"),
            )
        query = {"code": code}
        if "state" in params:
            query["state"] = params["state"]
        return f"{params['redirect_uri']}?{urlencode(query)}"

    def log_in(self, name: str, password: str) -> tuple[str, float] | None:
        user = self.users.get(name)
        if user is None or not secrets.compare_digest(user.password, password):
            return None
        cookie, now = secrets.token_urlsafe(16), time.time()
        with self._lock:
            self._sessions[cookie] = (name, now)
            self.logins.append(name)
        return cookie, now

    def exchange(self, form: dict[str, str], auth_header: str | None) -> dict[str, Any]:
        """The token endpoint: a code (once), the client's secret, the PKCE verifier."""
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if auth_header and auth_header.startswith("Basic "):
            raw = base64.b64decode(auth_header[6:]).decode()
            client_id, secret = raw.split(":", 1)
        if client_id != self.client_id or secret != self.client_secret:
            raise _OAuthError("invalid_client", 401)
        if form.get("grant_type") != "authorization_code":
            raise _OAuthError("unsupported_grant_type")
        with self._lock:
            grant = self._grants.pop(form.get("code", ""), None)
        if grant is None or grant.redirect_uri != form.get("redirect_uri"):
            raise _OAuthError("invalid_grant")
        if grant.challenge is not None:
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.challenge:
                raise _OAuthError("invalid_grant")
        return {
            "access_token": secrets.token_urlsafe(24),
            "token_type": "Bearer",
            "expires_in": self.token_lifetime_s,
            "id_token": self.id_token(grant),
            "scope": "openid profile email",
        }


class _OAuthError(Exception):
    def __init__(self, error: str, status: int = 400) -> None:
        super().__init__(error)
        self.error, self.status = error, status


class _Handler(BaseHTTPRequestHandler):
    op: OidcProvider

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/.well-known/openid-configuration":
            self._json(self.op.discovery())
        elif url.path == "/jwks":
            self._json(self.op.jwks())
        elif url.path == "/authorize":
            params = {k: v[0] for k, v in parse_qs(url.query).items()}
            self.op.authorize_requests.append(params)
            if params.get("client_id") != self.op.client_id or "redirect_uri" not in params:
                self._send(400, "text/plain", b"unknown client")
                return
            user = self.op.needs_login(params, self._cookie())
            if user is None:
                self._form(params)
            else:
                with self.op._lock:
                    auth_time = self.op._sessions[self._cookie() or ""][1]
                self._redirect(self.op.grant(params, user, auth_time))
        else:
            self._send(404, "text/plain", b"not found")

    def do_POST(self) -> None:
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        if url.path == "/authorize":
            params = json.loads(form.get("params", "{}"))
            held = self.op.log_in(form.get("username", ""), form.get("password", ""))
            if held is None:
                self._form(params, error="wrong user name or password")
                return
            cookie, auth_time = held
            self._redirect(
                self.op.grant(params, form["username"], auth_time),
                cookie=f"op_session={cookie}; Path=/; HttpOnly; SameSite=Lax",
            )
        elif url.path == "/token":
            try:
                self._json(self.op.exchange(form, self.headers.get("Authorization")))
            except _OAuthError as exc:
                self._json({"error": exc.error}, exc.status)
        else:
            self._send(404, "text/plain", b"not found")

    # ---- helpers ------------------------------------------------------------------------

    def _cookie(self) -> str | None:
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == "op_session":
                return value
        return None

    def _form(self, params: dict[str, str], error: str = "") -> None:
        self.op.forms_shown += 1
        page = f"""<!doctype html><html><body><h1>Test provider log-in</h1>
<p>{html.escape(error)}</p>
<form method="post" action="/authorize">
<label>Username <input name="username" aria-label="Username"></label>
<label>Password <input name="password" type="password" aria-label="Password"></label>
<input type="hidden" name="params" value="{html.escape(json.dumps(params))}">
<button type="submit">Sign in</button></form></body></html>"""
        self._send(200, "text/html; charset=utf-8", page.encode())

    def _redirect(self, location: str, cookie: str | None = None) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        if cookie:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _json(self, body: dict[str, Any], status: int = 200) -> None:
        self._send(status, "application/json", json.dumps(body).encode())

    def _send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)
