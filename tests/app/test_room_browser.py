"""The control room in real Chromium (Playwright), over a live plant started with the real
commands: `twin sim cstr` serving OPC-UA, `twin serve --mode supervised` with a quickly trained
twin, and `twin app`. One plant and one browser for the whole module; each test saves a
screenshot of its page under tests/artifacts/."""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from room_plant import PASSWORDS, LivePlant, read_opcua, start_live_plant, wait_for

from tests.support.browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    click_until,
    go_to,
    require_chromium,
)
from twin import api
from twin.auth import PermissionDenied
from twin.state import Store

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePlant]:
    live = start_live_plant(tmp_path_factory.mktemp("live-plant"))
    try:
        yield live
    finally:
        codes = live.stop()
        logs = ARTIFACTS / "logs"  # the processes' output, for whoever reads a CI failure
        logs.mkdir(parents=True, exist_ok=True)
        for log in live.root.glob("*.log"):
            shutil.copy(log, logs / log.name)
    # Ctrl-C / SIGTERM stops every part cleanly (no kill needed).
    assert all(c is not None for c in codes.values()), codes


@pytest.fixture(scope="module")
def browser_page(plant: LivePlant, tmp_path_factory: pytest.TempPathFactory):
    require_chromium()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            accept_downloads=True,
            viewport={"width": 1400, "height": 1000},
        )
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(
            60_000
        )  # a loaded 2-core CI runner: Streamlit reruns can take long
        yield page
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(page, url: str, name: str) -> None:
    page.goto(url)
    page.get_by_role("textbox", name="User name").fill(name)
    page.get_by_role("textbox", name="Password").fill(PASSWORDS[name])
    page.get_by_role("button", name="Log in").click()
    page.get_by_text(f"Signed in as {name}").wait_for()


def as_user(page, url: str, name: str) -> None:
    """Be signed in as `name` (tests share one browser; each says who it acts as)."""
    if page.get_by_text(f"Signed in as {name}").count():
        return
    log_out = page.get_by_role("button", name="Log out")
    if log_out.count():
        click_until(log_out, page.get_by_role("button", name="Log in"))
    log_in(page, url, name)


def metric(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return box.locator('[data-testid="stMetricValue"]').inner_text().strip()


def test_log_in_and_overview_shows_live_values(plant: LivePlant, browser_page) -> None:
    page = browser_page
    page.goto(plant.url)
    page.get_by_role("textbox", name="User name").fill("olga")
    page.get_by_role("textbox", name="Password").fill("not her password")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("wrong user name or password").wait_for()
    log_in(page, plant.url, "olga")
    page.get_by_role("heading", name="Overview: cstr").wait_for()
    wait_for(lambda: metric(page, "Runtime") == "supervised", 60, "the runtime's mode")
    first = metric(page, "Ca [mol/L] (cv)")
    assert re.fullmatch(r"[0-9.]+", first), first
    # Live: the measured value changes on screen as the simulated plant runs on.
    wait_for(lambda: metric(page, "Ca [mol/L] (cv)") != first, 30, "a new Ca value on screen")
    assert metric(page, "Connection") == "connected"
    charts = page.locator('[data-testid="stPlotlyChart"]')
    wait_for(lambda: charts.count() >= len(plant.spec.tags), 30, "a trend chart per tag")
    shot(page, "overview")


def test_engineer_retrains_and_sees_audit_and_limits(plant: LivePlant, browser_page) -> None:
    page = browser_page
    as_user(page, plant.url, "erin")
    go_to(page, "Twin")
    page.get_by_text("Versions").first.wait_for()
    quick = page.get_by_role("checkbox", name=re.compile("Quick"))
    page.locator('[data-testid="stCheckbox"]').filter(has_text="Quick").locator("label").click()
    wait_for(quick.is_checked, 10, "the quick box to be ticked")
    page.get_by_role("button", name="Start training in the background").click()
    # The run goes on in its own process, its progress shown live; an engineer may stop it.
    # (That a finished run makes a new version is tested in test_room_logic.py.)
    page.get_by_text(re.compile(r"by erin: running \((jepa|observation model)\)")).wait_for(
        timeout=90_000
    )
    shot(page, "twin-training")
    page.get_by_role("button", name="Stop training").click()
    page.get_by_text(re.compile(r"by erin: stopped")).wait_for(timeout=30_000)
    go_to(page, "Audit")
    page.get_by_text(re.compile(r"audit chain OK: \d+ entries verified")).wait_for()
    shot(page, "audit")
    go_to(page, "Limits")
    page.get_by_role("button", name="Save operator limits").wait_for()
    shot(page, "limits")


def test_approved_proposal_is_written_to_the_opcua_server(plant: LivePlant, browser_page) -> None:
    page = browser_page
    as_user(page, plant.url, "olga")
    go_to(page, "Proposals")
    store = Store.open(plant.home)
    try:
        decision = None

        def approve_on_screen():
            nonlocal decision
            button = page.get_by_role("button", name="Approve", exact=True)
            if button.count() != 1:  # none yet, or a rerun shows the old form beside the new
                return None
            shown = page.locator('[data-testid="stMetric"]').filter(has_text="Proposal").first
            # The page may rerun on a newer proposal between render and click, and for a moment
            # show the old form beside the new (two Approve buttons: a strict-mode error, before
            # any click is made): try again on the next render.
            try:
                value = shown.locator('[data-testid="stMetricValue"]').inner_text(timeout=5_000)
                pid = int(value.strip("# \n"))
                button.click(timeout=5_000)
            except PlaywrightError:
                return None
            # A newer proposal may supersede this one between render and click: try the next.
            d = wait_for(lambda: store.get_decision(pid) or _closed(store, pid), 10, "the decision")
            decision = d if not isinstance(d, str) else None
            return decision

        wait_for(approve_on_screen, 120, "a proposal approved through the page")
        assert decision.kind == "approve" and decision.user == "olga"
        page.get_by_text(f"Proposal {decision.proposal_id} approved").first.wait_for()
        shot(page, "proposal-approved")
        applied = wait_for(
            lambda: (
                store.get_decision(decision.proposal_id).applied
                if store.get_decision(decision.proposal_id).applied not in (None, "writing")
                else None
            ),
            60,
            "the runtime to write the approval",
        )
        assert applied == "written", applied
        want = decision.mv_values["Tc"]
        got = read_opcua(plant.spec, "Tc")
        assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-4), (got, want)
    finally:
        store.close()


