"""Region names as the config writes them (JKT, 7) in plans, and as the chart's values accept them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from modelyard.core.config import Region
from modelyard.deploy.rollout.releases import Shard, chart_region_name, release_values
from modelyard.deploy.serving.plan import PlanError, parse_plan

REPO = Path(__file__).resolve().parents[4]
SCHEMA = REPO / "helm" / "modelyard-serving" / "values.schema.json"


def _plan(region: str) -> dict[str, object]:
    variant = {"name": "champion", "model_uri": "models:/eta-x/1", "weight": 100}
    return {"version": 1, "services": [{"family": "eta", "region": region, "variants": [variant]}]}


def _config_accepts(region: str) -> bool:
    try:
        Region(name=region, country="ID", timezone="Asia/Jakarta")
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("region", ["jakarta", "JKT", "7", "ho_chi_minh", "Jkt-2", "-x", "a b", "jkt/1", ""])
def test_a_plan_accepts_exactly_the_region_names_the_config_accepts(region: str) -> None:
    if _config_accepts(region):
        assert parse_plan(_plan(region)).services[0].region == region
    else:
        with pytest.raises(PlanError):
            parse_plan(_plan(region))


def _chart_item_pattern() -> re.Pattern[str]:
    schema = json.loads(SCHEMA.read_text())
    return re.compile(schema["properties"]["shard"]["properties"]["regions"]["items"]["pattern"])


@pytest.mark.parametrize("region", ["jakarta", "ho_chi_minh", "JKT", "7", "Jkt-2", "X" * 80])
def test_every_config_region_becomes_a_name_the_chart_schema_accepts(region: str) -> None:
    assert _chart_item_pattern().match(chart_region_name(region))


def test_chart_names_keep_safe_names_and_keep_different_regions_apart() -> None:
    assert chart_region_name("jakarta") == "jakarta"
    assert chart_region_name("JKT").startswith("jkt_")
    assert chart_region_name("7").startswith("r7_")
    names = [chart_region_name(r) for r in ("JKT", "jkt", "Jkt", "7", "r7")]
    assert len(set(names)) == len(names)


def test_release_values_carry_chart_names_while_the_plan_keeps_the_config_names() -> None:
    plan = parse_plan(_plan("JKT"))
    values = release_values(Shard("sea", ("JKT",), plan))
    assert values["shard"]["regions"] == [chart_region_name("JKT")]
    assert values["plan"]["services"][0]["region"] == "JKT"  # the server routes by the config name
