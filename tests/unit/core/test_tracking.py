"""One way to find MLflow: the Airflow connection, ``$MLFLOW_TRACKING_URI``, the config (issue 28)."""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.core.config import Config, load_config
from modelyard.core.tracking import (
    TrackingServerUnreachableError,
    connection_uri,
    require_reachable,
    resolve_tracking_uri,
)
from tests.stand_in import Handler, stand_in

REPO = Path(__file__).resolve().parents[3]
PACKAGE_FOLDERS = ("core", "pipeline", "training", "promotion", "monitoring", "deploy", "plugins", "dags")


@pytest.fixture
def config(demo_config_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Config:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_MLFLOW_DEFAULT", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "no-airflow-here"))
    for name in [n for n in os.environ if n.startswith("AIRFLOW__")]:
        monkeypatch.delenv(name)
    return load_config(demo_config_path, environ={})


def test_without_environment_or_connection_the_config_decides(config: Config, tmp_path: Path) -> None:
    assert resolve_tracking_uri(config) == config.mlflow.tracking_uri
    assert not (tmp_path / "no-airflow-here").exists()  # Airflow was not even imported into creating its home


def test_the_airflow_connection_beats_the_config(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", "http://mlflow.internal:5001")
    assert resolve_tracking_uri(config) == "http://mlflow.internal:5001"


def test_the_connection_beats_the_environment_as_in_the_tasks_hook(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CLI command on a worker talks to the server its tasks use (``MlflowHook`` reads the connection first)."""
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", "http://mlflow.internal:5001")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://other:5000")
    assert resolve_tracking_uri(config) == "http://mlflow.internal:5001"


def test_the_environment_beats_the_config(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://other:5000")
    assert resolve_tracking_uri(config) == "http://other:5000"


def test_connection_credentials_reach_mlflow_as_the_hook_passes_them(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", "https://ana:s3cret@mlflow.example.com")
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(name, "")  # so that teardown removes what the resolution exports
    assert resolve_tracking_uri(config) == "https://mlflow.example.com"
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == ("ana", "s3cret")


@pytest.mark.parametrize(
    ("host", "port", "schema", "expected"),
    [("mlflow.internal", 5000, None, "http://mlflow.internal:5000"), ("https://m.example.com/", None, None,
     "https://m.example.com"), (None, 5000, "http", None), ("mlflow", None, "https", "https://mlflow"),
     ("https://mlflow.example.com/root/", None, None, "https://mlflow.example.com/root")],
)  # fmt: skip
def test_connection_uri(host: str | None, port: int | None, schema: str | None, expected: str | None) -> None:
    assert connection_uri(host, port, schema) == expected


MAKE_TARGET = re.compile(r"\bmake (up|down|demo|install|test)\b")


def test_user_facing_messages_name_no_make_targets() -> None:
    """A wheel has no Makefile: messages name ``modelyard`` commands or pip, never ``make``."""
    found = []
    for folder in PACKAGE_FOLDERS:
        for path in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(path.read_text())
            docstrings = {
                id(node.body[0].value)
                for node in ast.walk(tree)
                if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
            }  # fmt: skip
            for node in ast.walk(tree):
                text = node.value if isinstance(node, ast.Constant) and id(node) not in docstrings else None
                if isinstance(text, str) and MAKE_TARGET.search(text):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: {text!r}")
    assert found == []


class _Restarting(Handler):
    """A tracking server that answers 503 to its first health checks, as one restarting behind a proxy."""

    failures_left = 0

    def do_GET(self) -> None:
        cls = type(self)
        status = 503 if cls.failures_left > 0 else 200
        cls.failures_left -= 1
        self.answer(status)


@pytest.fixture
def restarting() -> Iterator[str]:
    with stand_in(_Restarting) as url:
        yield url


def test_a_blip_is_waited_for(restarting: str) -> None:
    _Restarting.failures_left = 2
    assert require_reachable(restarting, wait=0.01) == restarting


def test_an_outage_is_reported_with_what_came_back(restarting: str) -> None:
    _Restarting.failures_left = 3
    with pytest.raises(TrackingServerUnreachableError, match=r"GET /health: answered 503, 3 attempts\): start it"):
        require_reachable(restarting, wait=0.01)


def test_an_experiment_in_mlflows_trash_is_an_error_saying_how_to_restore_it(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from modelyard.core.tracking import ExperimentDeletedError, find_or_create_experiment

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    created = find_or_create_experiment(client, "modelyard/pickup_eta")
    assert find_or_create_experiment(client, "modelyard/pickup_eta") == created
    client.delete_experiment(created)  # the MLflow UI's delete: the name stays taken

    with pytest.raises(ExperimentDeletedError) as deleted:
        find_or_create_experiment(client, "modelyard/pickup_eta")

    message = str(deleted.value)
    for expected in (
        "'modelyard/pickup_eta'",
        f"id {created}",
        f"mlflow experiments restore --experiment-id {created}",
    ):
        assert expected in message, message
    client.restore_experiment(created)
    assert find_or_create_experiment(client, "modelyard/pickup_eta") == created
