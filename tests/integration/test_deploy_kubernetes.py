"""The Kubernetes target's planning side with the real helm binary (client-side dry run, no cluster).

What is covered here: releases selected from ``deploy.kubernetes.releases`` (and narrowed by
region), each release's sub-plan rendered into chart values and through
``helm install --dry-run=client``, so the plan ConfigMap the pods read is exactly the plan
whose digest the deploy compares. The cluster side (upgrade, watch, smoke, rollback) is
tested against the Kubernetes API emulator in ``test_kubernetes_target.py``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.core.config import Config, load_config
from modelyard.deploy.rollout.helm_release import HelmReleases, make_command
from modelyard.deploy.rollout.kube_deploy import release_regions, render_release_values
from modelyard.deploy.rollout.planner import PairState, PlanOptions, build_plan
from modelyard.deploy.rollout.request import DeployChoices, DeployRequest
from modelyard.deploy.rollout.strategies import DeployError
from modelyard.deploy.serving.plan import parse_plan_text

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def config(demo_config_path: Path, clean_env: None) -> Config:
    return load_config(demo_config_path, environ={})


def release_plan(config: Config, regions: list[str], strategy: str = "rolling") -> Any:
    states = [
        PairState(f, r, config.mlflow.model_name(f, r), {"champion": "3", "previous-champion": "2"})
        for f, r in config.pairs(regions=regions)
    ]
    return build_plan(config, states, PlanOptions(regions=regions, strategy=strategy)).plan  # type: ignore[arg-type]


def kubernetes_request(config: Config, **choices: Any) -> DeployRequest:
    return DeployRequest.resolve(config, DeployChoices(target="kubernetes", **choices))


def test_releases_follow_the_config_and_narrow_by_region(config: Config) -> None:
    every = release_regions(config, kubernetes_request(config))
    jakarta = release_regions(config, kubernetes_request(config, regions=["jakarta"]))

    assert every == {"sea-west": ["jakarta", "surabaya", "singapore"], "sea-east": ["ho_chi_minh", "hanoi", "bangkok"]}
    assert jakarta == {"sea-west": ["jakarta"]}
    with pytest.raises(DeployError, match="unknown releases"):
        release_regions(config, kubernetes_request(config, releases=["moon"]))


@pytest.mark.parametrize("strategy", ["rolling", "blue-green", "shadow"])
def test_each_release_renders_its_sub_plan_with_the_real_helm(config: Config, strategy: str) -> None:
    helm = HelmReleases(make_command(), config.deploy.kubernetes.namespace, REPO / config.deploy.kubernetes.chart)
    for release, regions in release_regions(config, kubernetes_request(config)).items():
        plan = release_plan(config, regions, strategy)
        values = render_release_values(config, release, plan)

        rendered = asyncio.run(helm.dry_run(release, values))

        objects = [obj for obj in yaml.safe_load_all(rendered["manifest"]) if obj]
        config_maps = [o for o in objects if o["kind"] == "ConfigMap"]
        plans = [
            parse_plan_text(text) for cm in config_maps for text in cm.get("data", {}).values() if "services" in text
        ]
        assert [p.digest() for p in plans] == [plan.digest()], f"{release}: the ConfigMap must hold the sub-plan"
        assert {s.region for s in plans[0].services} == set(regions)
        assert values["planDigest"] == plan.digest()
        assert json.dumps(values).count("models:/") >= len(plan.services)
