"""Shared fixtures. Each test folder is a tier and gets its marker automatically."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.deploy.rollout.mlflow_server import MlflowServer, start_mlflow_server

REPO = Path(__file__).resolve().parents[1]
TIERS = ("unit", "data", "model", "dags", "chart", "integration", "e2e", "production")


def _tier(item: pytest.Item) -> str | None:
    parts = Path(str(item.fspath)).relative_to(REPO / "tests").parts
    return parts[0] if parts and parts[0] in TIERS else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier and run the tiers fastest first: a broken unit fails in
    seconds, and the e2e stack (session-scoped, so alive until the session ends) starts last
    instead of loading the machine under every later tier."""
    for item in items:
        tier = _tier(item)
        if tier:
            item.add_marker(getattr(pytest.mark, tier))
    order = {tier: rank for rank, tier in enumerate(TIERS)}
    items.sort(key=lambda item: order.get(_tier(item) or "", len(TIERS)))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real `mlflow server` on a temporary SQLite database, shared by the session."""
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mlflow_uri(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the MLflow client of this test at the session's server."""
    import mlflow

    # set_tracking_uri/set_registry_uri export both variables; registering them with monkeypatch first
    # restores them afterwards, so no later test (or the processes it starts) inherits this server.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", mlflow_server.url)
    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.set_registry_uri(mlflow_server.url)
    return mlflow_server.url


@pytest.fixture
def demo_config_path(repo_root: Path) -> Path:
    return repo_root / "modelyard.yaml"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop MODELYARD_* overrides a developer may have exported."""
    for name in list(os.environ):
        if name.startswith("MODELYARD_"):
            monkeypatch.delenv(name)


LEAKY_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "AIRFLOW_CONN_MLFLOW_DEFAULT", "AIRFLOW_HOME")


@pytest.fixture(autouse=True)
def _tracking_env_restored() -> Iterator[None]:
    """Where MLflow is stays as each test found it: a test that points the process at its own server
    (directly, or through code under test) must not send the next test to a server that is gone."""
    before = {name: os.environ.get(name) for name in LEAKY_ENV}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
