"""What training spares MLflow's client per request and per saved model (issue 26), and what it still does."""

from __future__ import annotations

import pytest

from modelyard.training import mlflow_log, registry, train


def test_request_headers_ask_whether_on_databricks_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking.request_header.registry import resolve_request_headers
    from mlflow.utils import databricks_utils

    mlflow_log.settle_request_headers()
    asked: list[str] = []
    monkeypatch.setattr(databricks_utils, "is_in_cluster", lambda: asked.append("cluster") or False)
    monkeypatch.setattr(databricks_utils, "is_in_databricks_notebook", lambda: asked.append("notebook") or False)
    headers = [resolve_request_headers() for _ in range(3)]
    assert asked == []
    assert all("User-Agent" in h for h in headers)  # the other providers still answer


def test_requirements_pinned_from_this_environment_are_not_checked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow.pyfunc
    from mlflow.utils import environment, requirements_utils

    mlflow_log.skip_pinned_requirement_check()
    checked: list[str] = []
    monkeypatch.setattr(requirements_utils, "_check_requirement_satisfied", lambda r: checked.append(r))
    pinned = registry.pip_requirements("xgboost")
    saving = environment.warn_dependency_requirement_mismatches
    for check in (saving, mlflow.pyfunc.warn_dependency_requirement_mismatches):
        check(pinned)  # as a save (environment) and a load (pyfunc) of a model training logged call it
        check(registry.pip_requirements("sklearn")[:2])
    assert checked == []
    environment.warn_dependency_requirement_mismatches(["numpy==0.0.1", pinned[0]])
    assert checked == ["numpy==0.0.1", pinned[0]]  # anything else: checked as before


def test_training_processes_skip_the_run_url_print_unless_told() -> None:
    environ: dict[str, str] = {}
    train.bound_mlflow_retries(environ)
    assert environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"
    told = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "false"}
    train.bound_mlflow_retries(told)
    assert told["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "false"
