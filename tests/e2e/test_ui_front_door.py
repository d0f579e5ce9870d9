"""The Airflow UI as a new user meets it, clicked through in headless Chromium after the chain ran.

* Every DAG's trigger form submits with its defaults (the deploy form as a dry run, since its
  defaults would deploy), and the run it starts succeeds with the defaults as its conf.
* The housekeeping form submits numbers typed into it, and its dry run plans with them.
* The fleet page (the plugin's "Fleet" entry) lists the chain's pairs with the champion
  versions the registry holds, and a pair's champion link opens that model version in MLflow.
* A training chunk's "Pairs on the fleet page" link shows that chunk's pairs only, and a pair's
  link there opens the version the chunk registered in MLflow.

Screenshots go to ``test-results/``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_support import WAIT_SECONDS, chromium, log_in, screenshot, settled, wait_for_text
from e2e_stack import Chain
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from modelyard.deploy.devstack.stack import DAG_IDS, AirflowApi

pytestmark = pytest.mark.timeout(1800)  # may be the first test of the session: starts the stack and the chain

RUN_TIMEOUT = 600  # a loaded 2-core CI box runs a DAG's defaults in minutes
DRY_RUN_SWITCH = "[id='switch:element_dry_run:control']"
NUMBER_FIELD = "[id='number-input:element_%s'] input"  # Chakra's NumberInput under Airflow's form


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    yield from chromium(tmp_path / "chromium-profile")


def _run_ids(api: AirflowApi, dag_id: str) -> set[str]:
    return {run["dag_run_id"] for run in api.dag_runs(dag_id)}


def _open_trigger_form(browser: WebDriver, airflow_url: str, dag_id: str) -> Any:
    """Open ``dag_id``'s trigger form; its submit button once the form has rendered."""
    browser.get(f"{airflow_url}/dags/{dag_id}")
    wait = WebDriverWait(browser, WAIT_SECONDS)
    wait.until(
        settled(expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, "[data-testid=trigger-dag-button]")))
    ).click()
    wait_for_text(browser, [f"Trigger Dag - {dag_id}", "Run Parameters"], f"airflow-{dag_id}-trigger-form.png")
    return wait.until(
        settled(expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, "[data-testid=trigger-dag-submit]")))
    )


