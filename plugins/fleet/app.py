"""The fleet page's FastAPI app: ``GET /fleet`` (HTML), mounted by the plugin at ``/modelyard`` (``mount``).

:func:`create_app` takes where to read from, so a test serves the same app against its own
MLflow server; :func:`airflow_app` is the plugin's: config and MLflow from the API server's
environment (read once, on the first view), deploy records from Airflow's metadata database,
and every view requires an Airflow login (the UI's session cookie, as in its plugin frame).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from modelyard.core.errors import ModelyardError
from modelyard.plugins.fleet.page import Links, render_error, render_page
from modelyard.plugins.fleet.rows import FleetQuery, FleetQueryError
from modelyard.plugins.fleet.sources import FleetSources, airflow_deploy_records, fleet_page, local_live_plan
from modelyard.plugins.fleet.urls import PAGE_PATH

log = logging.getLogger(__name__)
# The API server's MLflow client, unless its environment says otherwise: a view of a registry
# that is down answers in seconds (a 502 that says so), not after MLflow's minutes of retries.
API_SERVER_MLFLOW_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}

SourcesFactory = Callable[[], tuple[FleetSources, Links]]


def create_app(sources: SourcesFactory, dependencies: Sequence[Any] = ()) -> FastAPI:
    """The app with ``GET /fleet``; ``sources`` is called per view (cache it if it is costly to make)."""
    app = FastAPI(title="modelyard fleet", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get(PAGE_PATH, response_class=HTMLResponse, dependencies=list(dependencies))
    def fleet(request: Request) -> HTMLResponse:
        return _view(sources, request)

    return app


def _view(sources: SourcesFactory, request: Request) -> HTMLResponse:
    from mlflow.exceptions import MlflowException

    try:
        query = FleetQuery.parse(dict(request.query_params))
    except FleetQueryError as exc:
        return HTMLResponse(render_error(f"{exc}; fix the address and reload"), status_code=400)
    try:
        fleet_sources, links = sources()
        page = fleet_page(fleet_sources, query)
    except ModelyardError as exc:
        return HTMLResponse(render_error(f"modelyard config: {exc}"), status_code=500)
    except MlflowException as exc:  # connection errors too, once MLflow's retries are spent
        log.warning("fleet page: the MLflow registry did not answer: %s", exc)
        return HTMLResponse(render_error(f"the MLflow registry did not answer: {exc}"), status_code=502)
    except Exception as exc:
        log.exception("fleet page: reading the fleet failed")
        message = f"reading the fleet failed ({type(exc).__name__}: {exc}); the API server log has the traceback"
        return HTMLResponse(render_error(message), status_code=500)
    return HTMLResponse(render_page(page, links))


@cache
def airflow_sources() -> tuple[FleetSources, Links]:
    """The API server's sources: its modelyard config, its MLflow, Airflow's deploy records (made once)."""
    from mlflow import MlflowClient

    from modelyard.core.config import load_config
    from modelyard.core.tracking import resolve_tracking_uri

    for name, value in API_SERVER_MLFLOW_ENV.items():
        os.environ.setdefault(name, value)
    config = load_config()
    uri = resolve_tracking_uri(config)
    sources = FleetSources(
        config=config,
        client=MlflowClient(tracking_uri=uri, registry_uri=uri),
        deploy_records=airflow_deploy_records,
        live_plan=lambda: local_live_plan(config),
    )
    mlflow_ui = uri.rstrip("/") if uri.startswith(("http://", "https://")) else None
    return sources, Links(mlflow=mlflow_ui, airflow=airflow_base_path())


def airflow_base_path() -> str:
    """The path the Airflow UI is served under (``[api] base_url``), e.g. ``/`` or ``/airflow/``."""
    from urllib.parse import urlparse

    from airflow.configuration import conf

    return urlparse(conf.get("api", "base_url", fallback="/") or "/").path or "/"


def airflow_app() -> FastAPI:
    """The app the plugin mounts: every view requires a logged-in Airflow user."""
    from airflow.api_fastapi.core_api.security import requires_authenticated
    from fastapi import Depends

    return create_app(airflow_sources, dependencies=[Depends(requires_authenticated())])
