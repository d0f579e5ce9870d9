"""The embedded ``mlflow server`` runs without MLflow 3's job runner, which modelyard never uses (issue 26).

With it, one server is ten processes and ~2.6 GB of RSS (huey consumers for GenAI jobs); without,
two and ~0.5 GB. A team that wants the jobs sets ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true``.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psutil
import pytest

from modelyard.deploy.rollout.mlflow_server import MlflowServer, MlflowServerError, start_mlflow_server


def _children(server: MlflowServer) -> list[str]:
    assert server.process is not None
    return [" ".join(child.cmdline()) for child in psutil.Process(server.process.pid).children(recursive=True)]


def test_the_embedded_server_starts_no_job_runner(mlflow_server: MlflowServer) -> None:
    children = _children(mlflow_server)
    assert len(children) == 2, children  # gunicorn's arbiter and its one worker (ADR 0022)
    assert all("gunicorn" in child for child in children), children
    assert not any("huey" in child or "_job_runner" in child for child in children)


def test_the_environment_variable_still_turns_the_job_runner_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "true")
    server = start_mlflow_server(tmp_path)
    try:
        deadline = time.monotonic() + 30  # MLflow launches the runner just after its web server
        children = _children(server)
        while not any("_job_runner" in child for child in children):
            assert time.monotonic() < deadline, children
            time.sleep(0.2)
            children = _children(server)
    finally:
        server.stop()


def test_uvicorn_serves_mlflow_when_asked_and_an_unknown_server_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_MLFLOW_HTTP_SERVER", "uvicorn")
    server = start_mlflow_server(tmp_path / "uvicorn")
    try:
        children = _children(server)
        assert len(children) == 1, children
        assert "uvicorn" in children[0], children
        assert httpx.get(f"{server.url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=30).status_code == 200
    finally:
        server.stop()
    monkeypatch.setenv("MODELYARD_MLFLOW_HTTP_SERVER", "waitress")
    with pytest.raises(MlflowServerError, match=r"MODELYARD_MLFLOW_HTTP_SERVER='waitress'.*gunicorn, uvicorn"):
        start_mlflow_server(tmp_path / "other")
