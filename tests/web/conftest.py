"""Browser tests of the monitor page: Playwright for Python driving Debian's Chromium.

Playwright never downloads a browser here: it launches ``/usr/bin/chromium`` (Debian's
package ``chromium``, which ``.ci/run`` installs; ``TASKD_CHROMIUM`` names another build).
Without it the tests fail and say how to install it.

``page`` is a fresh laptop-sized tab whose console and uncaught errors are recorded: at the
end of the test any error fails it, except those the test expected (``console.allow``:
the browser's own lines about a connection the test broke on purpose). Every test leaves a
screenshot of where it ended in ``test-artifacts/web/`` (git-ignored); ``shoot`` takes more.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, expect, sync_playwright

CHROMIUM = os.environ.get("TASKD_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
VIEWPORT = {"width": 1366, "height": 860}  # a laptop screen
TIMEOUT_MS = 15_000  # for every wait of a test: a loaded 2-core machine is slow, not broken
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright's sync API runs an asyncio loop of its own on this thread, marked running
    between calls: it lives for one module, so that tests after it find no asyncio loop
    running. It must be a plain asyncio loop: trio-asyncio (imported by other tests) installs
    a policy whose loops refuse to be driven that way, so the default policy is put back
    while Playwright makes its loop."""
    kept = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        manager = sync_playwright()
        pw = manager.start()
    finally:
        asyncio.set_event_loop_policy(kept)
    try:
        yield pw
    finally:
        pw.stop()


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install -y chromium) "
            "or set TASKD_CHROMIUM to a Chromium executable",
            pytrace=False,
        )
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--disable-gpu"])
    yield browser
    browser.close()


@dataclass
class Console:
    """Errors the page logged or threw, and the patterns a test expects."""

    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


# The browser's own lines when a connection the test broke on purpose fails (not the page's).
BROKEN_CONNECTION = [
    r"^WebSocket connection to 'ws://[^']+/api/v1/events' failed",
    r"^Failed to load resource: net::ERR_CONNECTION_REFUSED",
]


@pytest.fixture
def console() -> Console:
    return Console()


def shoot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def page(browser: Browser, console: Console, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            console.errors.append(message.text)

    tab.on("console", on_console)
    tab.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}"))
    try:
        yield tab
        unexpected = console.unexpected()
        assert not unexpected, f"the page logged errors: {unexpected}"
    finally:
        try:
            shoot(tab, request.node.name)
        finally:
            context.close()


def wait_live(page: Page) -> None:
    """Until the page shows a live connection to the node (its first snapshot arrived)."""
    page.wait_for_selector('#conn[data-state="live"]')


def perf(page: Page) -> dict[str, Any]:
    summary: dict[str, Any] = page.evaluate("window.taskdMonitor.perf.summary()")
    return summary
