"""The Health page in real Chromium against `twin app` on a real twin home (history, a tiny
trained twin, planner proposals, an approval and a rejection) whose twin the real drift monitor
then finds mispredicting the plant: the page's figures and drift evidence are the home's."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from room_homes import PASSWORD, BuiltHome
from room_plant import free_port, healthy, wait_for

from app.logic import health
from tests.support.browser import go_to, launch, require_chromium
from twin import audit
from twin.health.drift_config import DriftConfig
from twin.health.monitor import DriftMonitor
from twin.paths import Home
from twin.sample import Sample
from twin.serve.alarms import Alarms
from twin.serve.live import LiveState
from twin.state import Store

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


def metric(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return box.locator('[data-testid="stMetricValue"]').inner_text().strip()


def drift_on_a_copy(built: BuiltHome, root: Path) -> Home:
    """A copy of the home whose twin then meets a plant it mispredicts: the real drift monitor
    scores the home's newest proposals against CVs at their upper limits, and fires.

    The plant is fed from the oldest of those proposals on, every sample, so that each
    prediction is scored at the very times it predicted (the MVs held where the proposals found
    them, so their hold predictions apply), and the twin keeps proposing (the
    newest proposal's plan, once per interval) as a runtime would. The commissioning is cut to
    the first 3 scored predictions with no settling; its reference is capped at 9x the card's
    level, so the errors after it still fire the test."""
    shutil.copytree(built.home.root, root)
    home, spec = Home.at(root), built.spec
    with Store.open(home) as store:
        live = LiveState(spec, keep_s=3600)
        quick = DriftConfig(settle_s=0.0, commission_s=0.0, min_commission=3)
        monitor = DriftMonitor(home, spec, store, Alarms(store, spec.name), live, quick)
        start = min(p.data_ts for p in store.list_proposals(spec.name, limit=5))
        interval = timedelta(seconds=spec.plant.control_interval_s)
        period = timedelta(seconds=spec.plant.sample_period_s)
        plan = store.list_proposals(spec.name, limit=1)[0]
        held = plan.payload.get("mv_live") or {}  # the MVs stay put: the twin's hold applies
        values = {t.name: sum(t.limits) / 2 for t in spec.tags}
        values |= {t.name: t.limits[1] for t in spec.cvs} | held
        ts, end = start, built.last + 14 * interval
        while ts < end:
            for _ in range(spec.plant.samples_per_interval):
                ts += period
                live.on_batch([Sample(ts, name, float(v)) for name, v in values.items()])
            if ts > plan.data_ts:
                store.add_proposal(
                    plant=spec.name,
                    mv_values=plan.mv_values,
                    payload=plan.payload,
                    data_ts=ts,
                    expires_at=ts + interval,
                    model_version=built.version,
                    mode="advisory",
                )
            monitor.check(built.version, None)
    return home


def test_drift_evidence_lists_the_monitors_alarm_and_event(built: BuiltHome, tmp_path: Path):
    home = drift_on_a_copy(built, tmp_path / "home")
    with Store.open(home) as store:
        frame = health.drift_evidence(store, built.spec.name, built.first)
    assert set(frame["kind"]) == {"alarm model_drift", "retrain_recommended"}
    event = frame[frame["kind"] == "retrain_recommended"].iloc[0]
    assert event["model"] == built.version and "one_step_cusum=" in event["detail"]
    assert "predictions_scored=" in event["detail"] and bool(frame.iloc[-1]["standing"]) is True


def test_drift_evidence_lists_what_answered_it(built: BuiltHome, tmp_path: Path) -> None:
    """Retraining, the shadow run and the gate's decision appear beside the drift evidence."""
    home = drift_on_a_copy(built, tmp_path / "home")
    name = built.spec.name
    answers = [
        ("model_retrain", {"version": "v002"}, "trained on live history"),
        ("retrain_shadowed", {"version": "v002"}, "v002 now plans in shadow"),
        ("model_promote_refused", {"refused": ["2 intervals scored"]}, "2 intervals scored"),
    ]
    with Store.open(home) as store:
        for kind, what, why in answers:
            store.log_event(
                user="runtime", kind=kind, plant=name, subject="model:v002", what=what, why=why
            )
        frame = health.drift_evidence(store, name, built.first)
    assert set(frame["kind"]) == {"alarm model_drift", "retrain_recommended"} | {
        kind for kind, _, _ in answers
    }
    newest = frame.iloc[: len(answers)]  # newest first: the gate's refusal at the top
    assert list(newest["kind"]) == [kind for kind, _, _ in reversed(answers)]
    assert set(newest["model"]) == {"v002"}
    assert list(newest["detail"]) == [why for _, _, why in reversed(answers)]


def test_health_page_shows_the_homes_figures(built: BuiltHome, tmp_path: Path) -> None:
    require_chromium()
    from playwright.sync_api import sync_playwright

    name = built.spec.name
    home = drift_on_a_copy(built, tmp_path / "home")
    with Store.open(home) as store:
        proposals = store.list_proposals(name, limit=1000)
        entries = audit.entries(store, plant=name)
    rejected = sum(e["kind"] == "reject" for e in entries)
    approved = [e for e in entries if e["kind"] == "approve"]
    assert rejected >= 1 and approved, "the home must hold a rejection and an approval"
    moves = sum(len(e["what"]["proposed"]) for e in approved)

    port, log = free_port(), tmp_path / "app.log"
    cmd = [sys.executable, "-m", "twin.cli", "app", "--port", str(port), "--plant", name]
    cmd += ["--home", str(home.root)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: healthy(url), 60, "the control room", proc, log)
        with sync_playwright() as pw:
            browser = launch(pw)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(
                60_000
            )  # a loaded 2-core CI runner: Streamlit reruns can take long
            page.goto(url, timeout=120_000)
            page.get_by_role("textbox", name="User name").fill("operator")
            page.get_by_role("textbox", name="Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            page.get_by_text("Signed in as operator").wait_for(timeout=120_000)
            go_to(page, "Health", page.get_by_role("heading", name=re.compile(f"^Health: {name}")))
            page.get_by_text("Drift evidence and model maintenance").wait_for()
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
            drift = page.locator('[data-testid="stTable"]').nth(1).inner_text()
            assert "retrain_recommended" in drift and "alarm model_drift" in drift
            assert built.version in drift
            browser.close()
    finally:
        proc.terminate()
        proc.wait(20)
