from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelyard.pipeline.config import ConfigError, load_config


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "modelyard.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def demo(demo_config_path: Path) -> dict:
    return yaml.safe_load(demo_config_path.read_text())


def test_demo_config_loads_with_two_families_and_six_regions(demo_config_path: Path, clean_env: None) -> None:
    config = load_config(demo_config_path)
    tasks = {f.task for f in config.families}
    assert tasks == {"classification", "regression"}
    assert len(config.regions) >= 6
    assert {r.country for r in config.regions} >= {"ID", "VN", "TH", "SG"}
    assert config.storage.root.is_absolute()


def test_environment_overrides_nested_keys(demo_config_path: Path, clean_env: None) -> None:
    config = load_config(demo_config_path, environ={"MODELYARD_DATA__SYNTHETIC__ROWS": "1234", "MODELYARD_SEED": "7"})
    assert config.data.synthetic.rows == 1234
    assert config.seed == 7


def test_unrelated_modelyard_variables_are_not_config_keys(demo_config_path: Path) -> None:
    config = load_config(demo_config_path, environ={"MODELYARD_PLAN": "/tmp/plan.yaml"})
    assert config.project == "modelyard"


@pytest.mark.parametrize(
    ("mutate", "key", "reason"),
    [
        (lambda d: d["families"][1].update(task="ranking"), "families[1].task", "'classification' or 'regression'"),
        (lambda d: d["regions"][0].update(timezone="Mars/Olympus"), "regions[0].timezone", "unknown time zone"),
        (lambda d: d["deploy"]["rollout"].update(canary_steps=[50, 10]), "deploy.rollout.canary_steps", "increasing"),
        (lambda d: d.update(colour="blue"), "colour", "Extra inputs are not permitted"),
        (lambda d: d["regions"].append(dict(d["regions"][0])), "regions", "duplicate names"),
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
