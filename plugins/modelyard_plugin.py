"""The modelyard Airflow plugin: links from task pages to MLflow, MLflow in the UI's menu, the fleet page.

Airflow loads it through the distribution's entry point
``airflow.plugins = modelyard = modelyard.plugins.modelyard_plugin:ModelyardPlugin``, so an
Airflow that has the package installed shows the links with no file in its plugins folder.
The fleet page (``plugins/fleet``) is a FastAPI app mounted at ``/modelyard`` with a "Fleet"
entry in the UI's navigation. Nothing here talks to a server at import time.
"""

from __future__ import annotations

import os
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from modelyard.plugins.fleet.link import FleetPairsLink
from modelyard.plugins.fleet.mount import fleet_mounts, fleet_views
from modelyard.plugins.links import MlflowModelVersionLink, MlflowRunLink


def mlflow_menu_views(environ: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """A "MLflow" entry in the Airflow UI's Browse menu when ``MLFLOW_TRACKING_URI`` is an HTTP server."""
    uri = (environ if environ is not None else dict(os.environ)).get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith(("http://", "https://")):
        return []
    return [{"name": "MLflow", "href": uri.rstrip("/"), "category": "browse", "destination": "nav"}]


class ModelyardPlugin(AirflowPlugin):
    """Global extra links (MLflow run and model version, the task's pairs on the fleet page), an MLflow menu entry and
    the fleet page."""

    name = "modelyard"
    global_operator_extra_links = [MlflowRunLink(), MlflowModelVersionLink(), FleetPairsLink()]

    def __init__(self) -> None:
        # Read when Airflow instantiates the plugin (in the API server), not at import.
        self.external_views = [*fleet_views(), *mlflow_menu_views()]
        self.fastapi_apps = fleet_mounts()
