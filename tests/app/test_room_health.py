"""The Health page in real Chromium against `twin app` on a real twin home (history, a tiny
trained twin, planner proposals, an approval and a rejection): its figures are the home's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from room_homes import PASSWORD, BuiltHome
from room_plant import free_port, healthy, wait_for

from twin import audit
from twin.state import Store

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def metric(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return box.locator('[data-testid="stMetricValue"]').inner_text().strip()


def test_health_page_shows_the_homes_figures(built: BuiltHome, tmp_path: Path) -> None:
    if not CHROMIUM.exists():  # CI installs Debian's chromium; a missing one is a failure
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium")
    from playwright.sync_api import sync_playwright

    name = built.spec.name
    with Store.open(built.home) as store:
        proposals = store.list_proposals(name, limit=1000)
        entries = audit.entries(store, plant=name)
    rejected = sum(e["kind"] == "reject" for e in entries)
    approved = [e for e in entries if e["kind"] == "approve"]
    assert rejected >= 1 and approved, "the home must hold a rejection and an approval"
    moves = sum(len(e["what"]["proposed"]) for e in approved)

    port, log = free_port(), tmp_path / "app.log"
    cmd = [sys.executable, "-m", "twin.cli", "app", "--port", str(port), "--plant", name]
    cmd += ["--home", str(built.home.root)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: healthy(url), 60, "the control room", [("app", proc, log)])
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(url, timeout=120_000)
            page.get_by_role("textbox", name="User name").fill("operator")
            page.get_by_role("textbox", name="Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            page.get_by_text("Signed in as operator").wait_for(timeout=120_000)
            nav = page.locator('[data-testid="stSidebarNav"]')
            nav.get_by_role("link", name="Health").click()
            page.get_by_role("heading", name=re.compile(f"^Health: {name}")).wait_for()
            page.get_by_text("Drift evidence").wait_for()
            assert metric(page, "Twin proposals") == str(len(proposals))
            assert metric(page, "Interventions") == str(rejected)
            assert metric(page, "Moves decided") == str(moves)
            plots = page.locator(".js-plotly-plot")
            wait_for(lambda: plots.count() == 3, 30, "three trend charts")
            titles = " ".join(plots.nth(i).inner_text() for i in range(3))
            for title in ("Service factor", "Interventions per hour", "Time at limits"):
                assert title in titles
            table = page.locator('[data-testid="stTable"]').first
            assert re.search(rf"intervention\s+reject\s+{rejected}\b", table.inner_text())
            page.get_by_text("No model_drift alarm and no retrain recommendation").wait_for()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(20)
