"""What a user sees in the UIs after the chain ran: headless Debian Chromium driven by selenium.

Logs into the Airflow UI with the demo login, finds the four DAGs and their last run
states, then opens the MLflow UI on one family's experiment and finds its runs per region.
Screenshots go to ``test-results/``. Chromium and chromedriver come from Debian
(``.ci/install-browser.sh``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_stack import RESULTS, Chain
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from modelyard.deploy.devstack.stack import AIRFLOW_PASSWORD, AIRFLOW_USER, CHAIN_DAG_IDS, DAG_IDS

pytestmark = pytest.mark.timeout(1800)  # may be the first test of the session: starts the stack and the chain

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


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Chromium with a fresh profile."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail("chromium and chromedriver are not installed: run `sudo .ci/install-browser.sh` (Debian packages)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    session = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        yield session
    finally:
        session.quit()


def _wait_for_text(browser: WebDriver, texts: list[str], shot: str) -> str:
    """Wait until the page shows every text (case-insensitive); screenshot either way; the page text."""

    def shows_all(driver: WebDriver) -> bool:
        page = driver.find_element(By.TAG_NAME, "body").text.lower()
        return all(text.lower() in page for text in texts)

    try:
        WebDriverWait(browser, WAIT_SECONDS).until(shows_all)
    finally:
        RESULTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(RESULTS / shot))
    return str(browser.find_element(By.TAG_NAME, "body").text)


def _log_in(browser: WebDriver, airflow_url: str) -> None:
    browser.get(f"{airflow_url}/")
    wait = WebDriverWait(browser, WAIT_SECONDS)
    username = wait.until(expected_conditions.presence_of_element_located((By.NAME, "username")))
    username.send_keys(AIRFLOW_USER)
    browser.find_element(By.NAME, "password").send_keys(AIRFLOW_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda b: "/auth/login" not in b.current_url)


def test_airflow_ui_lists_the_four_dags_with_successful_last_runs(chain: Chain, browser: WebDriver) -> None:
    airflow_url = chain.settings.airflow_url
    _log_in(browser, airflow_url)
    browser.get(f"{airflow_url}/dags")
    _wait_for_text(browser, list(DAG_IDS), "airflow-dags.png")
    for dag_id in CHAIN_DAG_IDS:
        browser.get(f"{airflow_url}/dags/{dag_id}/runs")
        text = _wait_for_text(browser, [dag_id, "success"], f"airflow-{dag_id}-runs.png")
        assert "failed" not in text.lower(), f"{dag_id}: a run shows as failed"


def test_mlflow_ui_shows_the_runs_of_one_family(chain: Chain, browser: WebDriver) -> None:
    from mlflow import MlflowClient

    from modelyard.training.mlflow_log import experiment_name

    family = chain.config.family_names[0]
    experiment = MlflowClient(chain.settings.mlflow_url).get_experiment_by_name(experiment_name(chain.config, family))
    assert experiment is not None, f"no MLflow experiment for {family}"
    browser.get(f"{chain.settings.mlflow_url}/#/experiments/{experiment.experiment_id}/runs")
    regions = [f"{family}/{region}/" for region in chain.config.region_names]
    # Other e2e tests may have retrained a region (approval, forced re-runs): the UI must show
    # every run the tracking server holds for the family, and at least one per region.
    runs = MlflowClient(chain.settings.mlflow_url).search_runs([experiment.experiment_id], max_results=1000)
    assert {run.info.run_name.split("/")[1] for run in runs if run.info.run_name} >= set(chain.config.region_names)
    text = _wait_for_text(browser, [*regions, f"{len(runs)} matching runs"], f"mlflow-{family}-runs.png")
    assert f"{len(runs)} matching runs" in text, f"expected the family's {len(runs)} training runs"
