"""The production-like tier: S3 (moto server), PostgreSQL, Redis, MLflow on PostgreSQL, Airflow on Celery.

Session fixtures start each service once (``cluster.py``), on free ports, with unique
database names, bucket and Redis key prefix, and remove all of them at the end, so the next
run starts from nothing. Where PostgreSQL, Redis or the S3/Celery packages are missing the
whole tier is skipped, and the session's summary says so in one loud line (CI has them all).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import cluster
import pytest

RESULTS = cluster.RESULTS_DIR
_SKIPPED: list[str] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = cluster.missing_services()
    if not missing:
        return
    ours = [item for item in items if "production" in item.keywords]
    if ours:
        _SKIPPED.append(f"{len(ours)} tests: missing {', '.join(missing)}")
    for item in ours:
        item.add_marker(pytest.mark.skip(reason=f"production tier: missing {', '.join(missing)}"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _SKIPPED:
        terminalreporter.write_line(
            f"PRODUCTION TIER SKIPPED ({line}); run `make install-production` and start PostgreSQL "
            "and Redis on 127.0.0.1 (see docs/production.md)",
            red=True,
            bold=True,
        )


@pytest.fixture(scope="session")
def tier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("production")


@pytest.fixture(scope="session")
def logs(tier_dir: Path) -> Iterator[Path]:
    folder = tier_dir / "logs"
    folder.mkdir()
    yield folder
    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.copytree(folder, RESULTS / "logs", dirs_exist_ok=True)


@pytest.fixture(scope="session")
def unique() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def s3(logs: Path) -> Iterator[cluster.S3]:
    server = cluster.start_s3(logs)
    try:
        yield server
    finally:
        server.process.stop()  # moto keeps the bucket in memory: stopping it removes every object


@pytest.fixture(scope="session")
def databases(unique: str) -> Iterator[dict[str, str]]:
    """One database for Airflow (and Celery's results), one for MLflow (and the promotion lock)."""
    names = {"airflow": f"modelyard_t_{unique}_airflow", "mlflow": f"modelyard_t_{unique}_mlflow"}
    for name in names.values():
        cluster.create_database(name)
    try:
        yield names
    finally:
        for name in names.values():
            cluster.drop_database(name)


@pytest.fixture(scope="session")
def mlflow(s3: cluster.S3, databases: dict[str, str], logs: Path) -> Iterator[cluster.Mlflow]:
    server = cluster.start_mlflow(s3, databases["mlflow"], logs)
    try:
        yield server
    finally:
        server.process.stop()


@pytest.fixture
def mlflow_env(mlflow: cluster.Mlflow, s3: cluster.S3, monkeypatch: pytest.MonkeyPatch) -> cluster.Mlflow:
    """This test's MLflow client and S3 credentials point at the tier's servers (restored afterwards)."""
    import mlflow as mlflow_module

    for name, value in {
        **cluster.s3_env(s3),
        "MLFLOW_TRACKING_URI": mlflow.url,
        "MLFLOW_REGISTRY_URI": mlflow.url,
    }.items():
        monkeypatch.setenv(name, value)
    mlflow_module.set_tracking_uri(mlflow.url)
    mlflow_module.set_registry_uri(mlflow.url)
    return mlflow
