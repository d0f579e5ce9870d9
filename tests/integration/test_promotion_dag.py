"""The ``promotion`` DAG under ``airflow dags test``: evaluate, reject, promote by hand, roll back;
and a region group's pooled challenger, announced by the ``training`` DAG, promoted (ADR 0015).

Runs against the session's real MLflow server with this test's own config (own storage,
own model names), so other tests' runs in the same Airflow database do not interfere.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from test_promotion import FAMILY, REGION, bookings, publish_and_train, shuffle_training_labels, write_config

from modelyard.core.config import load_config
from modelyard.core.contracts.assets import challenger_uri, champion_uri
from modelyard.core.contracts.registry import CHAMPION_ALIAS, PREVIOUS_ALIAS
from modelyard.deploy.rollout.mlflow_server import MlflowServer
from modelyard.pipeline.build import BuildRequest, build_all
from modelyard.promotion.aliases import aliases, open_client
from modelyard.promotion.decide import evaluate_pair
from modelyard.promotion.record import history

if TYPE_CHECKING:
    from tests.integration.conftest import AirflowEnv

DAG_ID = "promotion"


NO_APPROVAL_ASKED = {"approve", "apply_answer"}


def test_promotion_dag_decides_records_and_announces_only_champion_moves(
    airflow, mlflow_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, mlflow_server.url)
    monkeypatch.setitem(airflow.env, "MODELYARD_CONFIG", str(tmp_path / "modelyard.yaml"))
    monkeypatch.setitem(airflow.env, "MLFLOW_TRACKING_URI", mlflow_server.url)
    client = open_client(config, mlflow_server.url)
    model_name = config.mlflow.model_name(FAMILY, REGION)
    frame = bookings(seed=11)
    pair = {"families": [FAMILY], "regions": [REGION]}

    def champion_events() -> list[dict]:
        rows = airflow.asset_events(uri_prefix=champion_uri(FAMILY, REGION), dag_id=DAG_ID)
        return [row.extra for row in rows if row.extra.get("model_name") == model_name]

    def run(conf: dict) -> str:
        result = airflow.run_dag_test(DAG_ID, {**pair, **conf})
        assert result.returncode == 0, result.stdout[-6000:]
        states = {task: state for task, _, state in airflow.task_states(DAG_ID)}
        # Approval is automatic in this config: nothing waits, so the approval map is empty (skipped).
        expected = {task: "skipped" if task in NO_APPROVAL_ASKED else "success" for task in states}
        assert states == expected, states
        return result.stdout

    first = publish_and_train(config, frame)
    log = run({"action": "evaluate"})
    assert "absolute:holdout_auc" in log, log[-4000:]
    decided = [line for line in log.splitlines() if model_name in line or "FAIL" in line]
    assert aliases(client, model_name).get(CHAMPION_ALIAS) == first, "\n".join(decided)[-4000:]
    assert [e["version"] for e in champion_events()] == [first]
    assert client.get_model_version(model_name, first).tags["promotion.decided_by"].startswith("airflow:promotion/")

    worse = publish_and_train(config, shuffle_training_labels(frame, config, seed=12))
    log = run({"action": "evaluate"})
    assert "rejected" in log
    assert "FAIL" in log  # the gate table in the task log
    assert aliases(client, model_name)[CHAMPION_ALIAS] == first
    assert [e["version"] for e in champion_events()] == [first]  # a rejection announces nothing
    assert client.get_model_version(model_name, worse).tags["promotion.outcome"] == "rejected"

    run({"action": "promote-version", "version": int(worse), "reason": "override in an integration test"})
    current = aliases(client, model_name)
    assert (current[CHAMPION_ALIAS], current[PREVIOUS_ALIAS]) == (worse, first)
    assert [e["version"] for e in champion_events()] == [first, worse]

    run({"action": "rollback", "reason": "rolling back from the UI"})
    assert aliases(client, model_name)[CHAMPION_ALIAS] == first
    assert [e["version"] for e in champion_events()] == [first, worse, first]
    assert history(client, model_name)[-1]["action"] == "rollback"


def test_a_pooled_challenger_announced_by_training_is_promoted_and_serves_its_regions(
    airflow: AirflowEnv, mlflow_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training announces ``challenger/<family>/country-id``; the promotion DAG, its form selecting the group,
    gates and promotes it, and announces it as the champion of Surabaya (no model of its own) only."""
    from test_pooled_models import FAMILY as POOLED_FAMILY
    from test_pooled_models import bookings_file
    from test_pooled_models import write_config as write_pooled_config

    path = write_pooled_config(tmp_path, mlflow_server.url)
    config = load_config(path, environ={})
    for name, value in {"MODELYARD_CONFIG": str(path), "MLFLOW_TRACKING_URI": mlflow_server.url,
                        "AIRFLOW_CONN_MLFLOW_DEFAULT": mlflow_server.url}.items():  # fmt: skip
        monkeypatch.setitem(airflow.env, name, value)
    built = build_all(config, request=BuildRequest(source=str(bookings_file(config, tmp_path))))
    assert [(r.region, r.status, r.pooled_only) for r in built] == [
        ("jakarta", "published", False), ("surabaya", "published", True),
    ]  # fmt: skip
    pooled_name = config.pooled_model_name(POOLED_FAMILY, "country-id")

    trained = airflow.run_dag_test("training", {"families": [POOLED_FAMILY]})
    assert trained.returncode == 0, trained.stdout[-6000:]
    announced = [e for e in airflow.asset_events("modelyard://challenger/", dag_id="training")
                 if e.extra.get("model_name") == pooled_name]  # fmt: skip
    assert [e.uri for e in announced] == [challenger_uri(POOLED_FAMILY, "country-id")]
    assert announced[0].source_task_id == "publish_challengers"  # with the pairs' events, at once
    version = announced[0].extra["version"]

    client = open_client(config, mlflow_server.url)
    assert evaluate_pair(client, config, POOLED_FAMILY, "jakarta", "user:test").outcome == "promoted"
    before = len(airflow.asset_events("modelyard://champion/", dag_id=DAG_ID))
    result = airflow.run_dag_test(DAG_ID, {"families": [POOLED_FAMILY], "groups": ["country-id"]})
    assert result.returncode == 0, result.stdout[-6000:]

    assert aliases(client, pooled_name)[CHAMPION_ALIAS] == version
    assert client.get_model_version(pooled_name, version).tags["promotion.decided_by"].startswith("airflow:promotion/")
    events = airflow.asset_events("modelyard://champion/", dag_id=DAG_ID)[before:]
    pooled_and_served = [champion_uri(POOLED_FAMILY, "country-id"), champion_uri(POOLED_FAMILY, "surabaya")]
    assert [e.uri for e in events] == pooled_and_served  # not Jakarta: it has a champion of its own
    assert events[1].extra == {
        "family": POOLED_FAMILY, "region": "surabaya", "model_name": pooled_name, "version": version,
        "pooled_group": "country-id",
    }  # fmt: skip
