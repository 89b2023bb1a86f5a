"""A twin home's security settings (`security.toml` beside the state store): session and log-in
rules, the two-person rule, and the site's OpenID Connect provider (docs/security.md)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twin.errors import BadInput
from twin.roles import Role

if TYPE_CHECKING:
    from twin.state import Store


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