def _closed(store: Store, pid: int) -> str | None:
    status = store.get_proposal(pid).status
    return None if status == "pending" else status


def test_modification_outside_limits_is_refused(plant: LivePlant, browser_page) -> None:
    page = browser_page
    as_user(page, plant.url, "olga")
    go_to(page, "Proposals")

    def refused():
        tab = page.get_by_role("tab", name="Modify")
        if not tab.count():
            return False
        # A new proposal may supersede the shown one mid-way (the plant runs at x5): the page
        # reruns, the form goes away, and the whole attempt starts again on the new proposal.
        try:
            tab.click(timeout=5_000)
            box = page.get_by_label(re.compile(r"^Tc \["))
            box.fill("330", timeout=5_000)
            box.press("Enter", timeout=5_000)
            page.get_by_role("button", name="Evaluate with the twin").click(timeout=5_000)
            msg = page.get_by_text(
                re.compile(r"Tc: 330 is outside the operator/engineering limits")
            )
            # The evaluation runs the twin: on a loaded 2-core runner it takes several seconds.
            msg.first.wait_for(timeout=30_000)
        except PlaywrightError:  # a timeout, or the old and the new form both on the page
            return False
        return True

    wait_for(refused, 200, "the refusal of Tc = 330")
    shot(page, "modification-refused")
    store = Store.open(plant.home)
    try:
        assert all(
            d.kind != "modify"
            for d in filter(None, (store.get_decision(p.id) for p in store.list_proposals("cstr")))
        )
    finally:
        store.close()


def test_replay_shows_a_past_window_with_predictions_and_markers(
    plant: LivePlant, browser_page
) -> None:
    page = browser_page
    as_user(page, plant.url, "olga")
    go_to(page, "Replay")
    caption = page.get_by_text(re.compile(r"\d+ proposals with predictions")).first
    caption.wait_for()
    n_pred = int(re.search(r"(\d+) proposals with predictions", caption.inner_text()).group(1))
    assert n_pred >= 1
    plots = page.locator(".js-plotly-plot")
    plots.first.wait_for()
    legend = " ".join(plots.nth(i).inner_text() for i in range(plots.count()))
    assert "actual" in legend and "predicted then" in legend
    assert "approve" in legend and "write" in legend  # the approval of the earlier test
    shot(page, "replay")


def test_incident_is_marked_and_its_report_exports(
    plant: LivePlant, browser_page, tmp_path
) -> None:
    page = browser_page
    as_user(page, plant.url, "olga")
    go_to(page, "Replay")
    page.get_by_label("Title").fill("Browser-test incident")
    page.get_by_label("Notes").fill("Tc stepped during the approval test")
    page.get_by_role("button", name="Mark this window as an incident").click()
    page.get_by_text(re.compile(r"Incident \d+ marked")).wait_for()
    path = tmp_path / "report.html"

    def export() -> bool:
        # A click that lands while the page reruns (after marking the incident) is lost with the
        # old DOM; the report itself takes seconds (plotly.js inline). Click again if so.
        try:
            with page.expect_download(timeout=40_000) as dl:
                page.get_by_role("button", name="Export HTML report").click(timeout=10_000)
            dl.value.save_as(path)
        except PlaywrightTimeout:
            return False
        return True

    wait_for(export, 150, "the HTML report download")
    html = path.read_text()
    assert html.startswith("<!DOCTYPE html>") and "Browser-test incident" in html
    assert "Plotly.newPlot" in html and re.search(r"<script[^>]*\bsrc=", html) is None
    assert "approve by olga" in html
    shutil.copy(path, ARTIFACTS / "incident-report.html")
    shot(page, "replay-incident-exported")


def test_viewer_sees_no_approve_button_and_the_api_refuses(plant: LivePlant, browser_page) -> None:
    page = browser_page
    as_user(page, plant.url, "vic")
    go_to(page, "Proposals")
    page.get_by_text(re.compile(r"may view proposals|No proposal is pending")).first.wait_for()
    assert page.get_by_role("button", name="Approve", exact=True).count() == 0
    assert page.get_by_role("button", name="Reject").count() == 0
    shot(page, "viewer-proposals")
    store = Store.open(plant.home)
    try:
        pending = wait_for(lambda: store.pending_proposal("cstr"), 60, "a pending proposal")
        with pytest.raises(PermissionDenied, match="vic"):
            api.approve(store, pending.id, "vic", "a viewer trying")
        assert store.get_decision(pending.id) is None
    finally:
        store.close()
