"""The ClimateWatch page inside a real Airflow, as a person uses it.

A real Airflow API server (SQLite metadata, started by ``include.ops.stack`` as
``climatewatch up`` starts it; the scheduler is not needed to serve pages) loads
``plugins/climatewatch_plugin.py`` over a data directory holding a warehouse, quality
results, a quarantined batch and two reports. Chromium opens the page without a
session and is sent to Airflow's login page, signs in with the admin's password, comes
back to the page, then finds the "ClimateWatch" entry in the Airflow UI's navigation
and the page embedded there. Every wait has a timeout; the API server's log is shown on
failure.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from include.ops.stack import Supervisor, airflow_admin_password, airflow_services
from include.processes import free_port
from include.settings import Settings, load_settings
from tests.fixtures.browser import WAIT_S, screenshot
from tests.fixtures.ui import UiData, build_ui_data

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

pytestmark = [pytest.mark.browser, pytest.mark.airflow, pytest.mark.slow]

NEEDED = ("airflow-db-migrate", "airflow-api-server")


@dataclass
class RunningApi:
    base_url: str
    settings: Settings
    data: UiData
    password: str
    log: Path


@pytest.fixture(scope="module")
def airflow_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    data_dir = tmp_path_factory.mktemp("ui-airflow") / "data"
    settings = load_settings(
        data_dir=data_dir,
        # Nothing listens there: the page must say "Kafka unreachable", quickly.
        bootstrap_servers=f"127.0.0.1:{free_port()}",
        kafka_timeout_ms=1000,
    )
    data = build_ui_data(settings)
    supervisor = Supervisor(data_dir / "run")
    port = free_port()
    services = [s for s in airflow_services(settings, api_port=port) if s.name in NEEDED]
    try:
        for service in services:
            supervisor.start(service)
        yield RunningApi(
            f"http://127.0.0.1:{port}",
            settings,
            data,
            airflow_admin_password(settings),
            supervisor.log_file("airflow-api-server"),
        )
    finally:
        supervisor.stop("airflow-api-server")


def api_log(api: RunningApi) -> str:
    try:
        return api.log.read_text(errors="replace")[-4000:]
    except FileNotFoundError:
        return "(no API server log)"


def http_get(url: str, accept: str) -> tuple[int, str, dict[str, str]]:
    """Status, body and headers without following redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with opener.open(request, timeout=WAIT_S) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace"), dict(exc.headers)


def sign_in(driver: WebDriver, password: str) -> None:
    """Fill Airflow's login form (SimpleAuthManager) as a person would."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, WAIT_S)
    username = wait.until(ec.element_to_be_clickable((By.NAME, "username")))
    username.send_keys("admin")
    driver.find_element(By.NAME, "password").send_keys(password)
    submit = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "button[type=submit]")))
    submit.click()


def check_page(driver: WebDriver, data: UiData) -> None:
    """The ClimateWatch page in the current browsing context: title and filled tables."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_S).until(ec.presence_of_element_located((By.ID, "archive")))
    assert driver.find_element(By.TAG_NAME, "h1").text == "ClimateWatch"
    reports = driver.find_elements(By.CSS_SELECTOR, "#reports-table tbody tr")
    assert [r.text.split()[0] for r in reports] == list(data.report_days)
    alerts = driver.find_elements(By.CSS_SELECTOR, "#alerts-table tbody tr")
    assert len(alerts) == data.alert_count
    quality = driver.find_elements(By.CSS_SELECTOR, "#quality-table tbody tr")
    assert len(quality) == len(data.batch_ids)
    quarantined = driver.find_elements(By.CSS_SELECTOR, "#quarantine-table tbody tr")
    assert len(quarantined) == 1
    assert driver.find_elements(By.CSS_SELECTOR, "#ledger-table tbody tr")
    assert "Kafka unreachable" in driver.find_element(By.ID, "archive").text


def test_plugin_app_requires_an_airflow_session(airflow_api: RunningApi) -> None:
    """Airflow mounts plugin apps without auth; ours checks the Airflow session itself."""
    status, body, _ = http_get(f"{airflow_api.base_url}/climatewatch/api/summary", "*/*")
    assert status == 401, (status, body[:300], api_log(airflow_api))
    status, _, headers = http_get(f"{airflow_api.base_url}/climatewatch/", "text/html")
    assert status == 303
    assert "/auth/login" in headers["location"] and "next=" in headers["location"]
    token_request = urllib.request.Request(
        f"{airflow_api.base_url}/auth/token",
        data=json.dumps({"username": "admin", "password": airflow_api.password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(token_request, timeout=WAIT_S) as response:
        token = json.loads(response.read())["access_token"]
    request = urllib.request.Request(
        f"{airflow_api.base_url}/climatewatch/api/summary",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=WAIT_S) as response:
        summary = json.loads(response.read())
    assert [d["day"] for d in summary["reports"]["days"]] == list(airflow_api.data.report_days)


def test_climatewatch_page_in_the_airflow_ui(airflow_api: RunningApi, driver: WebDriver) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, WAIT_S)
    base = airflow_api.base_url
    try:
        # Straight to the page without a session: Airflow's login, then back.
        driver.get(f"{base}/climatewatch/")
        wait.until(ec.url_contains("/auth/login"))
        sign_in(driver, airflow_api.password)
        wait.until(ec.url_matches(rf"^{base}/climatewatch/?$"))
        check_page(driver, airflow_api.data)
        screenshot(driver, "climatewatch-page")

        # A report opens from the page.
        link = driver.find_element(By.CSS_SELECTOR, "#reports-table a[href$='report.html']")
        driver.get(link.get_attribute("href"))
        wait.until(ec.title_contains("Climate report"))

        # The Airflow UI's navigation has the entry, and it shows the page.
        driver.set_window_size(1400, 1000)
        driver.get(f"{base}/")
        # The sidebar may cut the label short on screen; the element's text is the name.
        entry = wait.until(
            ec.element_to_be_clickable((By.CSS_SELECTOR, "a[href$='plugin/climatewatch']"))
        )
        assert entry.get_attribute("textContent").strip() == "ClimateWatch"
        entry.click()
        wait.until(ec.url_contains("/plugin/climatewatch"))
        frame = wait.until(ec.presence_of_element_located((By.TAG_NAME, "iframe")))
        wait.until(ec.frame_to_be_available_and_switch_to_it(frame))
        check_page(driver, airflow_api.data)
        driver.switch_to.default_content()
        screenshot(driver, "airflow-ui-climatewatch", full_page=False)
    except Exception:
        screenshot(driver, "airflow-ui-failure", full_page=False)
        print(api_log(airflow_api))
        raise
