"""Alarms and the shift log in real Chromium over a live plant (`twin sim`, `twin serve`,
`twin app`): stopping the plant's server is a real runtime fault whose alarm must reach the
banner within 5 s; acknowledge and shelve work for an operator and not for a viewer; the shift
log written by one operator is acknowledged by the next. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import re
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from room_plant import PASSWORDS, LivePlant, start_live_plant, wait_for

from tests.support.browser import ARTIFACTS, choose, go_to, launch, require_chromium
from twin.state import Store
from twin.state.alarms import AlarmRecord

pytestmark = [pytest.mark.browser, pytest.mark.timeout(400)]

BANNER_WITHIN_S = 5.0


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePlant]:
    live = start_live_plant(tmp_path_factory.mktemp("alarm-plant"))
    try:
        yield live
    finally:
        live.stop()
        logs = ARTIFACTS / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for log in live.root.glob("*.log"):
            shutil.copy(log, logs / f"alarms-{log.name}")


@pytest.fixture(scope="module")
def browser(plant: LivePlant):
    require_chromium()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        b = launch(pw)
        yield b
        b.close()


@pytest.fixture(scope="module")
def as_user(plant: LivePlant, browser):
    """A signed-in page per user, each in its own browser context (its own cookies), so that
    switching users does not depend on logging out."""
    pages: dict[str, object] = {}

    def get(name: str):
        if name not in pages:
            context = browser.new_context(
                accept_downloads=True, viewport={"width": 1400, "height": 1000}
            )
            page = context.new_page()
            page.set_default_timeout(
                60_000
            )  # a loaded 2-core CI runner: Streamlit reruns can take long
            page.goto(plant.url, timeout=90_000)  # a loaded CI runner: first load is slow
            page.get_by_role("textbox", name="User name").fill(name)
            page.get_by_role("textbox", name="Password").fill(PASSWORDS[name])
            page.get_by_role("button", name="Log in").click()
            page.get_by_text(f"Signed in as {name}").wait_for()
            pages[name] = page
        return pages[name]

    return get


@pytest.fixture(scope="module")
def store(plant: LivePlant) -> Iterator[Store]:
    s = Store.open(plant.home)
    yield s
    s.close()


def connection_alarm(store: Store, plant: str):
    return next((a for a in store.standing_alarms(plant) if a.kind == "connection_lost"), None)


@dataclass(frozen=True)
class Outage:
    """The plant server stopped under a page watching the Alarms page."""

    banner_after_s: float
    """Seconds from SIGTERM to the banner showing the alarm on that page."""
    alarm: AlarmRecord
    """The connection_lost alarm the runtime raised."""


@pytest.fixture(scope="module")
def outage(plant: LivePlant, as_user, store: Store) -> Outage:
    """Stops the plant's server once for the module (every test that needs the alarm asks for
    this fixture, so each runs alone too), timing the banner on olga's Alarms page."""
    name = plant.spec.name
    page = as_user("olga")
    go_to(page, "Alarms")
    # The runtime must be hearing the plant before the fault is injected.
    wait_for(
        lambda: (s := store.get_status(name)) is not None and s.connected,
        90,
        "the runtime connected to the plant",
        watch=plant.procs[1:],
    )
    assert connection_alarm(store, name) is None
    sim = plant.procs[0][1]
    sim.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    banner = page.get_by_text(re.compile(r"ALARM BANNER: .*URGENT connection_lost"))
    banner.wait_for(timeout=BANNER_WITHIN_S * 1000)
    took = time.monotonic() - stopped
    page.screenshot(path=str(ARTIFACTS / "alarms-banner.png"), full_page=True)
    sim.wait(20)
    alarm = connection_alarm(store, name)
    assert alarm is not None
    return Outage(took, alarm)


def test_stopped_plant_server_is_one_alarm_on_the_banner_within_5_s(
    plant: LivePlant, outage: Outage, store: Store
) -> None:
    name = plant.spec.name
    assert outage.banner_after_s <= BANNER_WITHIN_S, outage.banner_after_s
    alarm = outage.alarm
    assert alarm.priority == "urgent" and alarm.active
    # One parent, not one per tag: every per-tag alarm of the outage is grouped under it.
    time.sleep(3)
    shown = [a for a in store.standing_alarms(name) if not a.suppressed]
    assert [a.kind for a in shown if a.active].count("connection_lost") == 1
    assert not [a for a in shown if a.kind == "sensor_fault" and a.raised_at > alarm.raised_at]


