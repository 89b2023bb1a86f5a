"""Streamlit glue shared by the pages: the cached store, the signed-in user, the chosen plant.

Pages stay thin: they call these helpers and the tested functions in app.logic.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitAuthError

from app import banner
from app.logic import context, oidc
from app.logic.session import (
    COOKIE,
    cookie_key,
    cookie_script,
    from_cookie,
    log_in,
    may,
    needs_reauth,
    sign,
)
from twin import api
from twin.auth import AuthError, NotAuthenticated, Role, Session
from twin.paths import Home
from twin.security_config import OidcConfig, SecurityConfig
from twin.spec import PlantSpec
from twin.state import Store


def room_config() -> context.RoomConfig:
    # Read per run (cheap): tests start several rooms on different homes in one process.
    return context.RoomConfig.from_env()


@st.cache_resource
def _store(root: str, target: str) -> Store:
    # One connection per server process; Store serialises threads behind its own lock.
    return Store(target, home=Home(Path(root)))


def home() -> Home:
    return Home.at(room_config().home)


def store() -> Store:
    h = home()
    return _store(str(h.root), str(h.state_target()))


@st.cache_resource(max_entries=4)
def model(home_root: str, spec_ref: str, version: str) -> Any:
    """A model version, loaded once per server (torch loads only on pages that need it)."""
    from twin import registry
    from twin.spec import load_spec

    tw = registry.load_version(home_root, load_spec(spec_ref), version)
    tw.eval()
    return tw


def user() -> Session | None:
    """The signed-in session, checked against the store on every page run (idle timeout,
    lifetime, log-out elsewhere); after a reload or on a deep link, resumed from the cookie."""
    s: Session | None = st.session_state.get("user")
    if s is None:
        cookie = _text(st.context.cookies.get(COOKIE))
        s = from_cookie(store(), cookie_key(home().keys_dir), cookie)
        if s is None:
            return None
    try:
        s = api.resume(store(), s.token)
    except NotAuthenticated as exc:
        st.session_state.pop("user", None)
        st.session_state["cookie_js"] = cookie_script(None, 0, _https())
        st.session_state["login_msg"] = str(exc).split(": ", 1)[-1]
        return None
    s = _fresh_provider_log_in(s)
    st.session_state["user"] = s
    return s


# ---- the site's identity provider (Streamlit's st.login; app/logic/oidc.py) -------------


def _oidc() -> OidcConfig | None:
    return SecurityConfig.of(store()).oidc


def _provider_token() -> tuple[str, dict[str, Any]] | None:
    """The ID token (and its claims as Streamlit read them) of this browser's provider log-in.

    The claims only choose what to show; twin.api verifies the token itself."""
    if not _provider_logged_in():
        return None
    token = _text(st.user.tokens.get("id"))
    return (token, st.user.to_dict()) if token else None


def _provider_logged_in() -> bool:
    # Without [auth] secrets Streamlit's st.user has no is_logged_in key at all.
    return st.user.get("is_logged_in") is True


def _first_try(token: str) -> bool:
    """True once per token in this browser session: a refused token is not retried each run."""
    tried: set[str] = st.session_state.setdefault("oidc_tried", set())
    key = hashlib.sha256(token.encode("utf-8")).hexdigest()
    if key in tried:
        return False
    tried.add(key)
    return True


def _provider_log_in() -> bool:
    """A session from this browser's fresh provider log-in (twin.api.log_in_external)."""
    held = _provider_token()
    if held is None or not _first_try(held[0]):
        return False
    try:
        s = api.log_in_external(store(), held[0], source=_text(st.context.ip_address))
    except AuthError as exc:
        st.session_state.setdefault("login_msg", str(exc))  # an idle-timeout note comes first
        return False
    _start(s)
    return True


def _fresh_provider_log_in(s: Session) -> Session:
    """After the provider asked this user to log in again (the FRESH entry), the session's
    re-authentication time moves to the provider's `auth_time` (twin.api checks it)."""
    held = _provider_token() if _oidc() is not None else None
    if held is None:
        return s
    token, claims = held
    auth_time = claims.get("auth_time", claims.get("iat"))
    if not isinstance(auth_time, int | float) or auth_time <= s.auth_at + 0.5:
        return s
    if not _first_try(token):
        return s
    try:
        return api.reauthenticate_external(store(), s, token)
    except AuthError as exc:
        st.session_state["reauth_msg"] = str(exc)
        return s


def _is_provider_user(cfg: OidcConfig, u: Session) -> bool:
    held = _provider_token()
    return held is not None and held[1].get(cfg.username_claim) == u.name


def _start(s: Session) -> None:
    """Keep a new session in this browser session and in the cookie."""
    st.session_state["user"] = s
    lifetime = SecurityConfig.of(store()).session_lifetime_s
    value = sign(cookie_key(home().keys_dir), s.token)
    st.session_state["cookie_js"] = cookie_script(value, lifetime, _https())


def _text(value: object) -> str | None:
    # Streamlit's test harness (AppTest) has no browser: its context values are not strings.
    return value if isinstance(value, str) else None


def _https() -> bool:
    return (_text(st.context.url) or "").startswith("https:")


