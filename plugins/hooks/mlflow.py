"""``MlflowHook``: where the MLflow tracking server is, from an Airflow Connection.

The Connection ``mlflow_default`` (conn type ``mlflow``, which this provider registers; any other
type works too) gives the server:
``schema`` is the URL scheme (``http`` unless set), ``host`` and ``port`` the address; a
host that already holds a full URL (``https://mlflow.example.com/prefix``) is used as is.
``login`` / ``password`` become ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``
for MLflow's basic auth. Without the Connection the hook falls back to
``$MLFLOW_TRACKING_URI`` and then to ``mlflow.tracking_uri`` of the modelyard config, so
the embedded demo needs no Airflow setup.

Example: ``AIRFLOW_CONN_MLFLOW_DEFAULT='http://mlflow.internal:5000'``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from modelyard.core.tracking import uri_of_connection

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from modelyard.core.config import Config


class MlflowHook(BaseHook):
    """Resolve the MLflow tracking URI (and credentials) and hand out a client."""

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    conn_type = "mlflow"
    hook_name = "MLflow"

    def __init__(self, mlflow_conn_id: str = default_conn_name, config: Config | None = None) -> None:
        super().__init__()
        self.mlflow_conn_id = mlflow_conn_id
        self._config = config
        self._uri: str | None = None

    def get_tracking_uri(self) -> str:
        """The tracking URI: the Connection, else ``$MLFLOW_TRACKING_URI``, else the config's.

        The order of :func:`modelyard.core.tracking.resolve_tracking_uri` (the CLI's). Credentials on
        the Connection are exported to the environment MLflow reads them from.
        """
        if self._uri is None:
            self._uri = self._from_connection() or os.environ.get("MLFLOW_TRACKING_URI") or self._from_config()
        return self._uri

    def get_conn(self) -> MlflowClient:
        """An ``MlflowClient`` bound to the tracking (and registry) URI."""
        from mlflow import MlflowClient

        uri = self.get_tracking_uri()
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    def _from_connection(self) -> str | None:
        from airflow.exceptions import AirflowNotFoundException  # 3.1 raises it; 3.3 aliases the sdk one

        try:
            conn = self.get_connection(self.mlflow_conn_id)
        except AirflowNotFoundException:
            self.log.info("no Airflow connection '%s'; falling back to MLFLOW_TRACKING_URI/config", self.mlflow_conn_id)
            return None
        return uri_of_connection(conn)

    def _from_config(self) -> str:
        if self._config is None:
            from modelyard.core.config import load_config

            self._config = load_config()
        return self._config.mlflow.tracking_uri

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """How the connection form looks in the Airflow UI."""
        return {
            "hidden_fields": ["extra"],
            "relabeling": {"schema": "Scheme (http/https)", "login": "Username"},
            "placeholders": {"host": "mlflow.internal or https://mlflow.example.com", "port": "5000"},
        }
