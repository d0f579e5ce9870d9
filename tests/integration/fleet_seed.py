"""A synthetic fleet in a real MLflow registry: the config of N pairs and their registered models.

Used by ``test_fleet_page.py`` (60 pairs) and ``tests/bench/fleet_page.py`` (1,000 pairs). The
versions are registry entries only (no model artifacts): the fleet page reads aliases and tags.
Pair ``i`` (in config order) gets, by its index:

* ``i % 10 == 9``: nothing registered (a pair that never trained);
* otherwise v1 and v2 from one training run, ``champion`` -> v2 and ``previous-champion`` -> v1;
* ``i % 3 == 0``: a v3 ``challenger``, ``awaiting-approval`` when ``i % 6 == 0``, else ``rejected``;
* ``i % 5 == 0``: a ``drifted`` monitoring verdict on the champion, else ``stable``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml
from mlflow import MlflowClient

from modelyard.core.config import Config
from modelyard.core.contracts.registry import CHALLENGER_ALIAS, CHAMPION_ALIAS, MONITORING_TAG, PREVIOUS_ALIAS

REPO = Path(__file__).resolve().parents[2]
CHECKED_AT = "2026-12-01T06:00:00+00:00"


def write_fleet_config(path: Path, storage_root: Path, regions: int, project: str) -> Path:
    """The demo config with ``regions`` regions (the demo's cloned as ``<name>_<i>``) and its own model names."""
    raw = yaml.safe_load((REPO / "modelyard.yaml").read_text())
    demo = raw["regions"]
    # Deep copies: shared objects would be written as YAML anchors, which the config loader bounds.
    raw["regions"] = [
        {**copy.deepcopy(demo[i % len(demo)]), "name": f"{demo[i % len(demo)]['name']}_{i:03d}"} for i in range(regions)
    ]
    raw["deploy"]["kubernetes"]["releases"] = {}
    raw["project"] = project
    raw["mlflow"] = {**raw["mlflow"], "model_name_template": f"{project}.{{family}}.{{region}}"}
    raw["storage"] = {"root": str(storage_root)}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@dataclass(frozen=True)
class SeededPair:
    """What the seed put in the registry for one pair."""

    family: str
    region: str
    model_name: str
    registered: bool
    run_id: str | None
    challenger: str | None  # the challenger's outcome tag
    drifted: bool


def seed_pair(
    client: MlflowClient, experiment_id: str, config: Config, index: int, pair: tuple[str, str]
) -> SeededPair:
    """Register pair ``index``'s versions, aliases and tags as the module docstring says."""
    family, region = pair
    name = config.mlflow.model_name(family, region)
    if index % 10 == 9:
        return SeededPair(family, region, name, False, None, None, False)
    client.create_registered_model(name)
    run_id = client.create_run(experiment_id, run_name=f"{family}/{region}/seed").info.run_id
    drifted = index % 5 == 0
    monitoring = {"verdict": "drifted" if drifted else "stable", "checked_at": CHECKED_AT, "summary": "seeded"}
    champion_tags = {
        "holdout_auc": "0.81",
        "promotion.outcome": "promoted",
        "promotion.champion_since": "2026-11-30T12:00:00+00:00",
        **{f"{MONITORING_TAG}{key}": value for key, value in monitoring.items()},
    }
    client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id, await_creation_for=0)
    client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id, tags=champion_tags, await_creation_for=0)
    client.set_registered_model_alias(name, PREVIOUS_ALIAS, "1")
    client.set_registered_model_alias(name, CHAMPION_ALIAS, "2")
    challenger = None
    if index % 3 == 0:
        challenger = "awaiting-approval" if index % 6 == 0 else "rejected"
        tags = {"promotion.outcome": challenger}
        client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id, tags=tags, await_creation_for=0)
        client.set_registered_model_alias(name, CHALLENGER_ALIAS, "3")
    return SeededPair(family, region, name, True, run_id, challenger, drifted)


def seed_fleet(client: MlflowClient, config: Config, threads: int = 4) -> list[SeededPair]:
    """Seed every pair of ``config`` (a few requests each, ``threads`` at a time), in config order."""
    experiment_id = client.create_experiment(f"{config.project}/seed")
    pairs = config.pairs()
    work: Callable[[int], SeededPair] = lambda i: seed_pair(client, experiment_id, config, i, pairs[i])  # noqa: E731
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(work, range(len(pairs))))
