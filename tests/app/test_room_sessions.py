"""Control-room sessions in real Chromium against `twin app`: a deep link shows the log-in form
(no "Page not found"), the log-in survives a reload and a new tab on another page through the
signed cookie, log-out ends the session in the store, and a forged cookie logs no one in."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from room_plant import free_port, healthy, wait_for

from tests.support.browser import launch, require_chromium
from twin import api
from twin.auth import NotAuthenticated
from twin.state import Store
from twin.users import create_user

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

PASSWORD = "olga's long password"


def signed_in(page) -> None:
    page.get_by_text("Signed in as olga").wait_for()
    # Streamlit may still show the previous run's elements for a moment: the form must go.
    page.get_by_role("button", name="Log in").wait_for(state="detached")


def login_form(page, timeout_s: float = 30) -> None:
    page.get_by_role("button", name="Log in").wait_for(timeout=timeout_s * 1000)
    assert page.get_by_text("Page not found").count() == 0
    page.get_by_text("Signed in as").wait_for(state="detached")


def test_reload_deep_link_and_log_out(tmp_path: Path) -> None:
    require_chromium()
    from playwright.sync_api import sync_playwright

    home = tmp_path / "home"
    with Store.open(home) as store:
        create_user(store, "olga", "operator", PASSWORD, actor="test")
    port, log = free_port(), tmp_path / "app.log"
    cmd = [sys.executable, "-m", "twin.cli", "app", "--port", str(port), "--home", str(home)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: healthy(url), 60, "the control room", proc, log)
        with sync_playwright() as pw:
            browser = launch(pw)
            context = browser.new_context()
            page = context.new_page()
            page.set_default_timeout(
                60_000
            )  # a loaded 2-core CI runner: Streamlit reruns can take long
            # A deep link while logged out: the log-in form at that address, then the page.
            # A fresh server runs a deep link's page file directly (Streamlit's pages/ folder)
            # the first time: it too asks to log in. Then the root page sets up navigation.
            page.goto(url + "/proposals")
            login_form(page, timeout_s=120)  # the server's first page run imports the twin
            page.goto(url)
            login_form(page)
            page.goto(url + "/proposals")
            login_form(page)
            page.get_by_role("textbox", name="User name").fill("olga")
            page.get_by_role("textbox", name="Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            signed_in(page)
            assert page.url.endswith("/proposals")
            page.wait_for_function("document.cookie.includes('twin_session=')")
            (cookie,) = [c for c in context.cookies() if c["name"] == "twin_session"]
            assert cookie["sameSite"] == "Strict"
            token = cookie["value"].rsplit(".", 1)[0]
            with Store.open(home) as store:
                assert api.resume(store, token).name == "olga"  # the API's own session
            # A reload, and a new tab on another page, keep the session.
            page.reload()
            signed_in(page)
            other = context.new_page()
            other.goto(url + "/audit")
            signed_in(other)
            assert other.url.endswith("/audit")
            other.close()
            # Log-out ends the session in the store and in the browser.
            page.get_by_role("button", name="Log out", exact=True).click()
            login_form(page)
            page.wait_for_function("!document.cookie.includes('twin_session=')")
            with Store.open(home) as store, pytest.raises(NotAuthenticated, match="logged out"):
                api.resume(store, token)
            page.reload()
            login_form(page)
            # The old cookie put back (e.g. copied before the log-out) logs no one in, nor does
            # a cookie with a made-up signature.
            for value in (cookie["value"], token + ".0123abcd"):
                context.add_cookies([{**cookie, "value": value}])
                page.goto(url + "/proposals")
                login_form(page)
            assert re.search(r"Traceback", log.read_text()) is None, log.read_text()
            browser.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(home, ignore_errors=True)
