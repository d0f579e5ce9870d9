"""Pooling a region group's snapshots: stacked in time order, learnt features learnt again on the pool."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from modelyard.core.config import Config, load_config
from modelyard.core.featurespec import FittedSpec
from modelyard.pipeline import snapshots
from modelyard.pipeline.build import build_all
from modelyard.training.job import TrainingError
from modelyard.training.pooled import pool_snapshots, publish_pooled

REPO = Path(__file__).resolve().parents[3]


def _config(tmp_path: Path) -> Config:
    """The demo config, one family with the region as a category feature, small regions."""
    raw = yaml.safe_load((REPO / "modelyard.yaml").read_text())
    family = next(f for f in raw["families"] if f["name"] == "pickup_eta")
    family["features"] = [*family["features"], {"name": "region_code", "kind": "category", "column": "region"}]
    raw["families"] = [family]
    raw["regions"] = [r for r in raw["regions"] if r["name"] in ("jakarta", "surabaya", "singapore")]
    raw.pop("deploy")
    raw["storage"] = {"root": str(tmp_path / "store")}
    raw["data"] = {**raw["data"], "min_rows": 300, "synthetic": {**raw["data"]["synthetic"], "rows": 400}}
    path = tmp_path / "modelyard.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(path, environ={})


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Config:
    config = _config(tmp_path_factory.mktemp("pooled"))
    results = build_all(config, regions=["jakarta", "surabaya"])
    assert [r.status for r in results] == ["published", "published"], [r.reason for r in results]
    return config


def test_pools_every_member_snapshot_in_time_order(built: Config) -> None:
    pooled = pool_snapshots(built, "pickup_eta", "country-id")

    members = [snapshots.latest_snapshot(built.storage.features_dir, "pickup_eta", r) for r in ("jakarta", "surabaya")]
    assert [m.digest for m in pooled.members] == [m.digest for m in members]
    assert len(pooled.frame) == sum(m.rows for m in members)
    assert pooled.frame["event_time"].is_monotonic_increasing
    assert pooled.lineage == {
        "pooled_group": "country-id",
        "pooled_regions": "jakarta,surabaya",
        "pooled_snapshots": f"jakarta={members[0].digest},surabaya={members[1].digest}",
    }


def test_a_category_feature_is_learnt_again_on_the_pool(built: Config) -> None:
    features_dir = built.storage.features_dir
    own = snapshots.latest_snapshot(features_dir, "pickup_eta", "surabaya")
    assert FittedSpec.from_dict(own.feature_spec or {}).vocabularies["region_code"] == ("surabaya",)

    pooled = pool_snapshots(built, "pickup_eta", "country-id")

    fitted = FittedSpec.from_dict(pooled.feature_spec or {})
    assert fitted.vocabularies["region_code"] == ("jakarta", "surabaya")
    codes = pooled.frame.groupby("raw.region")["region_code"].unique()
    assert {region: list(values) for region, values in codes.items()} == {"jakarta": [0.0], "surabaya": [1.0]}
    # the other features keep what the data stage computed in each region's own calendar
    surabaya = pooled.frame[pooled.frame["raw.region"] == "surabaya"].reset_index(drop=True)
    assert np.allclose(surabaya["hour_sin"], snapshots.load_frame(features_dir, own)["hour_sin"])


def test_the_pool_is_published_once_as_the_groups_snapshot(built: Config) -> None:
    pooled = pool_snapshots(built, "pickup_eta", "country-id")
    meta = publish_pooled(built, pooled)

    assert meta.region == "country-id"
    assert meta.source.startswith("pooled:country-id:jakarta@")
    assert snapshots.latest_snapshot(built.storage.features_dir, "pickup_eta", "country-id").digest == meta.digest
    assert publish_pooled(built, pool_snapshots(built, "pickup_eta", "country-id")).digest == meta.digest


def test_a_group_without_snapshots_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match=r"no region of the group has a snapshot .*`modelyard data build`"):
        pool_snapshots(_config(tmp_path), "pickup_eta", "country-id")


def flat(output: str) -> str:
    """CLI output as one line, without the error panel's borders."""
    return " ".join(output.replace("│", " ").split())


def test_cli_pooled_refuses_regions_and_unknown_groups(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from modelyard.deploy.cli import app

    config = _config(tmp_path)
    path = str(tmp_path / "modelyard.yaml")
    runner = CliRunner()

    with_region = runner.invoke(app, ["train", "--pooled", "--region", "jakarta", "--config", path])
    assert with_region.exit_code == 2
    assert "--pooled trains region groups: select them with --group" in flat(with_region.output)

    unknown = runner.invoke(app, ["train", "--pooled", "--group", "java", "--config", path])
    assert unknown.exit_code == 2
    assert "unknown region group 'java' (groups: country-id)" in flat(unknown.output)

    without_pooled = runner.invoke(app, ["train", "--group", "country-id", "--config", path])
    assert without_pooled.exit_code == 2
    assert "--group selects region groups of --pooled" in flat(without_pooled.output)
    assert config.region_groups == {"country-id": ("jakarta", "surabaya")}


def test_pooled_challengers_are_announced_like_a_pairs_with_the_group_as_region() -> None:
    from modelyard.training.pooled import challenger_events
    from modelyard.training.train import TrainResult

    results = [
        TrainResult("pickup_eta", "country-id", "registered", "pickup_eta-country-id", version="2", run_id="r2"),
        TrainResult("pickup_eta", "country-vn", "unchanged", "pickup_eta-country-vn", version="1", run_id="r1"),
        TrainResult("pickup_eta", "java", "skipped", "pickup_eta-java", reason="too few rows"),
        TrainResult("pickup_eta", "asia", "failed", "pickup_eta-asia", reason="TrainingError: no snapshot"),
    ]
    assert challenger_events(results) == [
        {
            "uri": "modelyard://challenger/pickup_eta/country-id",
            "extra": {
                "family": "pickup_eta", "region": "country-id", "model_name": "pickup_eta-country-id",
                "version": "2", "run_id": "r2",
            },
        },
        {
            "uri": "modelyard://challenger/pickup_eta/country-vn",
            "extra": {
                "family": "pickup_eta", "region": "country-vn", "model_name": "pickup_eta-country-vn",
                "version": "1", "run_id": "r1",
            },
        },
    ]  # fmt: skip
