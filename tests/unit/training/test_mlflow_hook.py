"""MlflowHook resolution order: Airflow Connection, then $MLFLOW_TRACKING_URI, then the config."""

from __future__ import annotations

import os

import pytest

from modelyard.core.config import Config
from modelyard.plugins.hooks.mlflow import MlflowHook


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AIRFLOW_CONN_MLFLOW_DEFAULT", "AIRFLOW_CONN_MLFLOW_OTHER", "MLFLOW_TRACKING_URI",
                 "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


def test_connection_wins_and_exports_credentials(monkeypatch: pytest.MonkeyPatch, small_config: Config) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", "http://alice:s3cret@mlflow.internal:5005/https")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://ignored:1")
    hook = MlflowHook(config=small_config)
    assert hook.get_tracking_uri() == "https://mlflow.internal:5005"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "alice"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "s3cret"
    client = hook.get_conn()
    assert client.tracking_uri == "https://mlflow.internal:5005"


def test_another_conn_id(monkeypatch: pytest.MonkeyPatch, small_config: Config) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_OTHER", "http://mlflow-b:80")
    assert MlflowHook("mlflow_other", config=small_config).get_tracking_uri() == "http://mlflow-b:80"


def test_falls_back_to_env_then_config(monkeypatch: pytest.MonkeyPatch, small_config: Config) -> None:
    assert MlflowHook(config=small_config).get_tracking_uri() == small_config.mlflow.tracking_uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    assert MlflowHook(config=small_config).get_tracking_uri() == "http://from-env:5000"
