"""What a user sees in the UIs after the chain ran: headless Debian Chromium driven by selenium.

Logs into the Airflow UI with the demo login, finds every stage's DAG and the chain's last
run states, then opens the MLflow UI on one family's experiment and finds its runs per region.
Screenshots go to ``test-results/``; the browser and the login are ``browser_support``'s.
Forms and the fleet page are clicked through in ``test_ui_front_door.py``; a version page in
``test_mlflow_version_page.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_support import chromium, log_in, wait_for_text
from e2e_stack import Chain
from selenium.webdriver.remote.webdriver import WebDriver

from modelyard.deploy.devstack.stack import CHAIN_DAG_IDS, DAG_IDS

pytestmark = pytest.mark.timeout(1800)  # may be the first test of the session: starts the stack and the chain


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Chromium with a fresh profile."""
    yield from chromium(tmp_path / "chromium-profile")


def test_airflow_ui_lists_the_dags_and_the_chains_successful_last_runs(chain: Chain, browser: WebDriver) -> None:
    airflow_url = chain.settings.airflow_url
    log_in(browser, airflow_url)
    browser.get(f"{airflow_url}/dags")
    wait_for_text(browser, list(DAG_IDS), "airflow-dags.png")
    for dag_id in CHAIN_DAG_IDS:
        browser.get(f"{airflow_url}/dags/{dag_id}/runs")
        text = wait_for_text(browser, [dag_id, "success"], f"airflow-{dag_id}-runs.png")
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
    text = wait_for_text(browser, [*regions, f"{len(runs)} matching runs"], f"mlflow-{family}-runs.png")
    assert f"{len(runs)} matching runs" in text, f"expected the family's {len(runs)} training runs"
