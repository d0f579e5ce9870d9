"""The ``promotion`` DAG under ``airflow dags test``: evaluate, reject, promote by hand, roll back.

Runs against the session's real MLflow server with this test's own config (own storage,
own model names), so other tests' runs in the same Airflow database do not interfere.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_promotion import FAMILY, REGION, bookings, publish_and_train, shuffle_training_labels, write_config

from modelyard.core.contracts.assets import champion_uri
from modelyard.core.contracts.registry import CHAMPION_ALIAS, PREVIOUS_ALIAS
from modelyard.deploy.rollout.mlflow_server import MlflowServer
from modelyard.promotion.aliases import aliases, open_client
from modelyard.promotion.record import history

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
    assert aliases(client, model_name)[CHAMPION_ALIAS] == first
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