def test_viewer_sees_alarms_but_cannot_act(outage: Outage, as_user) -> None:
    page = as_user("vic")
    go_to(page, "Alarms")
    page.get_by_text("Standing alarms").first.wait_for()
    page.get_by_text(re.compile(r"ALARM BANNER: .*connection_lost")).wait_for()
    page.get_by_text("Your role (viewer) may view alarms").wait_for()
    assert page.get_by_role("button", name="Acknowledge").count() == 0
    assert page.get_by_role("button", name="Shelve").count() == 0
    page.screenshot(path=str(ARTIFACTS / "alarms-viewer.png"), full_page=True)


def pick(page, alarm_id: int) -> None:
    choose(page, "Alarm", re.compile(rf"^#{alarm_id} "))


def test_operator_acknowledges_and_shelves(outage: Outage, as_user, store: Store) -> None:
    alarm = outage.alarm
    page = as_user("olga")
    # This page has sat on Alarms since before the alarm was raised (only the banner
    # refreshes by itself): going to another page and back runs it afresh, with the alarm.
    go_to(page, "Overview")
    go_to(page, "Alarms")
    pick(page, alarm.id)
    page.get_by_role("textbox", name=re.compile("Note or reason")).fill("plant server down")
    act(
        page,
        "Acknowledge",
        f"Alarm {alarm.id} acknowledged.",
        lambda: store.get_alarm(alarm.id).acked_by is not None,
    )
    acked = store.get_alarm(alarm.id)
    assert acked.acked_by == "olga" and acked.ack_note == "plant server down"
    # The page afresh, as above (CI at 41d3ac7: after the acknowledgement's rerun the alarm
    # picker stayed hidden for 60 s).
    go_to(page, "Overview")
    go_to(page, "Alarms")
    pick(page, alarm.id)
    page.get_by_role("textbox", name=re.compile("Note or reason")).fill("server maintenance")
    act(
        page,
        "Shelve",
        f"Alarm {alarm.id} shelved until",
        lambda: store.get_alarm(alarm.id).shelved_by is not None,
    )
    shelved = store.get_alarm(alarm.id)
    assert shelved.shelved_by == "olga" and shelved.shelve_reason == "server maintenance"
    assert shelved.state(datetime.now(UTC)) == "shelved"
    page.screenshot(path=str(ARTIFACTS / "alarms-shelved.png"), full_page=True)


def act(page, button: str, shown: str, done: Callable[[], bool], attempts: int = 3) -> None:
    """Click `button` until the page confirms with `shown`. Filling the note commits it when
    the box loses focus, which reruns the page: a click landing in that rerun can be lost. It
    is made again only when the store shows it was not taken (an action is never repeated)."""
    for attempt in range(attempts):
        page.get_by_role("button", name=button, exact=True).click()
        try:
            page.get_by_text(shown).wait_for(timeout=20_000)
            return
        except PlaywrightTimeout:
            if done():
                return  # taken; the confirmation was lost to a rerun
            if attempt == attempts - 1:
                raise


def test_shift_log_round_trip(plant: LivePlant, outage: Outage, as_user, store: Store) -> None:
    name = plant.spec.name
    page = as_user("olga")
    go_to(page, "Shift log")
    page.get_by_role("textbox", name="Handover notes").fill("Plant server down for maintenance")
    page.get_by_role("button", name="Write handover").click()
    page.get_by_text(re.compile(r"Shift log \d+ written")).wait_for()
    [entry] = store.shift_log(name)
    assert entry.author == "olga" and entry.notes == "Plant server down for maintenance"
    assert any(a["kind"] == "connection_lost" for a in entry.standing)
    page = as_user("erin")
    go_to(page, "Shift log")
    page.get_by_text("Waiting to be taken over").wait_for()
    page.get_by_role("textbox", name="Note on taking over").fill("read and understood")
    page.get_by_role("button", name="Acknowledge handover").click()
    page.get_by_text(re.compile(r"taken over by erin")).first.wait_for()
    entry = store.get_shift_entry(entry.id)
    assert (entry.acked_by, entry.ack_note) == ("erin", "read and understood")
    text = export_shift_log(page)
    assert "Plant server down for maintenance" in text and "read and understood" in text
    page.screenshot(path=str(ARTIFACTS / "shift-log.png"), full_page=True)


def export_shift_log(page, attempts: int = 3) -> str:
    """The exported shift log's text. A click that lands while the page is still rerunning
    (after the take-over) may hit the export of the previous run, whose file the rerun has
    just dropped: the browser cancels that download, and the click is made again."""
    for attempt in range(attempts):
        try:
            with page.expect_download() as dl:
                page.get_by_role("button", name="Export shift log (HTML)").click()
            return Path(dl.value.path()).read_text()
        except PlaywrightError:
            if attempt == attempts - 1:
                raise
            time.sleep(2)
    raise AssertionError("unreachable")
