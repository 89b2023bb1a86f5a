"""The control room's log-in through the site's identity provider: Streamlit's own OIDC log-in
(`st.login`), configured from `[oidc]` in the home's security.toml.

`twin app` writes Streamlit's `[auth]` secrets from that table into a 0600 file under the
home's keys folder (the client secret comes from the environment, never from security.toml)
and points Streamlit at it. Two provider entries share the client:

- `PROVIDER`: the everyday log-in; a browser already signed in at the provider comes straight
  back (single sign-on);
- `FRESH`: the re-authentication before an approval that writes to the plant; it asks the
  provider for a new log-in (`prompt=login`, `max_age=0`), whose `auth_time` the API checks.

Streamlit keeps the ID token (`expose_tokens = "id"`); the room hands it to
`twin.api.log_in_external` / `reauthenticate_external`, which verify it themselves.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

from twin.errors import BadInput
from twin.keyfiles import write_private
from twin.security_config import OidcConfig

PROVIDER = "twin"
FRESH = "twinfresh"  # Streamlit refuses provider names with an underscore
SECRETS_FILE = "room-oidc-secrets.toml"
_WILDCARDS = {"0.0.0.0", "::", ""}


def redirect_uri(cfg: OidcConfig, host: str, port: int, https: bool) -> str:
    """The callback URL the provider sends the browser back to (Streamlit's /oauth2callback)."""
    if cfg.redirect_uri:
        return cfg.redirect_uri
    if host in _WILDCARDS:
        raise BadInput(
            f"twin app --host {host}: set oidc.redirect_uri in security.toml to the address "
            "browsers use (https://room.example/oauth2callback)"
        )
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if https else 'http'}://{shown}:{port}/oauth2callback"


def auth_cookie_secret(room_key: bytes) -> str:
    """Streamlit's identity-cookie secret, derived from the room's cookie key (keys/)."""
    return hmac.new(room_key, b"streamlit identity cookie", hashlib.sha256).hexdigest()


def streamlit_secrets(
    cfg: OidcConfig, *, redirect: str, client_secret: str, cookie_secret: str
) -> str:
    """The text of Streamlit's secrets file: `[auth]` and the two provider entries."""

    def q(text: str) -> str:
        return json.dumps(text)  # a TOML basic string

    common = [
        f"client_id = {q(cfg.client_id)}",
        f"client_secret = {q(client_secret)}",
        f"server_metadata_url = {q(cfg.server_metadata_url)}",
    ]
    return "\n".join(
        [
            "# Written by `twin app` from [oidc] in security.toml; rewritten at every start.",
            "[auth]",
            f"redirect_uri = {q(redirect)}",
            f"cookie_secret = {q(cookie_secret)}",
            'expose_tokens = "id"',
            "",
            f"[auth.{PROVIDER}]",
            *common,
            f"client_kwargs = {{ scope = {q(cfg.scope)}, prompt = {q('select_account')} }}",
            "",
            f"[auth.{FRESH}]",
            *common,
            f"client_kwargs = {{ scope = {q(cfg.scope)}, prompt = {q('login')} }}",
            "authorize_params = { max_age = 0 }",
            "",
        ]
    )


def write_secrets(keys_dir: Path, text: str) -> Path:
    """Streamlit's secrets file, 0600 in the keys folder (it holds the client secret)."""
    path = keys_dir / SECRETS_FILE
    write_private(path, text.encode("utf-8"), replace=True)
    return path
