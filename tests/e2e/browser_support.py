"""The browser side of the e2e tier: headless Debian Chromium driven by selenium, the Airflow login.

Chromium and chromedriver come from Debian (``.ci/install-browser.sh``). Screenshots go to
``test-results/``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from e2e_stack import RESULTS
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from modelyard.deploy.devstack.stack import AIRFLOW_PASSWORD, AIRFLOW_USER

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1600,1000",
)
WAIT_SECONDS = 60
T = TypeVar("T")


def chromium(profile: Path) -> Iterator[WebDriver]:
    """Headless Chromium with a fresh profile in ``profile`` (quit at the end)."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        pytest.fail("chromium and chromedriver are not installed: run `sudo .ci/install-browser.sh` (Debian packages)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    session = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        yield session
    finally:
        session.quit()


def settled(condition: Callable[[WebDriver], T]) -> Callable[[WebDriver], T | bool]:
    """``condition`` for a ``WebDriverWait``, retried while the page navigates.

    A lookup that runs while the page redirects (Airflow's UI sends ``/`` to its login page from
    script) fails with "aborted by navigation"; that is not an answer, so the wait goes on.
    """

    def check(driver: WebDriver) -> T | bool:
        try:
            return condition(driver)
        except WebDriverException as exc:
            if "aborted by navigation" in (exc.msg or ""):
                return False
            raise

    return check


def screenshot(browser: WebDriver, name: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(RESULTS / name))


def wait_for_text(browser: WebDriver, texts: list[str], shot: str) -> str:
    """Wait until the page shows every text (case-insensitive); screenshot either way; the page text."""

    def shows_all(driver: WebDriver) -> bool:
        page = driver.find_element(By.TAG_NAME, "body").text.lower()
        return all(text.lower() in page for text in texts)

    try:
        WebDriverWait(browser, WAIT_SECONDS).until(settled(shows_all))
    finally:
        screenshot(browser, shot)
    return str(browser.find_element(By.TAG_NAME, "body").text)


def log_in(browser: WebDriver, airflow_url: str) -> None:
    """Log into the Airflow UI with the demo user."""
    browser.get(f"{airflow_url}/")
    wait = WebDriverWait(browser, WAIT_SECONDS)
    username = wait.until(settled(expected_conditions.presence_of_element_located((By.NAME, "username"))))
    username.send_keys(AIRFLOW_USER)
    browser.find_element(By.NAME, "password").send_keys(AIRFLOW_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda b: "/auth/login" not in b.current_url)
