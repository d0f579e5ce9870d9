"""A form the stage refuses, submitted to each stage DAG (``airflow dags test``), fails the run at once.

Someone triggers a stage from the Airflow form with a value it cannot use. The run must fail
(red in the UI, not green with nothing done), in its select task, with the task's message
naming the field, and no task may be retried: a refused form does not improve on retry, and
a retry is minutes of a run that looks alive. Before these fixes a refused promotion form left
a green run; a refused training form crashed ``train_pooled_models`` (``TypeError``) and
retried it for minutes; a deploy form's canary steps or version were retried; a data range
that ends before it starts built nothing and succeeded.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from test_promotion import FAMILY, REGION, write_config

from modelyard.deploy.rollout.mlflow_server import MlflowServer

if TYPE_CHECKING:
    from tests.integration.conftest import AirflowEnv

REFUSED = [
    pytest.param(
        "data_processing", "select_pairs", {"start": "2026-06-10", "end": "2026-06-01"},
        "start 2026-06-10 is after end 2026-06-01", id="data_processing-range",
    ),
    pytest.param(
        "training", "select_pairs", {"hyperparameters": json.dumps({"max_dept": 3})},
        "unknown hyperparameter 'max_dept'", id="training-hyperparameters",
    ),
    pytest.param(
        "promotion", "select_pairs", {"action": "promote-version", "reason": "by hand"},
        "promote-version needs exactly one family and one region", id="promotion-version",
    ),
    pytest.param(
        "deploy", "select_releases", {"canary_steps": [50, 10]},
        "canary steps [50, 10] must be increasing percentages ending at 100", id="deploy-canary-steps",
    ),
    pytest.param(
        "deploy", "select_releases", {"version": 5},
        "version 5 names one model: select exactly one family and one region", id="deploy-version",
    ),
    pytest.param(
        "batch_scoring", "select_pairs", {"version": 5, "input": "bookings.csv"},
        "version 5 is one version of one registered model", id="batch_scoring-version",
    ),
    pytest.param(
        "batch_scoring", "select_pairs", {"input": "/no/such/folder/{family}-{region}.csv"},
        "no such file; give a CSV/Parquet path or glob", id="batch_scoring-input",
    ),
]  # fmt: skip


Tries = dict[str, tuple[str, int]]  # task id -> (state, try number)


def run_and_tries(airflow: AirflowEnv, dag_id: str, conf: dict[str, Any]) -> tuple[str, str, Tries]:
    """Run the DAG: its log, the run's state, and each task's state and try number (one map index of each)."""
    result = airflow.run_dag_test(dag_id, conf)
    with sqlite3.connect(airflow.db_path) as conn:
        run_id, state = conn.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
        rows = conn.execute(
            "SELECT task_id, state, try_number FROM task_instance WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)
        ).fetchall()
    return result.stdout, state, {task: (ti_state, tries) for task, ti_state, tries in rows}


@pytest.mark.parametrize(("dag_id", "select", "conf", "message"), REFUSED)
def test_a_refused_form_fails_the_run_in_its_select_task_at_once(
    airflow: AirflowEnv, dag_id: str, select: str, conf: dict[str, Any], message: str
) -> None:
    log, state, tasks = run_and_tries(airflow, dag_id, conf)
    assert state == "failed", f"a refused form must fail the run: {tasks}"
    assert tasks[select][0] == "failed", tasks
    refusals = [line for line in log.splitlines() if line.startswith("airflow.sdk.exceptions.AirflowFailException: ")]
    assert any(message in line for line in refusals), log[-4000:]  # the task's failure says what to mend
    retried = {task: tries for task, (_, tries) in tasks.items() if tries > 1}
    assert retried == {}, f"retried a refused form: {retried}"
    assert "TypeError" not in log, log[-4000:]
    assert {s for task, (s, _) in tasks.items() if task != select} <= {"upstream_failed", "skipped", "success"}, tasks


def test_a_promotion_whose_chunk_fails_fails_the_run(
    airflow: AirflowEnv, mlflow_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The form is valid, but the version does not exist: the pair fails in its chunk, named, and so does the run
    (approval_requests runs after a failed chunk and publish_champions is a teardown: neither may make it green)."""
    write_config(tmp_path, mlflow_server.url)
    monkeypatch.setitem(airflow.env, "MODELYARD_CONFIG", str(tmp_path / "modelyard.yaml"))
    monkeypatch.setitem(airflow.env, "AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_server.url)
    conf = {"families": [FAMILY], "regions": [REGION], "action": "promote-version", "version": 999, "reason": "test"}
    log, state, tasks = run_and_tries(airflow, "promotion", conf)
    assert state == "failed", tasks
    assert tasks["decide"][0] == "failed", tasks
    assert tasks["every_pair_decided"][0] == "upstream_failed", tasks
    assert f"{FAMILY}/{REGION}: FAILED" in log, log[-4000:]
