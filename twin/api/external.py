"""Log-in through the site's identity provider (OpenID Connect `[oidc]` in security.toml).

The control room lets Streamlit (`st.login`, with Authlib) run the browser's part: state,
nonce, PKCE, the code exchange and its own check of the ID token. It then hands the raw ID
token here, and this module trusts neither the room nor the browser with it: the token's
signature must verify under a key the provider publishes (its discovery document's
`jwks_uri`), the issuer must be the provider's, the audience our client id, the token unexpired,
issued within `login_window_s`, and not used before. Only then does the username claim name a
user and the role claim choose a role. A bare name, or claims without their signed token, are
never accepted. What this trusts, and its limits, are in docs/security.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from twin.auth import (
    AuthError,
    ExternalIdentity,
    Role,
    Session,
    open_external_session,
)
from twin.auth import reauthenticate_external as _reauth_session
from twin.security_config import OidcConfig, SecurityConfig
from twin.state import Store
from twin.users import NAME

log = logging.getLogger(__name__)

NO_PASSWORD = "!identity-provider"
"""The password hash of users added at their first provider log-in: not an argon2 hash, so no
password ever matches it (they log in through the provider only)."""

_KEYS_TTL_S = 300.0  # a provider's keys are fetched again after this (and on an unknown kid)
_LEEWAY_S = 60  # clock difference tolerated between the provider and this host
_SIGNING_ALGS = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}


def log_in_external(store: Store, id_token: str, *, source: str | None = None) -> Session:
    """A session for the user an ID token from the site's provider names (see the module doc).

    An unknown user is refused unless `create_users`; a known one gets the role the role claim
    maps to (the user table is updated and audited if it differs); a disabled user, or one whose
    claim maps to no role, is refused. Audited as a `login` naming the provider's issuer.
    """
    cfg = _config(store)
    claims = verify_id_token(cfg, id_token)
    identity = _identity(store, cfg, claims, source, create=cfg.create_users)
    _use_once(id_token, claims)
    return open_external_session(store, identity, source)


def reauthenticate_external(store: Store, session: Session, id_token: str) -> Session:
    """A fresh provider log-in of the session's user (the room asked the provider with
    `prompt=login` and `max_age=0`): approvals that write may follow for `reauth_s`."""
    cfg = _config(store)
    claims = verify_id_token(cfg, id_token)
    identity = _identity(store, cfg, claims, None, create=False)
    reauth_s = SecurityConfig.of(store).reauth_s
    age = time.time() - identity.auth_at
    if age > reauth_s:
        raise AuthError(
            f"the identity provider did not ask for your password again (last {age:.0f} s "
            f"ago, more than {reauth_s:g} s): log in with it again"
        )
    _use_once(id_token, claims)
    return _reauth_session(store, session, identity)


# ---- the ID token ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Provider:
    issuer: str
    jwks_uri: str
    algorithms: tuple[str, ...]
    keys: Any
    """joserfc KeySet of the provider's published keys."""
    fetched: float


_providers: dict[str, _Provider] = {}
_used: dict[str, float] = {}  # sha256 of a token used already -> when it may be forgotten
_lock = threading.Lock()


