"""Sharding a plan over Helm releases (deploy.rollout.releases)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelyard.core.config import Config, load_config
from modelyard.deploy.rollout.releases import (
    ShardingError,
    check_release_name,
    release_groups,
    release_values,
    split_plan,
)
from modelyard.deploy.serving.plan import Plan, parse_plan

REPO = Path(__file__).resolve().parents[4]


@pytest.fixture
def config(clean_env: None) -> Config:
    return load_config(REPO / "modelyard.yaml")


def with_releases(config: Config, releases: dict[str, list[str]]) -> Config:
    kubernetes = config.deploy.kubernetes.model_copy(update={"releases": releases})
    return config.model_copy(update={"deploy": config.deploy.model_copy(update={"kubernetes": kubernetes})})


def plan_for(pairs: list[tuple[str, str]], **extra: Any) -> Plan:
    services = [
        {"family": f, "region": r, "variants": [{"name": "champion", "model_uri": f"models:/{f}-{r}/1", "weight": 100}]}
        for f, r in pairs
    ]
    return parse_plan({"version": 1, "services": services, **extra})


def test_demo_config_groups(config: Config) -> None:
    assert release_groups(config) == {
        "sea-west": ["jakarta", "surabaya", "singapore"],
        "sea-east": ["ho_chi_minh", "hanoi", "bangkok"],
    }


def test_without_a_release_map_one_release_serves_everything(config: Config) -> None:
    assert release_groups(with_releases(config, {})) == {"modelyard": config.region_names}


def test_region_in_two_releases_is_refused(config: Config) -> None:
    groups = {"a": config.region_names, "b": ["jakarta"]}
    with pytest.raises(ShardingError, match="region 'jakarta' is in both 'a' and 'b'"):
        release_groups(with_releases(config, groups))


def test_region_in_no_release_is_refused(config: Config) -> None:
    with pytest.raises(ShardingError, match=r"regions \['surabaya', .*\] are in no release"):
        release_groups(with_releases(config, {"west": ["jakarta"]}))


@pytest.mark.parametrize("name", ["Sea_West", "-west", "west-", "x" * 54, ""])
def test_release_names_must_be_valid_for_helm(name: str) -> None:
    with pytest.raises(ShardingError, match="not a valid Helm release name"):
        check_release_name(name)


def test_split_keeps_each_release_to_its_regions_and_the_plan_wide_settings(config: Config) -> None:
    plan = plan_for(config.pairs(), routing_key="booking_id", metadata={"source": "test"})
    shards = split_plan(plan, release_groups(config))
    assert [s.release for s in shards] == ["sea-west", "sea-east"]
    west, east = shards
    assert {s.region for s in west.plan.services} == {"jakarta", "surabaya", "singapore"}
    assert {s.region for s in east.plan.services} == {"ho_chi_minh", "hanoi", "bangkok"}
    assert len(west.plan.services) + len(east.plan.services) == len(plan.services)
    assert west.plan.routing_key == "booking_id"
    assert west.plan.metadata == {"source": "test"}
    assert west.plan_digest != east.plan_digest != plan.digest()
    assert parse_plan(west.plan.model_dump(mode="json")).digest() == west.plan_digest  # a valid plan on its own


def test_release_without_services_is_not_touched(config: Config) -> None:
    shards = split_plan(plan_for([("pickup_eta", "hanoi")]), release_groups(config))
    assert [s.release for s in shards] == ["sea-east"]
    assert shards[0].regions == ("ho_chi_minh", "hanoi", "bangkok")


def test_plan_region_without_release_is_refused() -> None:
    with pytest.raises(ShardingError, match=r"regions \['hanoi'\] that no release"):
        split_plan(plan_for([("pickup_eta", "hanoi")]), {"west": ["jakarta"]})


def test_release_values_are_plain_json_and_keep_base_values(config: Config) -> None:
    (shard,) = split_plan(plan_for([("pickup_eta", "jakarta")]), release_groups(config))
    base = {"mlflow": {"existingSecret": "s"}, "shard": {"name": "ignored"}, "plan": {"stale": True}}
    values = release_values(shard, base)
    assert values["mlflow"] == {"existingSecret": "s"}
    assert values["planDigest"] == shard.plan_digest
    assert values["shard"] == {"name": "sea-west", "regions": ["jakarta", "surabaya", "singapore"]}
    assert values["plan"] == shard.plan.model_dump(mode="json")  # replaced, never merged with a stale plan
    assert base["plan"] == {"stale": True}  # the caller's values are not modified
    assert release_values(shard, base) == values


def test_a_removed_region_leaves_the_releases_of_the_others(tmp_path: Path, clean_env: None) -> None:
    """Removing a region from `regions` is the whole change: its release keeps the other regions."""
    import yaml

    data = yaml.safe_load((REPO / "modelyard.yaml").read_text())
    data["regions"] = [r for r in data["regions"] if r["name"] != "singapore"]
    (tmp_path / "modelyard.yaml").write_text(yaml.safe_dump(data))
    groups = release_groups(load_config(tmp_path / "modelyard.yaml", environ={}))
    assert groups["sea-west"] == ["jakarta", "surabaya"]
    assert sorted(r for regions in groups.values() for r in regions) == sorted(r["name"] for r in data["regions"])
