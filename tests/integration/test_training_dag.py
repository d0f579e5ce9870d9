"""The training DAG on a real Airflow (``airflow dags test``) against a real ``mlflow server``."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from mlflow import MlflowClient
from test_promotion import write_config

from modelyard.core.contracts.assets import challenger_uri
from modelyard.core.contracts.registry import CHALLENGER_ALIAS
from modelyard.deploy.rollout.mlflow_server import MlflowServer
from modelyard.pipeline.build import build_all, build_pair

if TYPE_CHECKING:
    from tests.integration.conftest import AirflowEnv

DAG_ID = "training"
PREFIX = "modelyard://challenger/"
CONF = {"families": ["pickup_eta"], "regions": ["jakarta"]}


@pytest.fixture(scope="module")
def trained(airflow: AirflowEnv, mlflow_server: MlflowServer) -> Iterator[AirflowEnv]:
    """Snapshots published and the ``mlflow_default`` connection pointing at the session's server."""
    results = build_all(airflow.config, families=CONF["families"], regions=CONF["regions"])
    assert all(r.status in ("published", "unchanged") for r in results), results
    airflow.env["AIRFLOW_CONN_MLFLOW_DEFAULT"] = mlflow_server.url
    try:
        yield airflow
    finally:
        airflow.env.pop("AIRFLOW_CONN_MLFLOW_DEFAULT", None)


def test_manual_run_registers_and_announces_the_challenger(trained: AirflowEnv, mlflow_server: MlflowServer) -> None:
    before = trained.asset_events(PREFIX, dag_id=DAG_ID)
    result = trained.run_dag_test(DAG_ID, CONF)
    assert result.returncode == 0, result.stdout[-6000:]

    new = trained.asset_events(PREFIX, dag_id=DAG_ID)[len(before) :]
    assert [e.uri for e in new] == [challenger_uri("pickup_eta", "jakarta")]
    extra = new[0].extra
    model_name = trained.config.mlflow.model_name("pickup_eta", "jakarta")
    assert {k: extra[k] for k in ("family", "region", "model_name")} == {
        "family": "pickup_eta", "region": "jakarta", "model_name": model_name,
    }  # fmt: skip
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    version = client.get_model_version(model_name, extra["version"])
    assert version.tags["run_id"] == extra["run_id"]
    assert client.get_model_version_by_alias(model_name, CHALLENGER_ALIAS).version == extra["version"]
    with sqlite3.connect(trained.db_path) as conn:
        labels = {r[0] for r in conn.execute("SELECT rendered_map_index FROM task_instance WHERE dag_id = ? "
                                             "AND task_id = 'train' AND map_index >= 0", (DAG_ID,))}  # fmt: skip
    assert "pickup_eta/jakarta" in labels


def test_rerun_registers_nothing_new_and_reannounces(trained: AirflowEnv, mlflow_server: MlflowServer) -> None:
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    model_name = trained.config.mlflow.model_name("pickup_eta", "jakarta")
    versions_before = {v.version for v in client.search_model_versions(f"name = '{model_name}'")}
    assert versions_before, "the first test registers a version"
    result = trained.run_dag_test(DAG_ID, CONF)
    assert result.returncode == 0, result.stdout[-6000:]
    assert {v.version for v in client.search_model_versions(f"name = '{model_name}'")} == versions_before
    last = trained.asset_events(PREFIX, dag_id=DAG_ID)[-1]
    assert last.extra["version"] == max(versions_before, key=int)


def test_chunks_train_every_pair_but_the_failing_one_and_announce_them_at_once(
    trained: AirflowEnv, mlflow_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """4 pairs in chunks of 2, one without a snapshot: it fails alone, named; the 3 others are registered
    and announced together by the publish task (one promotion run), each with its MLflow run on its log line."""
    config = write_config(tmp_path, mlflow_server.url)
    missing = ("driver_acceptance", "ho_chi_minh")
    for family, region in config.pairs():
        if (family, region) != missing:
            assert build_pair(config, family, region).status == "published"
    monkeypatch.setitem(trained.env, "MODELYARD_CONFIG", str(tmp_path / "modelyard.yaml"))
    monkeypatch.setitem(trained.env, "MODELYARD_SCALE__CHUNK_SIZE", "2")
    before = len(trained.asset_events(PREFIX, dag_id=DAG_ID))

    result = trained.run_dag_test(DAG_ID, {})

    assert result.returncode != 0
    states = {(t, m): s for t, m, s in trained.task_states(DAG_ID)}
    assert [states[("train", i)] for i in (0, 1)] == ["failed", "success"]  # chunk 0 holds the missing pair
    assert states[("publish_challengers", -1)] == "success"
    assert "driver_acceptance/ho_chi_minh: FAILED | SnapshotNotFoundError" in result.stdout
    assert "1 of 2 pairs failed" in result.stdout
    new = trained.asset_events(PREFIX, dag_id=DAG_ID)[before:]
    trained_pairs = [p for p in config.pairs() if p != missing]
    assert sorted(e.uri for e in new) == sorted(challenger_uri(f, r) for f, r in trained_pairs)
    assert {(e.source_task_id, e.source_run_id) for e in new} == {("publish_challengers", new[0].source_run_id)}
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    for event in new:
        family, region = event.extra["family"], event.extra["region"]
        run_id = client.get_run(event.extra["run_id"]).info.run_id
        assert f"{family}/{region}: registered | {event.extra['model_name']} v{event.extra['version']}" in result.stdout
        assert f"/runs/{run_id} (" in result.stdout  # the MLflow run link ends the pair's line
        assert (
            client.get_model_version_by_alias(event.extra["model_name"], CHALLENGER_ALIAS).version
            == (event.extra["version"])
        )
