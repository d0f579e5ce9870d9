"""`up` after `down` brings the endpoint back: a real `modelyard serve` started the way the
deploy DAG starts it, stopped the way `down` stops it, resumed on the last deployed plan."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelyard.deploy.devstack.stack import StackError, last_deployed_plan, resume_serving
from modelyard.deploy.rollout.local_target import LocalTarget
from modelyard.deploy.rollout.mlflow_server import free_port
from modelyard.deploy.serving.plan import Plan, last_good_path, parse_plan
from tests.bench.serving import feature_names, register_xgboost

NAMES = feature_names(5)


@pytest.fixture(scope="module")
def model_uri(mlflow_server) -> str:
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.set_registry_uri(mlflow_server.url)
    return register_xgboost("devstack-resume", seed=0, n_features=5, n_trees=5, rows=200)


def _plan(uri: str) -> Plan:
    variants = [{"name": "champion", "model_uri": uri, "weight": 100}]
    return parse_plan({"version": 1, "services": [{"family": "acceptance", "region": "jakarta", "variants": variants}]})


@pytest.fixture
def target(mlflow_server, tmp_path: Path) -> Iterator[LocalTarget]:
    local = LocalTarget(
        host="127.0.0.1",
        port=free_port(),
        run_dir=tmp_path / "run",
        tracking_uri=mlflow_server.url,
        families={"acceptance": NAMES},
        ready_timeout=120,
    )
    try:
        yield local
    finally:
        local.stop()


def _served_digest(target: LocalTarget) -> str | None:
    try:
        # /readyz is public; the admin API needs the local target's token.
        return httpx.get(f"{target.url}/readyz", timeout=5).json()["plan"]["active_digest"]
    except httpx.HTTPError:
        return None


def test_never_deployed_resumes_nothing(target: LocalTarget) -> None:
    assert resume_serving(target) is None
    assert _served_digest(target) is None


def test_down_then_up_serves_the_last_deployed_plan(target: LocalTarget, model_uri: str) -> None:
    plan = _plan(model_uri)
    target.apply(plan)  # what the deploy DAG does
    assert target.stop()  # what `make down` does
    assert _served_digest(target) is None

    resumed = resume_serving(target)

    assert resumed is not None
    assert resumed.digest() == plan.digest()
    assert _served_digest(target) == plan.digest()
    assert target.smoke(plan) == {"acceptance/jakarta": model_uri.rsplit("/", 1)[1]}
    assert resume_serving(target) is None  # already serving: left alone


def test_the_last_good_copy_wins_over_a_plan_file_that_never_served(target: LocalTarget, model_uri: str) -> None:
    plan = _plan(model_uri)
    target.apply(plan)
    target.stop()
    assert last_good_path(target.plan_file).exists()
    never_served = _plan(model_uri.rsplit("/", 1)[0] + "/999")
    target.plan_file.write_text(json.dumps(never_served.model_dump(mode="json")))

    assert last_deployed_plan(target) == plan
    resumed = resume_serving(target)
    assert resumed is not None
    assert _served_digest(target) == plan.digest()


def test_a_plan_that_cannot_serve_is_an_error_naming_it(target: LocalTarget, model_uri: str) -> None:
    target.run_dir.mkdir(parents=True)
    missing = _plan(model_uri.rsplit("/", 1)[0] + "/999")
    target.plan_file.write_text(json.dumps(missing.model_dump(mode="json")))

    with pytest.raises(StackError, match=r"did not come back.*version 999") as failed:
        resume_serving(target)
    assert "then `modelyard deploy`" in str(failed.value)  # the way out: plan from the registry as it is


def test_a_server_that_refuses_the_token_is_an_error_not_nothing_serving(
    target: LocalTarget, model_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target.apply(_plan(model_uri))
    monkeypatch.setenv("MODELYARD_SERVE_ADMIN_TOKEN", "not-the-servers-token")

    with pytest.raises(StackError, match=r"refused this command's admin token \(401: .*MODELYARD_SERVE_ADMIN_TOKEN"):
        resume_serving(target)
    assert _served_digest(target) is not None  # left serving, not restarted over it
