"""The HTTP model server, assembled: settings from the environment, then the ASGI app for uvicorn.

``modelyard serve`` runs uvicorn (uvloop, the guarded httptools ``protocol``, JSON via
orjson) with :func:`create_app` as its factory, called once per worker process. The rooms:

* ``settings``: every ``MODELYARD_SERVE_*`` variable, read once here;
* ``app``: the ASGI app (lifespan, dispatch), its endpoints in ``predict`` (``/v1/predict``,
  ``/invocations``) and ``admin`` (``/admin/plan``), its plumbing in ``asgi`` and ``records``;
* ``manager``: the active plan (``active``), its swaps and retries (``swap_outcomes``); ``watcher``:
  the plan file; ``plan_log``: where a plan's prediction log writes;
* ``runtime``: one model's lifecycle (from ``registry``, ``artifacts``, ``flavors``, ``schema``,
  ``engines``), ``loading``: a plan's many models at once;
* ``metrics`` and ``logs``: ``/metrics`` and JSON log lines.

See ``docs/adr/0002-serving-runtime.md``.
"""

from __future__ import annotations

import dataclasses
import os
import warnings

from modelyard.deploy.serving.app import ServingApp
from modelyard.deploy.serving.lifeline import exit_with_supervisor
from modelyard.deploy.serving.logs import configure_logging
from modelyard.deploy.serving.settings import ServeSettings

# A worker of a multi-worker server that starts (or is restarted by the supervisor) waits this
# long for its first plan before it accepts connections, so the shared socket sends requests to
# the workers that can answer them instead of to a worker that would answer 503.
WORKER_FIRST_PLAN_WAIT_S = 120.0


def create_app() -> ServingApp:
    """uvicorn factory (one call per worker process): settings from the environment."""
    configure_logging()
    settings = ServeSettings.from_env()
    if exit_with_supervisor(settings.supervisor_pid):
        settings = dataclasses.replace(settings, first_plan_wait_seconds=WORKER_FIRST_PLAN_WAIT_S)
    _quiet_libraries()
    return ServingApp(settings)


def _quiet_libraries() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # scikit-learn estimators fitted on frames warn on every numpy call; the column order is the signature's.
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
