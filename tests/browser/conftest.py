"""Headless Chromium for the browser tests: Debian's chromium and chromedriver, nothing
downloaded at run time.

``make browser`` installs both (``apt-get install chromium chromium-driver``). The
driver is started with explicit paths and Selenium Manager is kept offline, so a missing
browser fails the test with that instruction instead of a download attempt. Screenshots
go to ``tests/artifacts/`` (ignored by git), one per test, kept after the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.fixtures.browser import WAIT_S

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

# Selenium Manager must never fetch a browser or a driver: the paths below are explicit.
os.environ["SE_OFFLINE"] = "true"
os.environ.setdefault("SE_AVOID_STATS", "true")

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
PAGE_LOAD_TIMEOUT_S = 60.0


def require_chromium() -> None:
    """Fail (not skip) with the command that fixes it."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(
            f"headless Chromium is not installed ({', '.join(missing)} missing): "
            "run `make browser` (apt-get install chromium chromium-driver)",
            pytrace=False,
        )


@pytest.fixture
def driver() -> Iterator[WebDriver]:
    """A fresh headless Chromium (1400×1000) per test, quit afterwards."""
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    service = Service(executable_path=str(CHROMEDRIVER))
    browser = webdriver.Chrome(options=options, service=service)
    browser.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
    browser.set_script_timeout(WAIT_S)
    try:
        yield browser
    finally:
        browser.quit()
