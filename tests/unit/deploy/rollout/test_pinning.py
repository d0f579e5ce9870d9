"""Plans pin each model to its version's registry source (ADR 0027), read in a paginated search, not per model."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from modelyard.core.config import Config, load_config
from modelyard.deploy.rollout.pinning import pin_sources
from modelyard.deploy.rollout.planner import PairState, PlanOptions, build_plan, diff_plans


@pytest.fixture
def config(demo_config_path: Path, clean_env: None) -> Config:
    return load_config(demo_config_path, environ={})


class Registry:
    """``search_model_versions`` over an in-memory registry; counts the searches."""

    def __init__(self, sources: dict[tuple[str, str], str]) -> None:
        self.sources = sources
        self.searches = 0

    def search_model_versions(self, filter_string: str, max_results: int, page_token: Any = None) -> Any:
        self.searches += 1
        versions = [
            SimpleNamespace(name=n, version=v, source=s)
            for (n, v), s in self.sources.items()
            if f"'{n}'" in filter_string
        ]
        return _Page(versions)


class _Page(list):  # type: ignore[type-arg]
    token = None


def proposal(config: Config, **champions: str):  # type: ignore[no-untyped-def]
    states = [
        PairState(f, r, config.mlflow.model_name(f, r), {"champion": champions.get(f"{f}__{r}", "1")})
        for f, r in config.pairs()
    ]
    return build_plan(config, states, PlanOptions())


def sources_of(config: Config, source: str) -> dict[tuple[str, str], str]:
    return {(config.mlflow.model_name(f, r), "1"): f"{source}-{f}-{r}" for f, r in config.pairs()}


def test_every_planned_model_is_pinned_in_one_search_per_chunk_of_names(config: Config) -> None:
    registry = Registry(sources_of(config, "models:/m-a"))

    pinned = pin_sources(registry, proposal(config), None).plan  # type: ignore[arg-type]

    variant = pinned.services[0].variants[0]
    service = pinned.services[0]
    assert variant.source == f"models:/m-a-{service.family}-{service.region}"
    assert len(pinned.model_sources()) == len(pinned.model_uris())
    assert registry.searches == 1  # not one request per model


def test_a_recreated_registered_model_changes_the_plan_and_the_diff_names_both_sources(config: Config) -> None:
    live = pin_sources(Registry(sources_of(config, "models:/m-old")), proposal(config), None).plan  # type: ignore[arg-type]
    recreated = sources_of(config, "models:/m-old")
    name = config.mlflow.model_name("pickup_eta", "hanoi")
    recreated[(name, "1")] = "models:/m-new"

    new = pin_sources(Registry(recreated), proposal(config), live).plan  # type: ignore[arg-type]

    assert new.digest() != live.digest()
    changed = [c for c in diff_plans(live, new) if c.change == "changed"]
    assert [(c.key, c.before, c.after) for c in changed] == [
        (
            "pickup_eta/hanoi",
            "primary v1 100% (primary from models:/m-old-pickup_eta-hanoi)",
            "primary v1 100% (primary from models:/m-new)",
        )
    ]


def test_a_version_gone_from_the_registry_keeps_the_source_the_live_plan_pinned(config: Config) -> None:
    live = pin_sources(Registry(sources_of(config, "models:/m-a")), proposal(config), None).plan  # type: ignore[arg-type]

    again = pin_sources(Registry({}), proposal(config), live).plan  # type: ignore[arg-type]

    assert again.digest() == live.digest()


def test_a_pair_kept_on_a_deleted_version_says_a_restart_cannot_load_it(config: Config) -> None:
    # bangkok's champion v1 was deleted in the MLflow UI (its alias with it) and it has no region group.
    live = pin_sources(Registry(sources_of(config, "models:/m-a")), proposal(config), None).plan  # type: ignore[arg-type]
    name = config.mlflow.model_name("pickup_eta", "bangkok")
    states = [
        PairState(
            f, r, config.mlflow.model_name(f, r), {} if (f, r) == ("pickup_eta", "bangkok") else {"champion": "1"}
        )
        for f, r in config.pairs()
    ]
    registry = sources_of(config, "models:/m-a")
    del registry[(name, "1")]

    pinned = pin_sources(Registry(registry), build_plan(config, states, PlanOptions(), live), live)  # type: ignore[arg-type]

    assert pinned.plan.service("pickup_eta", "bangkok") == live.service("pickup_eta", "bangkok")  # still serves
    reason = pinned.skipped["pickup_eta/bangkok"]
    assert "has no champion alias" in reason
    assert f"it keeps serving {name} v1, which the registry no longer has" in reason
    assert "restarted server cannot load this plan" in reason
    assert "which the registry no longer has" not in pinned.skipped.get("pickup_eta/singapore", "")
