"""Where the MLflow tracking server is, and whether it answers.

Every entry point (CLI, DAG task, deploy) resolves the tracking URI the same way and checks it
once, up front: the MLflow client retries a refused connection for minutes before it gives up.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import httpx

from modelyard.core.errors import ModelyardError

if TYPE_CHECKING:
    from modelyard.core.config import Config


class TrackingServerUnreachableError(ModelyardError, ConnectionError):
    """The MLflow tracking server does not answer; the message says how to start or point at one."""


def resolve_tracking_uri(config: Config) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else ``mlflow.tracking_uri`` from the config."""
    return os.environ.get("MLFLOW_TRACKING_URI") or config.mlflow.tracking_uri


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI page of a run."""
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def is_healthy(url: str, timeout: float = 2) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def require_reachable(uri: str, timeout: float = 5) -> str:
    """Fail fast when an HTTP tracking server does not answer its health check.

    The MLflow client retries a refused connection for minutes before it gives up, so
    every command checks once, up front, and says what to do.

    Raises:
        TrackingServerUnreachableError: ``GET <uri>/health`` did not answer 200.
    """
    if uri.startswith(("http://", "https://")) and not is_healthy(uri.rstrip("/"), timeout=timeout):
        raise TrackingServerUnreachableError(
            f"cannot reach the MLflow server at {uri} (GET /health failed): start it (`mlflow server`, or "
            "`modelyard up` for the embedded stack), or point MLFLOW_TRACKING_URI, the `mlflow_default` Airflow "
            "connection or mlflow.tracking_uri in modelyard.yaml at your server"
        )
    return uri
