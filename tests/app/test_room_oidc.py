"""Log-in through the site's identity provider: a small OIDC provider on 127.0.0.1
(tests/support/oidc_provider.py), the real `twin app` configured for it from security.toml's
[oidc], and real Chromium. The role comes from the provider's groups claim and the API enforces
it; a reload keeps the session; an approval after a stale provider log-in needs a fresh one,
which the provider is asked for with prompt=login. The API checks the ID token itself: a forged,
replayed, stale or unmapped one opens no session."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from room_plant import healthy

from tests.support.browser import launch, require_chromium
from tests.support.oidc_provider import OidcProvider, ProviderUser
from tests.support.procs import free_port, stop, wait_for
from twin import api, audit
from twin.auth import AuthError, PermissionDenied, ReauthRequired, Role
from twin.spec import load_spec
from twin.state import Store
from twin.users import create_user

SECRET = "the room's client secret"
OSCAR = "oscar's provider password"


def provider() -> OidcProvider:
    def user(name: str, password: str, *groups: str) -> ProviderUser:
        return ProviderUser(password, {"preferred_username": name, "groups": list(groups)})

    users = {
        "oscar": user("oscar", OSCAR, "staff", "twin-operators"),
        "erin": user("erin", "erin's password", "twin-engineers"),
        "vic": user("vic", "vic's password", "staff"),
    }
    return OidcProvider(client_id="twin-room", client_secret=SECRET, users=users).start()


def write_security(home: Path, op: OidcProvider, reauth_s: float, **oidc: str) -> None:
    extra = "".join(f"{k} = {v}\n" for k, v in oidc.items())
    (home / "security.toml").write_text(
        f"reauth_s = {reauth_s}\n\n[oidc]\n"
        f'name = "Test IdP"\nserver_metadata_url = "{op.metadata_url}"\n'
        f'client_id = "twin-room"\n{extra}\n'
        '[oidc.roles]\ntwin-operators = "operator"\ntwin-engineers = "engineer"\n'
    )


def pending_proposal(store: Store) -> int:
    now = datetime.now(UTC)
    return store.add_proposal(
        plant="cstr",
        mv_values={"Tc": 300.0},
        payload={},
        data_ts=now,
        expires_at=now + timedelta(hours=1),
        model_version=None,
        mode="supervised",
    )


def last(store: Store, kind: str) -> dict:
    """The newest audit entry of a kind (kind, user, what, ...)."""
    return audit.entries(store, kind=kind)[-1]


def test_api_checks_the_id_token(tmp_path: Path) -> None:
    """No browser: tokens minted by the provider (or not) handed straight to the API."""
    op = provider()
    home = tmp_path / "home"
    try:
        with Store.open(home) as store:
            create_user(store, "oscar", "viewer", "a long local password", actor="test")
            write_security(home, op, 600)
            s = api.log_in_external(store, op.issue("oscar"), source="10.0.0.7")
            assert (s.name, s.role) == ("oscar", Role.OPERATOR)  # the claim's role, stored
            assert store.get_user("oscar").role == "operator"
            assert last(store, "login")["what"]["provider"] == op.issuer
            token = op.issue("oscar")
            api.log_in_external(store, token)
            with pytest.raises(AuthError, match="used already"):
                api.log_in_external(store, token)
            other = RSAKey.generate_key(2048, parameters={"kid": "k1"})
            claims = jwt.decode(op.issue("oscar"), op.key).claims
            forged = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, other)
            with pytest.raises(AuthError, match="not valid"):
                api.log_in_external(store, forged)
            with pytest.raises(AuthError, match="not valid"):  # issued to another client
                api.log_in_external(store, op.issue("oscar", aud="another-app"))
            with pytest.raises(AuthError, match="old"):
                api.log_in_external(store, op.issue("oscar", iat=int(time.time()) - 3600))
            with pytest.raises(AuthError, match="not in the control room's user table"):
                api.log_in_external(store, op.issue("erin"))
            with pytest.raises(AuthError, match="maps to a role"):
                api.log_in_external(store, op.issue("vic"))
            # With create_users, an unknown user is added with the mapped role and no password.
            write_security(home, op, 600, create_users="true")
            e = api.log_in_external(store, op.issue("erin"))
            assert e.role == Role.ENGINEER
            with pytest.raises(AuthError):
                api.log_in(store, "erin", "any password at all")
            # A fresh provider log-in re-authenticates; one made long ago does not.
            stale = op.issue("oscar", auth_time=time.time() - 3600)
            with pytest.raises(AuthError, match="did not ask for your password again"):
                api.reauthenticate_external(store, s, stale)
            with pytest.raises(AuthError, match="not 'oscar'"):
                api.reauthenticate_external(store, s, op.issue("erin"))
            fresh = api.reauthenticate_external(store, s, op.issue("oscar"))
            assert fresh.auth_at > s.auth_at - 5
            (home / "security.toml").write_text("reauth_s = 600\n")  # no [oidc]: refused
            with pytest.raises(AuthError, match="no identity provider"):
                api.log_in_external(store, op.issue("oscar"))
            refused = audit.entries(store, kind="login_refused")
            assert {e["user"] for e in refused} >= {"erin", "vic"}
            assert last(store, "reauth")["what"]["provider"] == op.issuer
    finally:
        op.stop()


@pytest.mark.browser
@pytest.mark.timeout(240)
def test_provider_log_in_in_the_room(tmp_path: Path) -> None:
    require_chromium()
    from playwright.sync_api import sync_playwright

    op = provider()
    home = tmp_path / "home"
    with Store.open(home) as store:
        create_user(store, "oscar", "viewer", "a long local password", actor="test")
        pid = pending_proposal(store)
    write_security(home, op, 86400)
    port, log = free_port(), tmp_path / "app.log"
    cmd = [sys.executable, "-m", "twin.cli", "app", "--port", str(port), "--home", str(home)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TWIN_OIDC_CLIENT_SECRET": SECRET}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: healthy(url), 60, "the control room", proc, log)
        assert (home / "keys" / "room-oidc-secrets.toml").stat().st_mode & 0o077 == 0
        with sync_playwright() as pw:
            browser = launch(pw)
            context = browser.new_context()
            page = context.new_page()
            page.set_default_timeout(60_000)  # a loaded 2-core CI runner
            page.goto(url)
            page.get_by_role("button", name="Log in with Test IdP").click(timeout=120_000)
            # The provider's own form, then back to the room with a session.
            page.get_by_label("Username").fill("oscar")
            page.get_by_label("Password").fill(OSCAR)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_text("Signed in as oscar (operator)").wait_for()
            assert op.forms_shown == 1
            page.wait_for_function("document.cookie.includes('twin_session=')")
            (cookie,) = [c for c in context.cookies() if c["name"] == "twin_session"]
            token = cookie["value"].rsplit(".", 1)[0]
            with Store.open(home) as store:
                s = api.resume(store, token)  # the API's own session, with the claim's role
                assert (s.name, s.role) == ("oscar", Role.OPERATOR)
                with pytest.raises(PermissionDenied, match="needs engineer"):
                    api.set_operator_limits(store, s, load_spec("cstr"), "T", 340.0, 360.0)
                login = last(store, "login")
                assert (login["user"], login["what"]["provider"]) == ("oscar", op.issuer)
            # A reload keeps the session without asking the provider.
            page.reload()
            page.get_by_text("Signed in as oscar (operator)").wait_for()
            assert op.forms_shown == 1
            # The provider log-in goes stale: approving is refused until a fresh one.
            write_security(home, op, 2)
            time.sleep(max(0.0, s.auth_at + 3 - time.time()))
            with Store.open(home) as store, pytest.raises(ReauthRequired):
                api.approve(store, pid, api.resume(store, token))
            page.reload()
            page.get_by_role("button", name="Log in again with Test IdP").click()
            page.get_by_label("Password").wait_for()  # the provider asks again, SSO or not
            assert op.forms_shown == 2
            asked = op.authorize_requests[-1]
            assert (asked["prompt"], asked["max_age"]) == ("login", "0")
            write_security(home, op, 120)  # the fresh log-in must count for the approval
            page.get_by_label("Username").fill("oscar")
            page.get_by_label("Password").fill(OSCAR)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_text("Signed in as oscar (operator)").wait_for()
            with Store.open(home) as store:
                wait_for(lambda: api.resume(store, token).auth_at > s.auth_at, 30, "re-auth")
                assert api.approve(store, pid, api.resume(store, token)) > 0
                reauth = last(store, "reauth")
                assert (reauth["user"], reauth["what"]["provider"]) == ("oscar", op.issuer)
            # Log-out ends the session and Streamlit's identity cookie: the log-in page again.
            page.get_by_role("button", name="Log out", exact=True).click()
            page.get_by_role("button", name="Log in with Test IdP").wait_for()
            with Store.open(home) as store:
                assert store.get_session(s.sid).revoked_at is not None
            assert re.search(r"Traceback", log.read_text()) is None, log.read_text()
            browser.close()
    finally:
        stop(proc)
        op.stop()


def test_oidc_settings_are_checked(tmp_path: Path) -> None:
    """security.toml's [oidc] is validated, naming the field; Streamlit's secrets come from it."""
    import tomllib

    from app.logic import oidc
    from twin.errors import BadInput
    from twin.security_config import SecurityConfig

    path = tmp_path / "security.toml"
    base = '[oidc]\nserver_metadata_url = "https://idp.example/.well-known/openid-configuration"\n'
    base += 'client_id = "twin-room"\n'
    bad = {
        '[oidc.roles]\nops = "superuser"\n': "superuser",
        'colour = "red"\n[oidc.roles]\nops = "operator"\n': "unknown oidc setting",
        'scope = "profile"\n[oidc.roles]\nops = "operator"\n': "openid",
        "login_window_s = 0\n[oidc.roles]\nops = 'operator'\n": "login_window_s",
        "[oidc.roles]\n": "at least one",
    }
    for tail, message in bad.items():
        path.write_text(base + tail)
        with pytest.raises(BadInput, match=message):
            SecurityConfig.load(path)
    path.write_text(base + '[oidc.roles]\nops = "operator"\nadmins = "admin"\n')
    cfg = SecurityConfig.load(path).oidc
    assert cfg is not None
    assert cfg.role_of({"groups": ["x", "ops", "admins"]}) == Role.ADMIN
    assert cfg.role_of({"groups": "ops"}) == Role.OPERATOR
    assert cfg.role_of({"groups": ["x"]}) is None and cfg.role_of({}) is None
    with pytest.raises(BadInput, match="redirect_uri"):
        oidc.redirect_uri(cfg, "0.0.0.0", 8501, https=False)
    text = oidc.streamlit_secrets(
        cfg,
        redirect=oidc.redirect_uri(cfg, "127.0.0.1", 8501, https=True),
        client_secret='s"e\\cret',
        cookie_secret="c" * 64,
    )
    auth = tomllib.loads(text)["auth"]
    assert auth["redirect_uri"] == "https://127.0.0.1:8501/oauth2callback"
    assert auth[oidc.PROVIDER]["client_secret"] == 's"e\\cret'
    assert auth[oidc.FRESH]["client_kwargs"]["prompt"] == "login"
    assert auth[oidc.FRESH]["authorize_params"] == {"max_age": 0}
