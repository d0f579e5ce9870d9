"""A deploy request is resolved against the config once, when it is made (deploy.rollout.request)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from modelyard.core.config import Config, load_config
from modelyard.deploy.rollout.planner import PairState, build_plan
from modelyard.deploy.rollout.request import DeployChoices, DeployRequest
from modelyard.deploy.rollout.staged_deploy import StagedDeploy
from modelyard.deploy.rollout.strategies import DeployError, Thresholds
from modelyard.deploy.serving.plan import Plan

# The demo config with every default a request looks up moved off its usual value.
OVERRIDES = {
    "MODELYARD_DEPLOY__TARGET": "kubernetes",
    "MODELYARD_DEPLOY__LOCAL__PORT": "8123",
    "MODELYARD_DEPLOY__ROLLOUT__STRATEGY": "blue-green",
    "MODELYARD_DEPLOY__ROLLOUT__ANALYSIS_SECONDS": "5",
    "MODELYARD_DEPLOY__ROLLOUT__MAX_ERROR_RATE": "0.05",
    "MODELYARD_DEPLOY__ROLLOUT__MAX_P99_MS": "250",
    "MODELYARD_DEPLOY__ROLLOUT__MIN_REQUESTS": "7",
}


@pytest.fixture
def config(demo_config_path: Path, clean_env: None) -> Config:
    return load_config(demo_config_path, environ=OVERRIDES)


def test_nothing_chosen_takes_every_value_from_the_config(config: Config) -> None:
    request = DeployRequest.resolve(config)

    assert request.target == "kubernetes"
    assert request.strategy == "blue-green"
    assert request.port == 8123
    assert request.canary_steps == config.deploy.rollout.canary_steps == [10, 50, 100]
    assert request.thresholds == Thresholds(max_error_rate=0.05, max_p99_ms=250, min_requests=7, analysis_seconds=5)
    assert (request.dry_run, request.families, request.regions, request.version) == (False, [], [], None)


def test_the_users_choices_win_even_when_falsy(config: Config) -> None:
    choices = DeployChoices(
        target="local", strategy="canary", port=9001, canary_steps=[25, 100], analysis_seconds=0, regions=["jakarta"]
    )
    request = DeployRequest.resolve(config, choices)

    assert (request.target, request.strategy, request.port) == ("local", "canary", 9001)
    assert request.canary_steps == [25, 100]
    assert request.thresholds.analysis_seconds == 0  # 0 is a choice (no hold), not "use the config's 5"
    assert request.thresholds.max_error_rate == 0.05  # not a flag: always the config's
    assert request.regions == ["jakarta"]


@pytest.mark.parametrize("steps", [[50, 10, 100], [10, 50], [0, 100], [10, 10, 100]])
def test_bad_canary_steps_fail_when_the_request_is_made(config: Config, steps: list[int]) -> None:
    with pytest.raises(DeployError, match=r"must be increasing percentages ending at 100"):
        DeployRequest.resolve(config, DeployChoices(canary_steps=steps))


def test_a_bad_choice_is_refused_by_field_name() -> None:
    with pytest.raises(ValidationError) as failure:
        DeployChoices.model_validate({"version": "v3", "strategy": "big-bang"})
    assert {str(e["loc"][0]) for e in failure.value.errors()} == {"version", "strategy"}


def test_a_request_has_no_defaults_left_to_look_up() -> None:
    with pytest.raises(ValidationError) as failure:
        DeployRequest.model_validate({"target": "local"})
    missing = {str(e["loc"][0]) for e in failure.value.errors() if e["type"] == "missing"}
    assert {"strategy", "canary_steps", "thresholds", "port"} <= missing


def test_a_request_travels_as_json_unchanged(config: Config) -> None:
    request = DeployRequest.resolve(config, DeployChoices(version="3", families=["pickup_eta"], regions=["jakarta"]))
    assert DeployRequest.model_validate(request.model_dump(mode="json")) == request
    assert request.for_release("sea-west").releases == ["sea-west"]


def test_the_planner_gets_the_resolved_strategy(config: Config) -> None:
    options = DeployRequest.resolve(config, DeployChoices(regions=["jakarta"], challenger_weight=10)).plan_options()
    assert (options.strategy, options.regions, options.challenger_weight) == ("blue-green", ["jakarta"], 10)
    assert DeployRequest.resolve(config).plan_options(regions=["hanoi"]).regions == ["hanoi"]


class MemoryTarget:
    """Applies plans in memory."""

    name = "memory"

    def __init__(self) -> None:
        self.active: Plan | None = None

    def apply(self, plan: Plan) -> bool:
        changed, self.active = self.active != plan, plan
        return changed

    def metrics_text(self) -> str:
        return ""

    def live_digest(self) -> str | None:
        return self.active.digest() if self.active is not None else None


def test_a_staged_deploy_runs_and_resumes_on_the_requests_values(config: Config) -> None:
    states = [
        PairState(f, r, config.mlflow.model_name(f, r), {"champion": "1"}) for f, r in config.pairs()
    ]  # fmt: skip
    request = DeployRequest.resolve(config, DeployChoices(strategy="canary", canary_steps=[50, 100]))
    proposal = build_plan(config, states, request.plan_options())
    target = MemoryTarget()

    staged = StagedDeploy.start(target, None, proposal, request, "local")
    restored = StagedDeploy.restore(target, staged.checkpoint())

    assert (staged.result.target, staged.result.strategy) == ("kubernetes", "canary")
    for deploy in (staged, restored):
        assert deploy.request == request
        assert deploy.rollout is not None
        assert deploy.rollout.thresholds == request.thresholds
