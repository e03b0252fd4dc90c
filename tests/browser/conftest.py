"""A real headless Chromium driven by Playwright, for the dashboard and the replay page.

Each test gets a fresh browser with a fresh temporary profile; screenshots go to
`build/screenshots/` (or `BROWSER_TEST_SCREENSHOTS`), named in pytest's closing summary.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Playwright, ViewportSize, sync_playwright

from tests.browser.chromium import LAUNCH_ARGUMENTS, Browser, browser_binary
from tests.process.cluster import ProcessCluster, attach_node_logs, started_cluster

SCREENSHOTS = Path(
    os.environ.get("BROWSER_TEST_SCREENSHOTS")
    or Path(__file__).resolve().parents[2] / "build" / "screenshots"
)
# Big enough for every panel of both pages without scrolling.
VIEWPORT: ViewportSize = {"width": 1400, "height": 1000}
# Generous for a page to react: a loaded 2-core CI machine runs tests in parallel.
PAGE_TIMEOUT_MS = 30_000
# Shown in the closing summary (a report's user_properties reach it from xdist workers too).
SUMMARY_KEY = "browser"


@pytest.fixture(scope="session")
def chromium() -> Browser:
    return browser_binary()


@pytest.fixture
def playwright() -> Iterator[Playwright]:
    """Per test, not per session: Playwright's sync API runs an asyncio event loop in this
    thread while it is open, and every later test of the worker that calls asyncio.run()
    would fail with "cannot be called from a running event loop"."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def page(
    playwright: Playwright, chromium: Browser, tmp_path: Path, record_property: Any
) -> Iterator[Page]:
    context = playwright.chromium.launch_persistent_context(
        tmp_path / "profile",
        executable_path=chromium.executable,
        env={**os.environ, **chromium.environment},
        args=list(LAUNCH_ARGUMENTS),
        headless=True,
        viewport=VIEWPORT,
    )
    try:
        record_property(SUMMARY_KEY, f"browser: {chromium.executable} ({chromium.origin})")
        opened = context.pages[0] if context.pages else context.new_page()
        opened.set_default_timeout(PAGE_TIMEOUT_MS)
        errors: list[str] = []
        opened.on("pageerror", lambda error: errors.append(str(error)))
        yield opened
        assert not errors, f"JavaScript errors on the page: {errors}"
    finally:
        context.close()


@pytest.fixture
def screenshot(page: Page, record_property: Any) -> Callable[[str], Path]:
    """`screenshot(name)` saves the whole page as SCREENSHOTS/name.png."""

    def take(name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        record_property(SUMMARY_KEY, f"screenshot: {path}")
        return path

    return take


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    """A started 3-node cluster of real processes; each is killed by pid afterwards, pass or
    fail."""
    root = tmp_path / "cluster"  # beside the browser's profile
    root.mkdir()
    with started_cluster(root) as processes:
        yield processes


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, None]:
    """On a failure, the end of each node's log: what the nodes said explains most."""
    outcome = yield
    attach_node_logs(outcome.get_result(), getattr(item, "funcargs", {}).get("tmp_path"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = sorted(
        {
            f"{report.nodeid.split('::')[-1]}: {value}"
            for kind in ("passed", "failed")
            for report in terminalreporter.stats.get(kind, [])
            for key, value in getattr(report, "user_properties", [])
            if key == SUMMARY_KEY and report.when == "call"
        }
    )
    if lines:
        terminalreporter.section("browser tests")
        for line in lines:
            terminalreporter.write_line(line)
