"""Which pooled champion serves a region without a champion of its own (ADR 0015), as status reports it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelyard.core.config import Config, load_config
from modelyard.promotion.status import Fallback, fallback_of

REPO = Path(__file__).resolve().parents[3]
FAMILY = "driver_acceptance"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """The demo config plus the declared group `asia` of every region, less specific than a country group."""
    raw = yaml.safe_load((REPO / "modelyard.yaml").read_text())
    raw["groups"] = {"asia": "all"}
    path = tmp_path_factory.mktemp("status") / "modelyard.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(path, environ={})


def champion(version: str) -> dict[str, str]:
    return {"champion": version}


def test_a_region_without_a_champion_is_served_by_its_countrys_pooled_champion(config: Config) -> None:
    current = {config.pooled_model_name(FAMILY, "country-id"): champion("3")}
    found = fallback_of(config, (FAMILY, "surabaya"), current)
    assert found == Fallback("country-id", config.pooled_model_name(FAMILY, "country-id"), "3")
    assert str(found) == "pooled: country-id v3"


def test_a_champion_of_its_own_needs_no_fallback(config: Config) -> None:
    current = {
        config.mlflow.model_name(FAMILY, "surabaya"): champion("1"),
        config.pooled_model_name(FAMILY, "country-id"): champion("3"),
    }
    assert fallback_of(config, (FAMILY, "surabaya"), current) is None


def test_the_most_specific_group_with_a_champion_serves(config: Config) -> None:
    asia = config.pooled_model_name(FAMILY, "asia")
    only_asia = {asia: champion("7")}
    assert fallback_of(config, (FAMILY, "surabaya"), only_asia) == Fallback("asia", asia, "7")
    both = {**only_asia, config.pooled_model_name(FAMILY, "country-id"): champion("3")}
    found = fallback_of(config, (FAMILY, "surabaya"), both)
    assert found is not None
    assert found.group == "country-id"


def test_no_pooled_champion_or_a_group_itself_has_no_fallback(config: Config) -> None:
    challenger_only = {config.pooled_model_name(FAMILY, "country-id"): {"challenger": "1"}}
    assert fallback_of(config, (FAMILY, "surabaya"), challenger_only) is None
    pooled = {config.pooled_model_name(FAMILY, "asia"): champion("7")}
    assert fallback_of(config, (FAMILY, "country-id"), pooled) is None


def test_the_status_table_shows_the_pooled_model_in_place_of_a_missing_champion() -> None:
    from rich.console import Console

    from modelyard.promotion.render import render_status
    from modelyard.promotion.status import PairStatus

    pooled = Fallback("country-id", "m", "3")
    served = PairStatus(FAMILY, "surabaya", f"{FAMILY}-surabaya", None, None, None, fallback=pooled)
    console = Console(width=120, record=True)
    console.print(render_status([served]))
    assert "pooled: country-id v3" in console.export_text()


def test_the_status_table_shows_the_drift_a_region_measured_on_its_pooled_model() -> None:
    """Monitoring tags a pooled version per region: each region's row shows its own verdict."""
    from mlflow.entities.model_registry import ModelVersion, ModelVersionTag
    from rich.console import Console

    from modelyard.promotion.render import render_status
    from modelyard.promotion.status import PairStatus, VersionInfo

    tags = {
        "monitoring.surabaya.verdict": "drifted", "monitoring.surabaya.summary": "drifted: trip_distance_km psi=0.4",
        "monitoring.bandung.verdict": "stable",
    }  # fmt: skip
    version = ModelVersion("m", "3", 0, tags=[ModelVersionTag(k, v) for k, v in tags.items()])

    def served(region: str) -> PairStatus:
        info = VersionInfo.from_version(version, (), region)
        pooled = Fallback("country-id", "m", "3", info=info)
        return PairStatus(FAMILY, region, f"{FAMILY}-{region}", None, None, None, fallback=pooled)

    rows = [served("surabaya"), served("bandung"), served("medan")]
    assert [row.serving.drift if row.serving else None for row in rows] == ["drifted", "stable", None]
    console = Console(width=120, record=True)
    console.print(render_status(rows))
    text = console.export_text()
    lines = {line.split()[1]: line for line in text.splitlines() if line.startswith(FAMILY)}
    assert "drifted" in lines["surabaya"]
    assert "stable" not in lines["surabaya"]
    assert "stable" in lines["bandung"]
    assert "drifted" not in lines["medan"]
    assert "stable" not in lines["medan"]
    assert "trip_distance_km" in text
