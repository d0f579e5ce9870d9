"""The ``deploy`` DAG under ``airflow dags test``: real Airflow, real MLflow server, real serving process.

The run deploys the test config's champions to a local serving process on a free port,
records a ``modelyard://deployed/local`` event with the plan digest and versions, and the
process answers with exactly that plan. A deploy that cannot be planned fails the run
with the reason. The serving process is stopped at the end.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from modelyard.core.config import Config, load_config
from modelyard.deploy.rollout.mlflow_server import MlflowServer, free_port
from modelyard.deploy.rollout.processes import ManagedProcess
from modelyard.promotion.aliases import aliases, move_champion

pytestmark = pytest.mark.timeout(600)


@dataclasses.dataclass
class DeployEnv:
    airflow: Any
    config: Config
    port: int


@pytest.fixture
def deploy_env(airflow: Any, mlflow_server: MlflowServer, mlflow_uri: str) -> Iterator[DeployEnv]:
    port = free_port()
    overrides = {
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "MODELYARD_DEPLOY__LOCAL__PORT": str(port),
        "MODELYARD_MLFLOW__MODEL_NAME_TEMPLATE": f"dag{uuid.uuid4().hex[:6]}-{{family}}-{{region}}",
    }
    env = dataclasses.replace(airflow, env={**airflow.env, **overrides})
    config = load_config(airflow.config_path, environ=overrides)
    try:
        yield DeployEnv(env, config, port)
    finally:
        ManagedProcess("serving", config.storage.root / "run").stop()


def register_champions(config: Config) -> dict[str, str]:
    """A small scikit-learn model per pair, registered and aliased champion; ``family/region`` -> version."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.linear_model import Ridge

    client = MlflowClient()
    versions = {}
    for family, region in config.pairs():
        names = config.family(family).features
        x = pd.DataFrame(np.random.default_rng(1).uniform(0, 1, (50, len(names))), columns=names)
        y = x.sum(axis=1)
        name = config.mlflow.model_name(family, region)
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(
                Ridge().fit(x, y), name="model", signature=infer_signature(x, y), input_example=x.head(2),
                pip_requirements=[], registered_model_name=name,
            )  # fmt: skip
        version = str(info.registered_model_version)
        move_champion(client, name, version, aliases(client, name))
        versions[f"{family}/{region}"] = version
    return versions


def test_deploy_dag_serves_the_champions_and_records_the_deployed_event(deploy_env: DeployEnv) -> None:
    versions = register_champions(deploy_env.config)

    run = deploy_env.airflow.run_dag_test("deploy", {"target": "local", "strategy": "rolling"})

    assert run.returncode == 0, run.stdout[-6000:]
    events = deploy_env.airflow.asset_events("modelyard://deployed/local", dag_id="deploy")
    assert events, run.stdout[-6000:]
    extra = events[-1].extra
    assert extra["release"] == "local"
    assert extra["outcome"] == "deployed"
    assert {key: value["primary"] for key, value in extra["versions"].items()} == versions
    readyz = httpx.get(f"http://127.0.0.1:{deploy_env.port}/readyz", timeout=10).json()
    assert readyz["plan"]["active_digest"] == extra["plan_digest"]


def test_deploy_dag_fails_loudly_with_the_reason(deploy_env: DeployEnv) -> None:
    register_champions(deploy_env.config)
    conf = {"target": "local", "families": ["pickup_eta"], "regions": ["jakarta"], "version": 999}
    before = len(deploy_env.airflow.asset_events("modelyard://deployed/", dag_id="deploy"))

    run = deploy_env.airflow.run_dag_test("deploy", conf)

    states = {(task, index): state for task, index, state in deploy_env.airflow.task_states("deploy")}
    assert states[("deploy_release", 0)] == "failed", run.stdout[-6000:]
    assert "has no version 999" in run.stdout
    assert len(deploy_env.airflow.asset_events("modelyard://deployed/", dag_id="deploy")) == before