def verify_id_token(cfg: OidcConfig, id_token: str) -> dict[str, Any]:
    """The claims of an ID token the provider signed for this client, or AuthError."""
    from joserfc import jwt
    from joserfc.errors import InvalidKeyIdError, JoseError

    if not isinstance(id_token, str) or id_token.count(".") != 2:
        raise AuthError("the identity provider's log-in carries no ID token")
    provider = _provider(cfg)
    try:
        try:
            token = jwt.decode(id_token, provider.keys, algorithms=list(provider.algorithms))
        except InvalidKeyIdError:  # the provider rotated its keys
            provider = _provider(cfg, refresh=True)
            token = jwt.decode(id_token, provider.keys, algorithms=list(provider.algorithms))
        now = int(time.time())
        jwt.JWTClaimsRegistry(
            now=now,
            leeway=_LEEWAY_S,
            iss={"essential": True, "value": provider.issuer},
            aud={"essential": True, "value": cfg.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
        ).validate(token.claims)
    except (JoseError, ValueError) as exc:
        log.warning("refused an ID token: %s", exc)
        raise AuthError(f"the identity provider's ID token is not valid here: {exc}") from None
    claims = dict(token.claims)
    aud = claims["aud"]
    if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != cfg.client_id:
        raise AuthError("the ID token was issued to another client (azp)")
    iat = float(claims["iat"])
    if iat < now - cfg.login_window_s:
        raise AuthError(
            f"the identity provider's log-in is {now - iat:.0f} s old (at most "
            f"{cfg.login_window_s:g} s): log in with it again"
        )
    return claims


def _provider(cfg: OidcConfig, refresh: bool = False) -> _Provider:
    """The provider's issuer and signing keys, from its discovery document (cached)."""
    with _lock:
        cached = _providers.get(cfg.server_metadata_url)
        if cached is not None and not refresh and time.time() - cached.fetched < _KEYS_TTL_S:
            return cached
    meta = _get_json(cfg.server_metadata_url)
    issuer, jwks_uri = meta.get("issuer"), meta.get("jwks_uri")
    if not isinstance(issuer, str) or not isinstance(jwks_uri, str):
        raise AuthError(f"{cfg.server_metadata_url}: the discovery document lacks issuer/jwks_uri")
    offered = meta.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = tuple(a for a in offered if a in _SIGNING_ALGS)
    if not algorithms:
        raise AuthError(f"{cfg.server_metadata_url}: no asymmetric ID token algorithm ({offered})")
    from joserfc.jwk import KeySet

    try:
        keys = KeySet.import_key_set(_get_json(jwks_uri))  # type: ignore[arg-type]
    except (ValueError, KeyError, TypeError) as exc:
        raise AuthError(f"{jwks_uri}: the identity provider's keys are unreadable: {exc}") from None
    provider = _Provider(issuer, jwks_uri, algorithms, keys, time.time())
    with _lock:
        _providers[cfg.server_metadata_url] = provider
    return provider


def _get_json(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (https/http only)
            data = json.load(resp)
    except (OSError, ValueError) as exc:
        raise AuthError(f"cannot read {url} from the identity provider: {exc}") from None
    if not isinstance(data, dict):
        raise AuthError(f"{url}: the identity provider sent no JSON object")
    return data


def _use_once(id_token: str, claims: dict[str, Any]) -> None:
    """Refuse a token seen before (in this process), else remember it until it expires."""
    digest, now = hashlib.sha256(id_token.encode("ascii")).hexdigest(), time.time()
    with _lock:
        for d in [d for d, until in _used.items() if until < now]:
            del _used[d]
        if digest in _used:
            raise AuthError("this identity-provider log-in was used already: log in with it again")
        _used[digest] = float(claims["exp"]) + _LEEWAY_S


# ---- the user --------------------------------------------------------------------------


def _identity(
    store: Store, cfg: OidcConfig, claims: dict[str, Any], source: str | None, *, create: bool
) -> ExternalIdentity:
    """Who the verified claims name and the role they map to; the user table follows the
    provider's role (audited); refusals are audited as `login_refused`."""
    issuer = str(claims["iss"])
    name = claims.get(cfg.username_claim)
    if not isinstance(name, str) or not NAME.match(name):
        raise _refuse(
            store,
            "(unnamed)",
            issuer,
            source,
            f"the ID token's {cfg.username_claim!r} claim {name!r} is not a user name",
        )
    role = cfg.role_of(claims)
    if role is None:
        raise _refuse(
            store, name, issuer, source, f"no value of the {cfg.role_claim!r} claim maps to a role"
        )
    rec = store.get_user(name)
    actor = f"identity provider {issuer}"
    why = f"the {cfg.role_claim!r} claim at log-in"
    if rec is None:
        if not create:
            raise _refuse(
                store,
                name,
                issuer,
                source,
                f"user {name!r} is not in the control room's user table",
            )
        store.add_user(name, str(role), NO_PASSWORD, actor=actor)
    elif rec.disabled:
        raise _refuse(store, name, issuer, source, f"user {name!r} is disabled")
    elif Role.parse(rec.role) != role:
        store.set_user_role(name, str(role), actor=actor, why=why)
    auth_time = claims.get("auth_time", claims["iat"])
    if isinstance(auth_time, bool) or not isinstance(auth_time, int | float):
        raise AuthError(f"the ID token's auth_time {auth_time!r} is not a time")
    return ExternalIdentity(name, role, issuer, float(auth_time))


def _refuse(store: Store, name: str, issuer: str, source: str | None, why: str) -> AuthError:
    store.log_event(
        user=name,
        kind="login_refused",
        subject=f"user:{name}",
        what={"provider": issuer, "source": source},
        why=why,
    )
    return AuthError(f"log-in through the identity provider refused: {why}")


def _config(store: Store) -> OidcConfig:
    cfg = SecurityConfig.of(store).oidc
    if cfg is None:
        raise AuthError("no identity provider is configured ([oidc] in security.toml)")
    return cfg
