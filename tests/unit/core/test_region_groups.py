"""Region groups: one per country by default, declared ones beside them, errors naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.core.config import Config, ConfigError, load_config

REGIONS = [
    {"name": "jakarta", "country": "ID", "timezone": "Asia/Jakarta"},
    {"name": "surabaya", "country": "ID", "timezone": "Asia/Jakarta"},
    {"name": "bandung", "country": "ID", "timezone": "Asia/Jakarta"},
    {"name": "hanoi", "country": "VN", "timezone": "Asia/Ho_Chi_Minh"},
    {"name": "bangkok", "country": "TH", "timezone": "Asia/Bangkok"},
]


def _config(tmp_path: Path, **extra: Any) -> Config:
    raw = {
        "storage": {"root": str(tmp_path / "store")},
        "regions": REGIONS,
        "families": [{"name": "eta", "task": "regression", "target": "eta", "features": ["x"]}],
        **extra,
    }
    path = tmp_path / "modelyard.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path, environ={})


def test_regions_of_one_country_form_a_group_named_after_it(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert config.region_groups == {"country-id": ("jakarta", "surabaya", "bandung")}
    assert config.groups_of("surabaya") == ["country-id"]
    assert config.groups_of("bangkok") == []  # alone in its country: nothing to pool with
    assert config.group_members("country-id") == ["jakarta", "surabaya", "bandung"]
    assert config.pooled_model_name("eta", "country-id") == "eta-country-id"


def test_declared_groups_serve_most_specific_first(tmp_path: Path) -> None:
    config = _config(tmp_path, groups={"everywhere": "all", "java": ["bandung", "jakarta"]})
    assert config.group_members("java") == ["jakarta", "bandung"]  # config order
    assert config.group_members("everywhere") == ["jakarta", "surabaya", "bandung", "hanoi", "bangkok"]
    assert config.groups_of("jakarta") == ["java", "country-id", "everywhere"]
    assert config.groups_of("bangkok") == ["everywhere"]


def test_a_declared_group_may_redefine_a_country_group(tmp_path: Path) -> None:
    config = _config(tmp_path, groups={"country-id": ["jakarta", "surabaya"]})
    assert config.groups_of("bandung") == []


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ({"java": ["jakarta", "medan"]}, "groups.java: unknown regions ['medan']"),
        ({"java": ["jakarta"]}, "groups.java: a group pools at least two regions, got ['jakarta']"),
        ({"java": ["jakarta", "jakarta"]}, "groups.java: regions ['jakarta'] are listed twice"),
        ({"Java": ["jakarta", "surabaya"]}, "groups.Java: a group name is lower case letters"),
        ({"hanoi": ["jakarta", "surabaya"]}, "groups.hanoi: 'hanoi' is a region's name"),
        ({"java": "some"}, "groups.java"),
    ],
)
def test_invalid_groups_fail_naming_the_key(tmp_path: Path, groups: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="groups") as raised:
        _config(tmp_path, groups=groups)
    assert message in str(raised.value)


def test_an_unknown_group_names_the_configured_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown region group 'java' \(groups: country-id\)"):
        _config(tmp_path).group_members("java")


def test_min_pooled_rows_defaults_below_min_rows_and_may_not_exceed_it(tmp_path: Path) -> None:
    assert _config(tmp_path).data.pooled_floor == 50
    assert _config(tmp_path, data={"min_rows": 20}).data.pooled_floor == 20
    assert _config(tmp_path, data={"min_pooled_rows": 120}).data.pooled_floor == 120
    with pytest.raises(ConfigError, match=r"data: .*min_pooled_rows \(600\) is more than min_rows \(500\)"):
        _config(tmp_path, data={"min_pooled_rows": 600})
