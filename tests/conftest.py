"""Shared fixtures. Each test folder is a tier and gets its marker automatically."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.deploy.rollout.mlflow_server import MlflowServer, start_mlflow_server

REPO = Path(__file__).resolve().parents[1]
TIERS = ("unit", "data", "model", "dags", "chart", "integration", "e2e", "production")

# The server tiers run in two xdist workers, a file at a time (ADR 0025). xdist hands out files with the
# most tests first, so the files with few but long tests (the install venvs, the e2e chains) ran last,
# on one worker, while the other sat idle: 14 minutes of a 41-minute tier in one CI run. The files
# that take longest (seconds on one worker, with fixtures, measured 2026-12-07 with the CPU probe at
# 0.45 s) go first (ADR 0029); the four files that read the session's e2e chain are one unit, so one
# worker starts that stack and runs that chain, not both.
E2E_CHAIN = "e2e-chain"
SHARED_STACK = {
    f"tests/e2e/{name}": E2E_CHAIN
    for name in ("test_chain.py", "test_browser.py", "test_ui_front_door.py", "test_approval_in_airflow.py")
}
LONG_FILES_SECONDS = {
    "tests/integration/test_install.py": 690,
    E2E_CHAIN: 360,
    "tests/e2e/test_scale_chain.py": 210,
    "tests/production/test_production_chain.py": 220,
    "tests/integration/test_deploy_dag_kubernetes.py": 170,
    "tests/integration/test_prune.py": 110,
    "tests/integration/test_promotion_dag.py": 95,
    "tests/integration/test_refused_forms.py": 80,
}


def _tier(item: pytest.Item) -> str | None:
    parts = Path(str(item.fspath)).relative_to(REPO / "tests").parts
    return parts[0] if parts and parts[0] in TIERS else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier and run the tiers fastest first: a broken unit fails in
    seconds. Within a tier the files that read one shared stack run one after another, so the
    stack can stop after the last of them (tests/e2e/conftest.py). Handed out a file at a time
    to xdist workers, the longest files go first: the order a worker collects is the order the
    scheduler below hands out (it sends back indexes into that collection, so the scheduler itself
    cannot reorder it)."""
    for item in items:
        tier = _tier(item)
        if tier:
            item.add_marker(getattr(pytest.mark, tier))
    order = {tier: rank for rank, tier in enumerate(TIERS)}
    by_file = hasattr(config, "workerinput")  # an xdist worker (it sees dist "no"), see below

    def rank(item: pytest.Item) -> tuple[int, int, str]:
        unit = _unit(item.nodeid)
        return (-LONG_FILES_SECONDS.get(unit, 0) if by_file else 0, order.get(_tier(item) or "", len(TIERS)), unit)

    items.sort(key=rank)


def _unit(nodeid: str) -> str:
    """The file a test is in, or the shared stack it reads: tests that share one run one after another."""
    path = nodeid.split("::", 1)[0]
    return SHARED_STACK.get(path, path)


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    if getattr(config.option, "dist", "no") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class LongestFirst(LoadFileScheduling):
        """Whole files (and the shared e2e chain) per worker, in the order the workers collected."""

        def __init__(self, config: pytest.Config, log: object) -> None:
            super().__init__(config, log)
            config.option.loadscopereorder = False  # not xdist's order by number of tests

        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    return LongestFirst(config, log)


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


LEAKY_ENV = (
    "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME",
    "AIRFLOW_CONN_MLFLOW_DEFAULT", "AIRFLOW_HOME",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _tracking_env_restored() -> Iterator[None]:
    """Where MLflow is stays as each test found it: a test that points the process at its own server
    (directly, or through code under test) must not send the next test to a server that is gone, and
    an experiment it set (``mlflow.set_experiment``: an environment variable and MLflow's module
    global) must not become the next test's experiment on another server ("No Experiment with id=7")."""
    before = {name: os.environ.get(name) for name in LEAKY_ENV}
    experiment = getattr(sys.modules.get("mlflow.tracking.fluent"), "_active_experiment_id", None)
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    fluent = sys.modules.get("mlflow.tracking.fluent")
    if fluent is not None:
        fluent._active_experiment_id = experiment  # no public way to unset it
