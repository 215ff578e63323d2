"""The generated daily report, rendered by a real browser.

``warehouse.report.write_report`` writes the report of a day from a small real
warehouse; Chromium opens the file as a reader would (``file://``, no server) and the
test checks what only a layout engine knows: the charts are drawn with a size.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from include.settings import load_settings
from tests.fixtures.browser import WAIT_S, screenshot
from tests.fixtures.ui import DAY, REGIONS, build_ui_data
from warehouse.report import SECTION_IDS

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHARTS = ("chart-temperature", "chart-anomaly", "chart-alerts")


def test_report_renders_with_tables_and_charts(driver: WebDriver, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from warehouse.report import write_report

    settings = load_settings(data_dir=tmp_path / "data", reporting_interval_s=7200)
    build_ui_data(settings, reports=False)
    write_report(settings, DAY.date())
    report = settings.data_dir / "reports" / DAY.date().isoformat() / "report.html"
    assert report.is_file(), f"write_report wrote no {report}"

    driver.get(report.resolve().as_uri())
    WebDriverWait(driver, WAIT_S).until(ec.presence_of_element_located((By.ID, "regions")))
    assert DAY.date().isoformat() in driver.title, driver.title
    for css_id in SECTION_IDS:
        assert driver.find_elements(By.ID, css_id), f"the report has no #{css_id}"

    rows = driver.find_elements(By.CSS_SELECTOR, "#regions table tbody tr")
    assert len(rows) >= len(REGIONS), [r.text for r in rows]
    assert all(any(region in r.text.lower() for r in rows) for region in REGIONS)

    for css_id in CHARTS:
        svgs = driver.find_elements(By.CSS_SELECTOR, f"#{css_id} svg")
        assert svgs, f"#{css_id} has no inline <svg>"
        for svg in svgs:
            box = driver.execute_script(
                "const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];", svg
            )
            assert box[0] > 0 and box[1] > 0, f"#{css_id} svg is drawn {box[0]}×{box[1]}"
    shot = screenshot(driver, "report")
    assert shot.stat().st_size > 0
