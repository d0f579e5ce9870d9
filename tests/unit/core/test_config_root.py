"""The root config: cross-section rules, pairs, the per-pair view and the config hash; one class per name."""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
from pathlib import Path

import pytest
import yaml

import modelyard.core.config as config_package
from modelyard.core.config import (
    Config,
    ConfigError,
    KubernetesTargetConfig,
    LocalTargetConfig,
    PairView,
    load_config,
)

PACKAGE = Path(config_package.__file__).parent


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "modelyard.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def demo(demo_config_path: Path) -> dict:
    return yaml.safe_load(demo_config_path.read_text())


@pytest.fixture
def config(demo_config_path: Path) -> Config:
    return load_config(demo_config_path, environ={})


def test_demo_config_loads_with_two_families_and_six_regions(demo_config_path: Path, clean_env: None) -> None:
    config = load_config(demo_config_path)
    tasks = {f.task for f in config.families}
    assert tasks == {"classification", "regression"}
    assert len(config.regions) >= 6
    assert {r.country for r in config.regions} >= {"ID", "VN", "TH", "SG"}
    assert config.storage.root.is_absolute()


@pytest.mark.parametrize(
    ("mutate", "key", "reason"),
    [
        (lambda d: d["families"][1].update(task="ranking"), "families[1].task", "'classification' or 'regression'"),
        (lambda d: d["regions"][0].update(timezone="Mars/Olympus"), "regions[0].timezone", "unknown time zone"),
        (lambda d: d["deploy"]["rollout"].update(canary_steps=[50, 10]), "deploy.rollout.canary_steps", "increasing"),
        (lambda d: d.update(colour="blue"), "colour", "Extra inputs are not permitted"),
        (lambda d: d["regions"].append(dict(d["regions"][0])), "regions", "duplicate names"),
        (
            lambda d: d["datasets"][0].update(request_id_column="req"),
            "datasets[0]",
            "request_id_column 'req' is not a declared column",
        ),
        (
            lambda d: d["datasets"][0].update(request_id_column="booking_id", request_record_column="region"),
            "datasets[0]",
            "request_record_column 'region' must be declared with type int",
        ),
        (
            lambda d: d["datasets"][0].update(request_record_column="driver_tenure_days"),
            "datasets[0]",
            "request_record_column needs request_id_column",
        ),
    ],
)
def test_invalid_config_names_the_key(tmp_path: Path, demo: dict, mutate, key: str, reason: str) -> None:
    mutate(demo)
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, demo), environ={})
    assert key in str(info.value)
    assert reason in str(info.value)


def test_missing_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MODELYARD_CONFIG"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_pairs_rejects_unknown_region(demo_config_path: Path, clean_env: None) -> None:
    config = load_config(demo_config_path)
    with pytest.raises(ConfigError, match="unknown region 'atlantis'"):
        config.pairs(regions=["atlantis"])


# ------------------------------------------------------------- one (family, region), resolved once


def test_a_pair_view_holds_what_the_data_stage_reads_of_the_pair(config: Config) -> None:
    pair = config.pair_view("pickup_eta", "jakarta")
    family = config.family("pickup_eta")
    assert isinstance(pair, PairView)
    assert (pair.family, pair.region, pair.dataset) == (family, config.region("jakarta"), config.dataset_of(family))
    assert pair.label == "pickup_eta/jakarta"
    assert pair.model_name == "pickup_eta-jakarta"
    assert pair.timezone == "Asia/Jakarta"
    assert pair.calendar.holidays == ((dt.date(2026, 3, 16), dt.date(2026, 3, 27)),)
    assert pair.spec == config.feature_spec(family)
    assert pair.spec.names == family.feature_names
    assert pair.snapshot_spec.names == [*(f.name for f in family.slice_features), *family.feature_names]
    with pytest.raises(dataclasses.FrozenInstanceError):
        pair.model_name = "other"  # type: ignore[misc]


def test_a_pair_view_follows_the_model_name_template(demo_config_path: Path) -> None:
    environ = {"MODELYARD_MLFLOW__MODEL_NAME_TEMPLATE": "rides.{region}.{family}"}
    config = load_config(demo_config_path, environ=environ)
    assert config.pair_view("driver_acceptance", "bangkok").model_name == "rides.bangkok.driver_acceptance"


@pytest.mark.parametrize(
    ("family", "region", "message"),
    [("pickup_eta", "atlantis", "unknown region 'atlantis'"), ("teleport", "jakarta", "unknown family 'teleport'")],
)
def test_a_pair_view_of_an_unknown_name_says_which(config: Config, family: str, region: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.pair_view(family, region)


# ------------------------------------------------------------- the config hash


def test_the_config_hash_is_stable_and_follows_the_config(demo_config_path: Path, config: Config) -> None:
    again = load_config(demo_config_path, environ={})
    changed = load_config(demo_config_path, environ={"MODELYARD_SEED": "7"})
    assert config.config_hash() == again.config_hash()
    assert config.config_hash() != changed.config_hash()
    assert len(config.config_hash()) == 16
    assert int(config.config_hash(), 16) >= 0  # hexadecimal


# ------------------------------------------------------------- the package: one room per section


def test_deploy_target_sections_are_named_apart_from_the_deploy_targets(config: Config) -> None:
    assert isinstance(config.deploy.local, LocalTargetConfig)
    assert isinstance(config.deploy.kubernetes, KubernetesTargetConfig)
    assert not hasattr(config_package, "LocalTarget")
    assert not hasattr(config_package, "KubernetesTarget")


def test_every_class_is_defined_once_and_exported_from_the_package() -> None:
    defined: dict[str, list[str]] = {}
    for module in sorted(PACKAGE.glob("*.py")):
        for node in ast.parse(module.read_text()).body:
            if isinstance(node, ast.ClassDef):
                defined.setdefault(node.name, []).append(module.name)
    assert "Config" in defined
    assert {name: files for name, files in defined.items() if len(files) > 1} == {}
    public = {name for name in defined if not name.startswith("_")}
    assert public <= set(config_package.__all__)
    assert "__init__.py" not in {file for files in defined.values() for file in files}
