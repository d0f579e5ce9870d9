"""Where the MLflow tracking server is, and whether it answers.

Every entry point (CLI, DAG task, deploy) resolves the tracking URI the same way
(:func:`resolve_tracking_uri` here, ``MlflowHook`` in a task: the Airflow connection
``mlflow_default`` where Airflow is installed and configured, then ``$MLFLOW_TRACKING_URI``, then
``mlflow.tracking_uri`` of the config; ``--tracking-uri`` on the command line beats all three)
and checks it once, up front: the MLflow client retries a refused connection for minutes before
it gives up. Airflow is imported only when the connection is looked up, never here.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from modelyard.core.errors import ModelyardError

if TYPE_CHECKING:
    from modelyard.core.config import Config


class TrackingServerUnreachableError(ModelyardError, ConnectionError):
    """The MLflow tracking server does not answer; the message says how to start or point at one."""


MLFLOW_CONN_ID = "mlflow_default"
log = logging.getLogger(__name__)


def resolve_tracking_uri(config: Config, conn_id: str = MLFLOW_CONN_ID) -> str:
    """Where MLflow is: the Airflow connection, else ``$MLFLOW_TRACKING_URI``, else the config.

    The order of the tasks' ``MlflowHook``, so that a CLI command on a worker talks to the server
    its tasks use. The connection (``conn_id``) is read only when Airflow is installed and
    configured on this host (see :func:`airflow_configured`); its login and password become
    ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``, as the hook does.
    """
    return connection_tracking_uri(conn_id) or os.environ.get("MLFLOW_TRACKING_URI") or config.mlflow.tracking_uri


def connection_tracking_uri(conn_id: str = MLFLOW_CONN_ID) -> str | None:
    """The tracking URI of the Airflow connection ``conn_id``; None without Airflow or without the connection."""
    if not airflow_configured(conn_id):
        return None
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:
        log.debug("no Airflow connection '%s' (%s); using the config", conn_id, exc)
        return None
    return uri_of_connection(conn)


def uri_of_connection(conn: Any) -> str | None:
    """The tracking URI an Airflow connection gives; its login and password are exported for MLflow's basic auth."""
    if conn.login:
        os.environ["MLFLOW_TRACKING_USERNAME"] = conn.login
        os.environ["MLFLOW_TRACKING_PASSWORD"] = conn.password or ""
    # A URI connection (AIRFLOW_CONN_...='https://host') carries its scheme as the conn type.
    scheme = conn.schema or (conn.conn_type if conn.conn_type in ("http", "https") else None)
    return connection_uri(conn.host, conn.port, scheme)


def airflow_configured(conn_id: str = MLFLOW_CONN_ID) -> bool:
    """Whether this host can have Airflow connections: ``AIRFLOW_CONN_<ID>`` is set, or Airflow is
    installed with a config (``$AIRFLOW_HOME/airflow.cfg``, ``AIRFLOW__*`` variables).

    Checked before importing Airflow (seconds), which would also create ``~/airflow`` on a host
    that never ran it.
    """
    if os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}"):
        return True
    import importlib.util

    if importlib.util.find_spec("airflow") is None:
        return False
    home = Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow").expanduser()
    return (home / "airflow.cfg").is_file() or any(name.startswith("AIRFLOW__") for name in os.environ)


def connection_uri(host: str | None, port: int | None, schema: str | None) -> str | None:
    """``<schema>://<host>[:<port>]``; a host with a scheme already is a full URL. None without a host."""
    if not host:
        return None
    if "://" in host:
        return host.rstrip("/")
    address = f"{host}:{port}" if port else host
    return f"{schema or 'http'}://{address}"


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI page of a run."""
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


# Ending a run, MLflow reads it back to print "🏃 View run ... / 🧪 View experiment ..." on stdout: one
# request a run (issue 26) and two lines beside the link the stage already reports (:func:`run_url`).
MLFLOW_QUIET = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


def quiet_run_urls(environ: os._Environ[str] | dict[str, str] = os.environ) -> None:
    """Spare this process MLflow's run-URL print and its request (:data:`MLFLOW_QUIET`), unless set."""
    for key, value in MLFLOW_QUIET.items():
        environ.setdefault(key, value)


def is_healthy(url: str, timeout: float = 2) -> bool:
    return health_problem(url, timeout) is None


def health_problem(url: str, timeout: float = 2) -> str | None:
    """Why ``GET <url>/health`` did not answer 200 (None when it did)."""
    try:
        response = httpx.get(f"{url}/health", timeout=timeout)
    except httpx.TimeoutException:
        return f"no answer within {timeout:g} s"
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}".rstrip(": ")
    return None if response.status_code == 200 else f"answered {response.status_code}"


def require_reachable(uri: str, timeout: float = 5, attempts: int = 3, wait: float = 1.0) -> str:
    """Fail fast when an HTTP tracking server does not answer its health check.

    The MLflow client retries a refused connection for minutes before it gives up, so every
    command checks up front and says what to do. A blip (a server restarting, a busy worker) is
    not an outage: the check is tried ``attempts`` times, ``wait`` then twice that apart, so a dead
    server is reported in seconds and a restarting one is waited for.

    Raises:
        TrackingServerUnreachableError: ``GET <uri>/health`` did not answer 200 on any attempt.
    """
    if not uri.startswith(("http://", "https://")):
        return uri
    problem: str | None = None
    for attempt in range(attempts):
        if attempt:
            time.sleep(wait * 2 ** (attempt - 1))
        problem = health_problem(uri.rstrip("/"), timeout=timeout)
        if problem is None:
            return uri
        log.warning("MLflow at %s: GET /health %s (attempt %d of %d)", uri, problem, attempt + 1, attempts)
    raise TrackingServerUnreachableError(
        f"cannot reach the MLflow server at {uri} (GET /health: {problem}, {attempts} attempts): start it "
        "(`mlflow server`, or `modelyard up` for the embedded stack), or point MLFLOW_TRACKING_URI, the "
        "`mlflow_default` Airflow connection or mlflow.tracking_uri in modelyard.yaml at your server"
    )


class ExperimentDeletedError(ModelyardError):
    """The experiment modelyard records into is in MLflow's trash; the message says how to bring it back."""


def find_or_create_experiment(client: Any, name: str) -> str:
    """The id of experiment ``name``, created when missing (a concurrent creation is found, not an error).

    Raises:
        ExperimentDeletedError: the experiment was deleted (e.g. in the MLflow UI) and not purged:
            MLflow keeps its name, so nothing can be created under it or logged into it.
    """
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            # The MLflow 3 UI opens GenAI experiments on an overview page; this kind opens on the runs.
            return str(client.create_experiment(name, tags={"mlflow.experimentKind": "custom_model_development"}))
        except MlflowException:  # created by a concurrent run meanwhile
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        raise ExperimentDeletedError(
            f"the MLflow experiment '{name}' (id {found.experiment_id}) is deleted: MLflow keeps it in its trash "
            "and refuses new runs in it. Restore it (MLflow UI: Experiments, the trash; or `mlflow experiments "
            f"restore --experiment-id {found.experiment_id}`), or purge it (`mlflow gc --experiment-ids "
            f"{found.experiment_id}`, on the server's backend store) so that modelyard creates it anew"
        )
    return str(found.experiment_id)
