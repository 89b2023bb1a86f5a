"""Two control rooms (`twin app`), as on two hosts (each its own twin home, one shared audit
key), on one PostgreSQL state store, driven in real Chromium: a user made in the shared store
logs in on both, each room records its session there, and the audit verifies."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.app.room_plant import free_port, healthy, wait_for
from tests.state.backends import fresh_schema_url, postgres_url
from tests.support.browser import launch, require_chromium
from tests.support.procs import stop
from twin import audit
from twin.audit_keys import AuditFiles
from twin.paths import Home
from twin.state import Store
from twin.users import create_user

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

PASSWORD = "olga's long password"


def test_two_control_rooms_share_one_postgres_store(tmp_path: Path) -> None:
    require_chromium()
    from playwright.sync_api import sync_playwright

    url = fresh_schema_url(postgres_url())
    hosts = [Home.at(tmp_path / f"host{k}") for k in (1, 2)]
    store = Store(url, home=hosts[0])
    create_user(store, "olga", "operator", PASSWORD, actor="test")  # makes the audit key
    shutil.copytree(hosts[0].keys_dir, hosts[1].keys_dir)  # the site's one key, on each host
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TWIN_STATE_URL": url}
    rooms = []
    for h in hosts:
        port, log = free_port(), h.root / "app.log"
        cmd = [sys.executable, "-m", "twin.cli", "app", "--port", str(port), "--home", str(h.root)]
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        rooms.append((f"http://127.0.0.1:{port}", proc, log))
    try:
        for room_url, proc, log in rooms:
            wait_for(lambda u=room_url: healthy(u), 90, "the control room", proc, log)
        with sync_playwright() as pw:
            browser = launch(pw)
            for room_url, _, _ in rooms:
                page = browser.new_context().new_page()
                page.set_default_timeout(120_000)  # a loaded 2-core runner: slow first runs
                page.goto(room_url)
                page.get_by_role("textbox", name="User name").fill("olga")
                page.get_by_role("textbox", name="Password").fill(PASSWORD)
                page.get_by_role("button", name="Log in").click()
                page.get_by_text("Signed in as olga").wait_for()
            browser.close()
    finally:
        for _, proc, _ in rooms:
            stop(proc, signal.SIGTERM)
    # Both rooms wrote their log-in to the shared store, each under its own host's anchor.
    assert len(store.live_sessions("olga", time.time())) == 2
    assert [e["user"] for e in audit.entries(store, kind="login")] == ["olga", "olga"]
    for h in hosts:
        result = audit.verify(store, files=AuditFiles.of_home(h))
        assert result.ok, str(result)
    store.close()
