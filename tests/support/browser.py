"""The browser every browser test drives: Debian's chromium (installed by .ci/run), through
Playwright's Python package, with the flags a root CI container needs. A missing chromium fails
the test: CI installs it, so a skip would be a test not run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
"""Screenshots and downloads the browser tests keep for a person to look at."""


def require_chromium() -> None:
    import pytest

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")


def launch(pw: Any) -> Any:
    """A headless chromium from a running `sync_playwright()`."""
    return pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


def choose(page: Any, box: str, option: str | re.Pattern[str], tries: int = 6) -> None:
    """Open the visible selectbox whose label holds `box` and pick `option` (a name, matched
    exactly, or a pattern). A page that redraws itself (the Overview refreshes every few
    seconds) can close the list while it opens, so the list is opened again, up to `tries`
    times with 15 s each."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    select = page.locator('[data-testid="stSelectbox"]:visible').filter(has_text=box)
    wanted = page.get_by_role("option", name=option, exact=isinstance(option, str))
    for _ in range(tries):
        select.click()
        try:
            wanted.click(timeout=15_000)
            return
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    raise AssertionError(f"no option {option!r} in the selectbox {box!r} after {tries} tries")


def click_until(target: Any, shown: Any, tries: int = 3, wait_ms: float = 30_000) -> None:
    """Click `target` until `shown` (a locator) is visible. A click that lands while Streamlit
    is still rerunning the page (just after signing in, or while a fragment refreshes) can be
    dropped, so it is made again, up to `tries` times with `wait_ms` each; the last try keeps
    the page's own default timeout, so a page that is merely slow gets its full time. Once
    `target` is gone an earlier click was taken, and only its result is waited for."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(tries):
        last = attempt == tries - 1
        if attempt and not target.count():
            shown.first.wait_for()
            return
        target.click()
        try:
            shown.first.wait_for(timeout=None if last else wait_ms)
            return
        except PlaywrightTimeout:
            if last:
                raise


def go_to(page: Any, link: str, shown: Any = None) -> None:
    """Open the sidebar page `link` and wait until `shown` (a locator; by default a heading
    that starts with the link's text) is visible, clicking again if a click is dropped."""
    if shown is None:
        shown = page.get_by_role("heading", name=re.compile(f"^{re.escape(link)}"))
    nav = page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=link)
    click_until(nav, shown)
