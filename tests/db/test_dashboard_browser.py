"""The status page in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, installed by scripts/setup.sh) driven by Selenium against `qbo-sync dashboard`
on 127.0.0.1 and a database synced from the simulator. It loads the pages, clicks Pull and sees
the job appear and then finish (the page's own live refresh shows it, no reload), resolves a
conflict and retries a failed record, and writes a screenshot of each page to
bench/results/screenshots/. About 15 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from qbo_sync.dashboard.app import SECRET_NAME
from qbo_sync.pgserver import free_port
from tests.db.qbo_jobs import connect_realm
from tests.db.test_conflicts import held_invoice
from tests.db.test_dashboard import refused_invoice, scalar
from tests.db.test_pull import pull, seeded  # noqa: F401 - fixture
from tests.db.test_qbo_calls import outcome, run_worker

SCREENSHOTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "screenshots"
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
#: the live parts refresh every 3 s: a change shows within two rounds
SEEN_WITHIN = 15


@pytest.fixture
def browser() -> Iterator:
    if not (CHROMIUM and CHROMEDRIVER):  # make test installs them: missing is a failure
        pytest.fail("chromium and chromium-driver are missing: scripts/setup.sh installs them")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1400,1000")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def dashboard_url(db_dsn) -> Iterator[str]:
    """`qbo-sync dashboard` on a free port of 127.0.0.1 (no login: loopback)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != SECRET_NAME}
    process = subprocess.Popen(
        [sys.executable, "-m", "qbo_sync.cli", "dashboard", "--dsn", db_dsn, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{url}/healthz", timeout=5)
                break
            except requests.ConnectionError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def screenshot(driver, name: str) -> None:
    """The whole page (the window grown to its height) as bench/results/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, max(1000, min(int(height) + 100, 6000)))
    path = SCREENSHOTS / f"{name}.png"
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 10_000


def test_the_pages_in_a_browser_pull_resolve_and_retry(
    browser,
    dashboard_url,
    conn,
    seeded,  # noqa: F811
):
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import WebDriverWait

    # the page swaps its parts in every 3 s (refresh.js): an element found just before a swap is
    # gone when its text is read, which chromedriver reports as stale or as "Node with given id
    # does not belong to the document"; the wait then looks again (it still fails on time)
    wait = WebDriverWait(
        browser,
        SEEN_WITHIN,
        ignored_exceptions=(StaleElementReferenceException, WebDriverException),
    )
    connected = connect_realm(conn, seeded, name="Browser Co")
    for entity in ("customers", "items"):
        assert outcome(conn, pull(conn, connected.org, entity))["status"] == "completed"
    _, conflict = held_invoice(conn, seeded, connected)
    bad = refused_invoice(conn, connected.org)

    # every organization at a glance
    browser.get(dashboard_url + "/")
    link = browser.find_element(By.LINK_TEXT, "Browser Co")
    screenshot(browser, "overview")
    link.click()
    wait.until(shown.presence_of_element_located((By.ID, "entity-customers")))
    assert "Browser Co" in browser.title
    screenshot(browser, "organization")

    # Pull customers: the job appears, and finishes once a worker has run it
    browser.find_element(By.CSS_SELECTOR, "#entity-customers button.pull").click()
    job_row = wait.until(shown.presence_of_element_located((By.CSS_SELECTOR, "tr.job.pending")))
    job = job_row.get_attribute("data-job")
    assert "queued: pull customers" in browser.find_element(By.CSS_SELECTOR, ".flash.ok").text
    assert scalar(conn, "SELECT status FROM qbo_sync_queue WHERE id = %s", (job,)) == "pending"
    screenshot(browser, "organization-job-queued")
    run_worker(conn)
    wait.until(
        shown.presence_of_element_located((By.CSS_SELECTOR, f'tr.job.completed[data-job="{job}"]'))
    )
    assert browser.find_elements(By.CSS_SELECTOR, ".flash.ok")  # no reload: the part refreshed
    screenshot(browser, "organization-job-done")

    # the held conflict, both values side by side: keep the local ones
    article = browser.find_element(By.CSS_SELECTOR, f'article[data-conflict="{conflict["id"]}"]')
    assert any("noted here" in e.text for e in article.find_elements(By.CSS_SELECTOR, "td.local"))
    assert any("noted in QBO" in e.text for e in article.find_elements(By.CSS_SELECTOR, "td.qbo"))
    screenshot(browser, "organization-conflict")
    article.find_element(By.CSS_SELECTOR, "button.keep-local").click()
    wait.until(shown.text_to_be_present_in_element((By.CSS_SELECTOR, ".flash.ok"), "resolved"))
    assert not browser.find_elements(By.CSS_SELECTOR, f'article[data-conflict="{conflict["id"]}"]')
    assert (
        scalar(conn, "SELECT status FROM qbo_sync_conflict WHERE id = %s", (conflict["id"],))
        == "resolved"
    )

    # the failed record, with QBO's code: retry it
    record = browser.find_element(By.CSS_SELECTOR, f'tr.record[data-record="{bad}"]')
    assert "6000" in record.text
    screenshot(browser, "organization-failed-record")
    record.find_element(By.CSS_SELECTOR, "button.retry").click()
    wait.until(shown.text_to_be_present_in_element((By.CSS_SELECTOR, ".flash.ok"), "sent again"))
    assert (
        scalar(conn, "SELECT qbo_sync_status FROM invoice_record WHERE id = %s", (bad,))
        == "pending"
    )
    screenshot(browser, "organization-after-actions")
