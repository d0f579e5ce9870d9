"""Operator extra links from Airflow task instances to what they made in MLflow.

Registered as *global* extra links (``plugins.modelyard_plugin``), because the modelyard
tasks are TaskFlow ``@task`` functions: Airflow builds them as ``_PythonDecoratedOperator``
instances, and a link class attached to one operator class would not reach them. A global
link is offered on every task instance and resolves to a URL only where the task recorded
one, so the button is active on ``training.train`` / ``promotion`` / ``deploy`` tasks and
empty elsewhere.

Where the URL comes from, first match wins (XComs of the task instance, map index included):

* ``MLflow run``: XCom ``mlflow_run_url``; else ``run_url`` / ``mlflow_run_url`` in the
  task's return value.
* ``MLflow model version``: XCom ``model_version_url``; else ``model_version_url`` in the
  return value; else built from ``model_name`` + ``version`` in the return value and the
  MLflow UI address (the run URL's base, or ``$MLFLOW_TRACKING_URI`` of the API server).

* ``Pairs on the fleet page`` (``plugins.fleet.link``): the fleet page showing only the task's pairs.

The links run inside the API server, which reads XComs straight from the metadata DB.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

RUN_URL_KEY = "mlflow_run_url"
MODEL_VERSION_URL_KEY = "model_version_url"
RETURN_VALUE_KEY = "return_value"


def task_xcom(ti_key: TaskInstanceKey, key: str) -> Any:
    """The XCom ``key`` of one task instance (JSON-decoded), or None."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.execute(
            XComModel.get_many(
                key=key,
                run_id=ti_key.run_id,
                dag_ids=ti_key.dag_id,
                task_ids=ti_key.task_id,
                map_indexes=ti_key.map_index,
            ).with_only_columns(XComModel.value)
        ).first()
    if row is None:
        return None
    value = row.value
    if isinstance(value, (str, bytes)):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def mlflow_base_url(run_url: str | None) -> str | None:
    """The MLflow UI base: the part of a run URL before ``/#/``, else ``$MLFLOW_TRACKING_URI`` if it is HTTP."""
    if run_url and "/#/" in run_url:
        return run_url.split("/#/", 1)[0]
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else None


def model_version_page(base_url: str, model_name: str, version: str) -> str:
    """The MLflow UI page of one registered model version."""
    return f"{base_url.rstrip('/')}/#/models/{quote(model_name, safe='')}/versions/{quote(str(version), safe='')}"


def run_url_from(pushed: Any, returned: Any) -> str:
    """The MLflow run URL a task recorded ('' when it recorded none)."""
    if isinstance(pushed, str) and pushed:
        return pushed
    if isinstance(returned, Mapping):
        return str(returned.get("run_url") or returned.get(RUN_URL_KEY) or "")
    return ""


def model_version_url_from(pushed: Any, returned: Any) -> str:
    """The model version URL a task recorded or that its return value names ('' when none)."""
    if isinstance(pushed, str) and pushed:
        return pushed
    if not isinstance(returned, Mapping):
        return ""
    if returned.get(MODEL_VERSION_URL_KEY):
        return str(returned[MODEL_VERSION_URL_KEY])
    name, version = returned.get("model_name"), returned.get("version")
    base = mlflow_base_url(str(returned.get("run_url") or returned.get(RUN_URL_KEY) or "") or None)
    if not (name and version and base):
        return ""
    return model_version_page(base, str(name), str(version))


class MlflowRunLink(BaseOperatorLink):
    """Task instance → the MLflow run it logged."""

    name = "MLflow run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return run_url_from(task_xcom(ti_key, RUN_URL_KEY), _returned(ti_key))


class MlflowModelVersionLink(BaseOperatorLink):
    """Task instance → the registered model version it produced (or promoted)."""

    name = "MLflow model version"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return model_version_url_from(task_xcom(ti_key, MODEL_VERSION_URL_KEY), _returned(ti_key))


def _returned(ti_key: TaskInstanceKey) -> Any:
    return task_xcom(ti_key, RETURN_VALUE_KEY)
