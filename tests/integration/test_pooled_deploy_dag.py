"""The ``deploy`` DAG serves a region without a champion of its own from its group's pooled champion (ADR 0015).

Real Airflow (``airflow dags test``), real MLflow server, real serving process. The test config's two
regions (Jakarta, Ho Chi Minh City) form a declared group ``sea``; every pair of Jakarta has a champion,
Ho Chi Minh City has none, and the pooled model of ``sea`` has one per family. After the run, a request
to Ho Chi Minh City's endpoint is answered by the pooled model, ``/readyz`` and the
``modelyard_service_fallback`` metric name the fallback, and the deployed event carries the pooled version.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from modelyard.core.config import Config, load_config
from modelyard.deploy.rollout.mlflow_server import MlflowServer, free_port
from modelyard.deploy.rollout.processes import ManagedProcess
from modelyard.promotion.aliases import aliases, move_champion
from tests.integration.test_deploy_dag import DeployEnv

pytestmark = pytest.mark.timeout(600)
OWN, POOLED_REGION, GROUP = "jakarta", "ho_chi_minh", "sea"


@pytest.fixture
def deploy_env(airflow: Any, mlflow_server: MlflowServer, mlflow_uri: str, tmp_path: Path) -> Iterator[DeployEnv]:
    """The session's Airflow with the test config plus the group ``sea`` of both its regions."""
    raw = yaml.safe_load(airflow.config_path.read_text())
    raw["groups"] = {GROUP: [OWN, POOLED_REGION]}
    config_path = tmp_path / "modelyard.yaml"
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    port = free_port()
    overrides = {
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "MODELYARD_CONFIG": str(config_path),
        "MODELYARD_DEPLOY__LOCAL__PORT": str(port),
        "MODELYARD_MLFLOW__MODEL_NAME_TEMPLATE": f"pool{uuid.uuid4().hex[:6]}-{{family}}-{{region}}",
    }
    env = dataclasses.replace(airflow, config_path=config_path, env={**airflow.env, **overrides})
    config = load_config(config_path, environ=overrides)
    try:
        yield DeployEnv(env, config, port)
    finally:
        ManagedProcess("serving", config.storage.root / "run").stop()


def register_champion(config: Config, family: str, name: str) -> str:
    """A small scikit-learn model of ``family``'s features registered as ``name`` and aliased champion."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.linear_model import Ridge

    features = config.family(family).features
    x = pd.DataFrame(np.random.default_rng(1).uniform(0, 1, (50, len(features))), columns=features)
    y = x.sum(axis=1)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            Ridge().fit(x, y), name="model", signature=infer_signature(x, y), input_example=x.head(2),
            pip_requirements=[], registered_model_name=name,
        )  # fmt: skip
    client = MlflowClient()
    version = str(info.registered_model_version)
    move_champion(client, name, version, aliases(client, name))
    return version


def test_deploy_dag_serves_a_region_without_a_champion_from_its_groups_pooled_model(deploy_env: DeployEnv) -> None:
    config = deploy_env.config
    assert config.groups_of(POOLED_REGION) == [GROUP]
    families = config.family_names
    own = {family: register_champion(config, family, config.mlflow.model_name(family, OWN)) for family in families}
    pooled = {family: register_champion(config, family, config.pooled_model_name(family, GROUP)) for family in families}

    run = deploy_env.airflow.run_dag_test("deploy", {"target": "local", "strategy": "rolling"})

    assert run.returncode == 0, run.stdout[-6000:]
    extra = deploy_env.airflow.asset_events("modelyard://deployed/local", dag_id="deploy")[-1].extra
    assert extra["outcome"] == "deployed"
    expected = {f"{f}/{OWN}": v for f, v in own.items()} | {f"{f}/{POOLED_REGION}": v for f, v in pooled.items()}
    assert {key: value["primary"] for key, value in extra["versions"].items()} == expected
    base = f"http://127.0.0.1:{deploy_env.port}"
    for family in config.family_names:
        record = dict.fromkeys(config.family(family).features, 0.5)
        answer = httpx.post(f"{base}/v1/predict/{family}/{POOLED_REGION}", json=[record], timeout=10).json()
        assert (answer["model"], answer["version"]) == (config.pooled_model_name(family, GROUP), pooled[family])
        mine = httpx.post(f"{base}/v1/predict/{family}/{OWN}", json=[record], timeout=10).json()
        assert mine["model"] == config.mlflow.model_name(family, OWN)
    readyz = httpx.get(f"{base}/readyz", timeout=10).json()
    assert readyz["plan"]["active_digest"] == extra["plan_digest"]
    assert readyz["fallbacks"] == {f"{family}/{POOLED_REGION}": f"{family}/{GROUP}" for family in config.family_names}
    metrics = httpx.get(f"{base}/metrics", timeout=10).text
    marked = {
        (sample.labels["family"], sample.labels["region"], sample.labels["pooled"])
        for metric in text_string_to_metric_families(metrics)
        for sample in metric.samples
        if sample.name == "modelyard_service_fallback" and sample.value == 1
    }
    assert marked == {(family, POOLED_REGION, f"{family}/{GROUP}") for family in config.family_names}, metrics