def emit_cookie() -> None:
    """Set or clear the session cookie in the browser as the last log-in or log-out asked.

    On every page run of this browser session, not once: a run cut short by the next click
    may never have delivered the script (the page cannot learn whether it ran: Streamlit
    reads the cookies once, when the browser connects)."""
    script = st.session_state.get("cookie_js")
    if script:
        st.html(script, unsafe_allow_javascript=True)


def allowed(needed: Role) -> bool:
    return may(store(), user(), needed)


@dataclass(frozen=True)
class Page:
    """What every page works on."""

    home: Home
    store: Store
    user: Session
    plant: str
    spec: PlantSpec


def page() -> Page:
    """The page's context; stops the page with a message when there is no plant to show."""
    u = user()
    if u is None:
        # A page script run without app/main.py's navigation (Streamlit's first run of a
        # fresh server on a deep link goes straight to the pages/ file) still asks to log in.
        login_page()
        st.stop()
    plant = st.session_state.get("plant")
    if not plant:
        st.info(
            "No plant has data in this twin home yet. Start `twin serve PLANT` or `twin import`."
        )
        st.stop()
    try:
        spec = context.plant_spec(store(), plant)
    except Exception as exc:  # a bad spec must not take the whole control room down
        st.error(f"cannot load the spec of plant {plant!r}: {exc}")
        st.stop()
    banner.show(store(), plant)  # the standing alarms, above every page (app/banner.py)
    return Page(home(), store(), u, plant, spec)


def login_page() -> None:
    st.title("Twin control room")
    st.caption(f"twin home: {room_config().home}")
    cfg = _oidc()
    if cfg is not None:
        if _provider_log_in():
            st.rerun()
        if st.button(f"Log in with {cfg.name}", type="primary", key="oidc_login"):
            _st_login(oidc.PROVIDER)
        st.caption("or with a local account:")
    with st.form("login"):
        name = st.text_input("User name", key="login_name")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in")
    msg = st.session_state.pop("login_msg", None)
    if msg and not submitted:
        st.info(msg)
    if submitted:
        try:
            s = log_in(store(), name, password, source=_text(st.context.ip_address))
        except AuthError as exc:
            st.error(str(exc))
        else:
            _start(s)
            st.rerun()


def _log_out(everywhere: bool) -> None:
    u = user()
    if u is not None:
        api.log_out(store(), u, everywhere=everywhere)
    for k in ("user", "plant"):
        st.session_state.pop(k, None)
    st.session_state["cookie_js"] = cookie_script(None, 0, _https())
    if _provider_logged_in():
        st.logout()  # Streamlit's identity cookie too (and the provider's end_session_endpoint)
        st.stop()
    st.rerun()


def _reauth_form(u: Session) -> None:
    """Approvals that write to the plant need the password entered recently (twin.api)."""
    with st.expander("Confirm your password to approve writes"), st.form("reauth"):
        password = st.text_input("Password", type="password", key="reauth_password")
        if st.form_submit_button("Confirm"):
            try:
                st.session_state["user"] = api.reauthenticate(store(), u, password)
            except AuthError as exc:
                st.error(str(exc))
            else:
                st.rerun()


def _provider_reauth(cfg: OidcConfig) -> None:
    """For a provider user: a fresh log-in there, in place of the password confirmation."""
    msg = st.session_state.pop("reauth_msg", None)
    if msg:
        st.warning(msg)
    st.caption("Approvals that write to the plant need a fresh log-in.")
    if st.button(f"Log in again with {cfg.name}", key="oidc_reauth"):
        _st_login(oidc.FRESH)


def _st_login(provider: str) -> None:
    try:
        st.login(provider)
    except StreamlitAuthError as exc:  # [oidc] added after `twin app` started
        st.error(f"{exc} Restart `twin app` so that it writes the [oidc] settings for Streamlit.")


def sidebar() -> None:
    u = user()
    s = store()
    plants = context.known_plants(home(), s)
    cfg_plant = room_config().plant
    if cfg_plant:
        try:
            cfg_plant = context.plant_name(cfg_plant)
        except Exception as exc:  # a bad --plant must not take the control room down
            st.sidebar.error(f"--plant {cfg_plant}: {exc}")
            cfg_plant = None
    if cfg_plant and cfg_plant not in plants:
        plants.insert(0, cfg_plant)
    with st.sidebar:
        if u is not None:
            st.markdown(f"Signed in as **{u.name}** ({u.role})")
            cfg = _oidc()
            if u.role >= Role.OPERATOR and needs_reauth(s, u):
                if cfg is not None and _is_provider_user(cfg, u):
                    _provider_reauth(cfg)
                else:
                    _reauth_form(u)
        if plants:
            current = st.session_state.get("plant")
            if current not in plants:
                current = cfg_plant if cfg_plant in plants else plants[0]
            st.session_state["plant"] = st.selectbox("Plant", plants, index=plants.index(current))
        c1, c2 = st.columns(2)
        if c1.button("Log out", key="logout"):
            _log_out(everywhere=False)
        if c2.button("End all my sessions", key="logout_all"):
            _log_out(everywhere=True)
