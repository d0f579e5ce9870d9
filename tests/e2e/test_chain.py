"""The chain ran on the real scheduler: every run green, champions registered, the endpoint serves them."""

from __future__ import annotations

import pytest
from e2e_stack import Chain

from modelyard.deploy.devstack.demo import serving_versions
from modelyard.deploy.devstack.stack import DAG_IDS
from modelyard.training.status import collect_status

pytestmark = pytest.mark.timeout(1800)  # the first test pays for starting the stack and the chain


def test_every_stage_ran_and_every_run_succeeded(chain: Chain) -> None:
    for dag_id in DAG_IDS:
        runs = chain.state.runs.get(dag_id, [])
        assert runs, f"no run of {dag_id}; transcript:\n{chain.transcript[-3000:]}"
        assert {run["state"] for run in runs} == {"success"}, [(r["dag_run_id"], r["state"]) for r in runs]


def test_data_and_training_ran_one_task_per_pair(chain: Chain) -> None:
    expected = {f"{family}/{region}" for family, region in chain.config.pairs()}
    for dag_id in ("data_processing", "training"):
        labels = {
            ti["rendered_map_index"]
            for run in chain.state.runs[dag_id]
            for ti in chain.state.tasks[run["dag_run_id"]]
            if ti["map_index"] >= 0 and ti["state"] == "success"
        }
        assert labels == expected, f"{dag_id}: {labels}"


def test_registry_has_a_champion_per_pair(chain: Chain) -> None:
    statuses = collect_status(chain.config, tracking_uri=chain.settings.mlflow_url)
    missing = [f"{s.family}/{s.region}" for s in statuses if s.champion is None]
    assert not missing, f"no champion for {missing}"
    for status in statuses:
        assert status.champion is not None
        assert status.champion.metrics, f"champion of {status.family}/{status.region} has no key metrics"


def test_endpoint_serves_the_champions(chain: Chain) -> None:
    statuses = collect_status(chain.config, tracking_uri=chain.settings.mlflow_url)
    champions = {f"{s.family}/{s.region}": s.champion.version for s in statuses if s.champion}
    assert serving_versions(chain.config, chain.settings.serving_url) == champions


def test_training_task_links_to_its_mlflow_run_and_model_version(chain: Chain) -> None:
    run = chain.state.runs["training"][-1]
    train = next(ti for ti in chain.state.tasks[run["dag_run_id"]] if ti["task_id"] == "train" and ti["map_index"] == 0)
    links = chain.api.extra_links("training", run["dag_run_id"], "train", map_index=0)
    run_link, version_link = links.get("MLflow run") or "", links.get("MLflow model version") or ""
    assert run_link.startswith(f"{chain.settings.mlflow_url}/#/experiments/"), links
    family, region = str(train["rendered_map_index"]).split("/")
    model_name = chain.config.mlflow.model_name(family, region)
    assert version_link.startswith(f"{chain.settings.mlflow_url}/#/models/{model_name}/versions/"), links


def test_tasks_without_mlflow_output_have_empty_links(chain: Chain) -> None:
    run = chain.state.runs["data_processing"][-1]
    links = chain.api.extra_links("data_processing", run["dag_run_id"], "select_pairs")
    assert set(links) == {"MLflow run", "MLflow model version"}
    assert not any(links.values()), links
