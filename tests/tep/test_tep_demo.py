"""`twin demo --plant tep` brings up the control room on the Tennessee Eastman plant: the
simulated plant serves its 50 tags over OPC-UA, the runtime reads them into the historian and
the control room answers. A quick twin is trained beforehand so that the demo skips training
(the demo's own 40 h + 60 s training is for people, not for CI)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.opcua import OpcuaSource
from connectors.opcua_client import OpcuaConnection
from twin.historian import Historian
from twin.paths import Home
from twin.spec import load_spec


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(*args: str, home: Path) -> None:
    cmd = [sys.executable, "-m", "twin.cli", *args, "--home", str(home)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(420)
async def test_twin_demo_serves_the_tep_tags_to_the_runtime_and_the_room(tmp_path: Path) -> None:
    home = tmp_path / "home"
    start = (datetime.now(UTC) - timedelta(hours=8)).replace(microsecond=0).isoformat()
    _cli("generate", "tep", "--hours", "8", "--seed", "1", "--start", start, home=home)
    _cli("train", "tep", "--quick", home=home)
    spec = load_spec("tep")
    port = _free_port()
    cmd = [sys.executable, "-m", "twin.cli", "demo", "--plant", "tep", "--home", str(home)]
    demo = subprocess.Popen(
        [*cmd, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    shown = []
    try:
        assert demo.stdout is not None
        while not any(line.startswith("Control room:") for line in shown):
            line = demo.stdout.readline()
            assert line, "".join(shown)
            shown.append(line)
        assert f"http://127.0.0.1:{port}" in shown[-1]
        assert "scenario base" in "".join(shown)

        # The plant serves every tep tag: 41 XMEAS, the operating cost and the 9 setpoints.
        samples = []
        async with OpcuaSource(spec, OpcuaConnection.from_spec(spec)) as source:
            async for batch in source.batches():
                samples += batch
                if {s.tag for s in samples} == set(spec.tag_names):
                    break
        assert len(spec.tag_names) == 51

        # The runtime reads them from the plant into the historian (live, after the demo began).
        began = datetime.now(UTC) - timedelta(minutes=1)
        deadline = time.monotonic() + 120
        live: set[str] = set()
        while time.monotonic() < deadline and live != set(spec.tag_names):
            time.sleep(2.0)
            with Historian(Home.at(home).historian_dir("tep")) as historian:
                latest = historian.latest()
            live = {tag for tag, s in latest.items() if s.ts >= began}
        assert live == set(spec.tag_names)

        # The room shows the 51 tags one unit at a time (tiles and trends of that unit only).
        password = (home / "runs" / "demo" / "password").read_text().strip()
        # Playwright's sync API in a thread: this test's own event loop runs here.
        url = f"http://127.0.0.1:{port}"
        separator = [t.name for t in spec.tags if t.group == "separator"]
        shown = await asyncio.to_thread(_overview_of_unit, url, password, "separator", 6)
        assert shown["tiles"] == len(separator) == 6, shown
        assert shown["charts"] == sorted(separator), shown
        assert "separator_level [%] (cv)" in shown["labels"], shown
        assert not any(label.startswith("reactor_pressure ") for label in shown["labels"]), shown
    finally:
        demo.send_signal(signal.SIGTERM)
        out, _ = demo.communicate(timeout=60)
    assert "Traceback" not in out
    logs = home / "runs" / "demo"
    for name in ("plant", "runtime", "control-room"):
        assert "Traceback" not in (logs / f"{name}.log").read_text(), name


def _overview_of_unit(url: str, password: str, unit: str, charts_expected: int) -> dict:
    """Log in as the demo engineer in Chromium, choose `unit` on the Overview: what it shows
    (once it shows `charts_expected` trend charts, or after a minute)."""
    from playwright.sync_api import sync_playwright

    from tests.support.browser import ARTIFACTS, choose, launch, require_chromium

    require_chromium()
    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(90_000)  # a loaded 2-core runner with a 51-tag plant
        page.goto(url)
        page.get_by_role("textbox", name="User name").fill("demo")
        page.get_by_role("textbox", name="Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.get_by_role("heading", name="Overview: tep").wait_for()
        choose(page, "Unit", unit)
        tiles = page.locator('[data-testid="stMetricLabel"]')
        page.get_by_text("separator_level [%] (cv)").wait_for()
        # Every refresh redraws the charts and keeps the old ones, marked stale, until the new
        # ones are drawn: the charts on screen are those not stale, named by their titles.
        titles_js = """() => [...document.querySelectorAll(
            '[data-testid="stElementContainer"][data-stale="false"] [data-testid="stPlotlyChart"]'
        )].map(c => (c.querySelector('.gtitle') || {}).textContent || '')"""
        deadline = time.monotonic() + 60
        charted = page.evaluate(titles_js)
        while len(charted) != charts_expected and time.monotonic() < deadline:
            time.sleep(0.5)
            charted = page.evaluate(titles_js)
        # Tag tiles are labelled "name [unit] (role)"; the status row's metrics are not.
        every = [t.inner_text().strip() for t in tiles.all()]
        labels = [x for x in every if x.endswith(("(cv)", "(mv)", "(dv)"))]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "tep-overview-separator.png"), full_page=True)
        shown = {
            "tiles": len(labels),
            "charts": sorted(t.split(" ")[0] for t in charted),
            "labels": labels,
        }
        browser.close()
    return shown