def _new_run(api: AirflowApi, dag_id: str, before: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        new = [run for run in api.dag_runs(dag_id) if run["dag_run_id"] not in before]
        if new:
            return new[-1]
        time.sleep(1)
    raise AssertionError(f"{dag_id}: submitting the trigger form started no run")


def _finished(api: AirflowApi, dag_id: str, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        run = dict(api.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}"))
        if run["state"] in ("success", "failed"):
            return run
        time.sleep(3)
    raise AssertionError(f"{dag_id} run {run_id} not finished after {RUN_TIMEOUT}s")


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_the_trigger_form_submits_with_its_defaults(chain: Chain, browser: WebDriver, dag_id: str) -> None:
    api = chain.api
    params = api.request("GET", f"/dags/{dag_id}/details")["params"]
    defaults = {name: spec.get("value") if isinstance(spec, dict) else spec for name, spec in params.items()}
    log_in(browser, chain.settings.airflow_url)
    submit = _open_trigger_form(browser, chain.settings.airflow_url, dag_id)
    if dag_id == "deploy":  # the defaults would deploy: a dry run plans and records, changes nothing
        switch = browser.find_element(By.CSS_SELECTOR, DRY_RUN_SWITCH)
        switch.click()
        WebDriverWait(browser, WAIT_SECONDS).until(lambda _: switch.get_attribute("data-state") == "checked")
        defaults["dry_run"] = True
    before = _run_ids(api, dag_id)
    submit.click()
    run = _new_run(api, dag_id, before)
    screenshot(browser, f"airflow-{dag_id}-triggered.png")
    assert run["run_type"] == "manual"
    assert run["state"] in ("queued", "running", "success")
    assert {name: run["conf"].get(name) for name in defaults} == defaults
    finished = _finished(api, dag_id, run["dag_run_id"])
    assert finished["state"] == "success", f"{dag_id} run {run['dag_run_id']} with the form's defaults failed"
    if dag_id == "deploy":
        result = api.xcom(dag_id, run["dag_run_id"], "deploy_release", map_index=0)
        assert result["outcome"] == "dry-run"


def test_the_housekeeping_form_submits_the_values_typed_into_it(chain: Chain, browser: WebDriver) -> None:
    """A team pruning by hand: numbers typed into the form (model versions kept, days of monitoring
    runs) reach the task, and a dry run there plans against the registry and removes nothing."""
    api, dag_id = chain.api, "housekeeping"
    log_in(browser, chain.settings.airflow_url)
    submit = _open_trigger_form(browser, chain.settings.airflow_url, dag_id)
    for name, typed in (("versions", "2"), ("monitoring_days", "30")):
        field = browser.find_element(By.CSS_SELECTOR, NUMBER_FIELD % name)
        field.send_keys(typed)
        WebDriverWait(browser, WAIT_SECONDS).until(lambda _, f=field, t=typed: f.get_attribute("value") == t)
    switch = browser.find_element(By.CSS_SELECTOR, DRY_RUN_SWITCH)
    switch.click()
    WebDriverWait(browser, WAIT_SECONDS).until(lambda _: switch.get_attribute("data-state") == "checked")
    before = _run_ids(api, dag_id)
    submit.click()
    run = _new_run(api, dag_id, before)
    screenshot(browser, "airflow-housekeeping-typed-triggered.png")
    assert {name: run["conf"].get(name) for name in ("versions", "monitoring_days", "dry_run", "snapshots")} == {
        "versions": 2,
        "monitoring_days": 30,
        "dry_run": True,
        "snapshots": None,
    }
    finished = _finished(api, dag_id, run["dag_run_id"])
    assert finished["state"] == "success", f"{dag_id} run {run['dag_run_id']} with typed values failed"
    result = api.xcom(dag_id, run["dag_run_id"], "prune")
    assert result["dry_run"] is True
    assert result["removed"] == 0
    assert result["versions_kept"] >= len(chain.config.pairs())  # versions were planned: each champion stays


def _champions(chain: Chain) -> dict[str, tuple[str, str]]:
    """``family/region`` -> (model name, champion version), from the registry."""
    from mlflow import MlflowClient

    client = MlflowClient(chain.settings.mlflow_url, chain.settings.mlflow_url)
    champions = {}
    for family, region in chain.config.pairs():
        name = chain.config.mlflow.model_name(family, region)
        champions[f"{family}/{region}"] = (name, str(client.get_model_version_by_alias(name, "champion").version))
    return champions


def test_the_fleet_page_lists_every_pair_with_its_champion_and_links_to_mlflow(
    chain: Chain, browser: WebDriver
) -> None:
    champions = _champions(chain)
    airflow_url = chain.settings.airflow_url
    log_in(browser, airflow_url)
    browser.get(f"{airflow_url}/dags")
    nav = WebDriverWait(browser, WAIT_SECONDS).until(
        settled(expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, "a[aria-label='Fleet']")))
    )
    nav.click()
    frame = WebDriverWait(browser, WAIT_SECONDS).until(
        settled(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "iframe[src$='/modelyard/fleet']")))
    )
    browser.switch_to.frame(frame)
    names = sorted({part for pair in champions for part in pair.split("/")})  # families and regions
    text = wait_for_text(browser, [f"{len(champions)} pairs", *names], "fleet-page.png")
    assert "did not answer" not in text
    links = {}
    for pair, (_name, version) in champions.items():
        row = browser.find_element(By.CSS_SELECTOR, f"tr[data-pair='{pair}']")
        link = row.find_element(By.CSS_SELECTOR, "a.mlflow-champion")
        assert link.text == f"v{version}", f"{pair}: the page shows champion {link.text}, the registry v{version}"
        links[pair] = link.get_attribute("href")
        assert row.find_element(By.XPATH, "./td[6]").text != "not deployed", f"{pair}: the chain deployed it"
    pair, (name, version) = next(iter(champions.items()))
    browser.switch_to.default_content()
    browser.get(links[pair])  # the link opens a new tab; the same address in this one
    wait_for_text(browser, [name, f"Version {version}"], "fleet-mlflow-model-version.png")


def test_a_training_chunk_links_each_of_its_pairs_to_its_mlflow_version(chain: Chain, browser: WebDriver) -> None:
    run = chain.state.runs["training"][-1]
    outcomes = chain.api.pair_outcomes("training", run["dag_run_id"], "train", 0)
    assert outcomes, "the training run's first chunk reported no pairs"
    link = chain.api.extra_links("training", run["dag_run_id"], "train", 0)["Pairs on the fleet page"]
    assert link, "the chunk task has no fleet link"
    airflow_url = chain.settings.airflow_url
    log_in(browser, airflow_url)
    browser.get(f"{airflow_url}{link}")  # the UI opens the task's link on the API server's own address
    pairs = [f"{o['family']}/{o['region']}" for o in outcomes]
    wait_for_text(browser, [f"{len(pairs)} pairs", f"the {len(pairs)} pairs of one task"], "fleet-chunk.png")
    shown = [row.get_attribute("data-pair") for row in browser.find_elements(By.CSS_SELECTOR, "tr[data-pair]")]
    assert sorted(shown) == sorted(pairs)
    outcome = outcomes[0]
    pair, version = f"{outcome['family']}/{outcome['region']}", str(outcome["event_extra"]["version"])
    row = browser.find_element(By.CSS_SELECTOR, f"tr[data-pair='{pair}']")
    hrefs = [a.get_attribute("href") or "" for a in row.find_elements(By.CSS_SELECTOR, "a")]
    registered = [href for href in hrefs if href.endswith(f"/versions/{version}")]
    assert registered, f"{pair}: no link to the version the chunk registered (v{version}) among {hrefs}"
    browser.get(registered[0])
    wait_for_text(browser, [outcome["event_extra"]["model_name"], f"Version {version}"], "fleet-chunk-version.png")


def test_the_fleet_page_needs_an_airflow_login(chain: Chain) -> None:
    response = httpx.get(f"{chain.settings.airflow_url}/modelyard/fleet", timeout=30)
    assert response.status_code in (401, 403)
