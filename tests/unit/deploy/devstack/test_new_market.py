"""The demo's new market: rows per region in the generator's config, the overlay acts one and three write,
and the summary line of a region served by a pooled model (ADR 0015)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from modelyard.core.config import Config, ConfigError, load_config
from modelyard.core.contracts.prediction_log import PROBE_HEADER
from modelyard.deploy.devstack import festival
from modelyard.deploy.devstack.demo import serving_line
from modelyard.deploy.devstack.new_market import (
    NEW_REGION,
    NEW_REGION_ROWS,
    merge_overlay,
    new_region,
    served_models,
    set_region_rows,
)
from modelyard.pipeline.generator import generate_for
from modelyard.promotion.status import Fallback
from tests.stand_in import Handler, stand_in

REPO = Path(__file__).resolve().parents[4]


def _demo_config(tmp_path: Path, overlay: Path | None = None) -> Config:
    environ = {"MODELYARD_STORAGE__ROOT": str(tmp_path / "store")}
    if overlay is not None:
        environ["MODELYARD_CONFIG_OVERLAY"] = str(overlay)
    return load_config(REPO / "modelyard.yaml", environ=environ)


def test_the_generator_makes_a_regions_own_row_count(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("data: {synthetic: {rows: 400, rows_by_region: {surabaya: 120}}}\n")
    config = _demo_config(tmp_path, overlay)
    assert (len(generate_for(config, "surabaya")), len(generate_for(config, "jakarta"))) == (120, 400)
    assert len(generate_for(config, "surabaya", rows=200)) == 200  # an explicit count still wins


def test_rows_for_an_unknown_region_are_refused_naming_the_key(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("data: {synthetic: {rows_by_region: {surabya: 120}}}\n")
    with pytest.raises(ConfigError, match=r"data.synthetic.rows_by_region names unknown regions \['surabya'\]"):
        _demo_config(tmp_path, overlay)


def test_act_one_starts_the_new_region_small_and_act_three_lets_it_grow(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"deploy": {"rollout": {"strategy": "canary"}}}))  # an earlier act's
    set_region_rows(overlay, NEW_REGION, NEW_REGION_ROWS)
    config = _demo_config(tmp_path, overlay)
    assert new_region(config) == "surabaya"
    assert config.groups_of("surabaya") == ["country-id"]
    assert config.data.synthetic.rows_of("surabaya") == NEW_REGION_ROWS < config.data.min_rows
    assert config.deploy.rollout.strategy == "canary"  # what the overlay held is kept
    set_region_rows(overlay, NEW_REGION, None)
    grown = _demo_config(tmp_path, overlay)
    assert grown.data.synthetic.rows_of("surabaya") == grown.data.synthetic.rows >= grown.data.min_rows


def test_the_festival_keeps_the_new_market_small_for_act_three(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.yaml"
    set_region_rows(overlay, NEW_REGION, NEW_REGION_ROWS)  # act one
    merge_overlay(overlay, festival.festival_overlay(_demo_config(tmp_path, overlay), "jakarta", 40))
    config = _demo_config(tmp_path, overlay)
    assert config.data.synthetic.rows_of("surabaya") == NEW_REGION_ROWS  # still pooled: act three can graduate it
    assert "demo_festival" in [f.name for f in config.region("jakarta").festivals]
    assert config.deploy.rollout.strategy == "canary"


def test_the_summary_names_the_pooled_model_serving_a_region() -> None:
    pooled = Fallback("country-id", "driver_acceptance-country-id", "2")
    line = serving_line("driver_acceptance/surabaya", "2", None, pooled)
    assert line == (
        "driver_acceptance/surabaya: serving v2 of driver_acceptance-country-id "
        "(no champion of its own; pooled: country-id v2)"
    )
    assert "not the champion" in serving_line("driver_acceptance/surabaya", "3", None, pooled)
    assert serving_line("driver_acceptance/jakarta", "4", "4", None) == "driver_acceptance/jakarta: serving v4"


@pytest.fixture
def endpoint() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A stand-in endpoint on a free port: answers every predict with v1 and keeps each request's headers."""
    seen: list[dict[str, str]] = []

    class Endpoint(Handler):
        def do_POST(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.rfile.read(int(self.headers["Content-Length"]))
            self.answer(200, json.dumps({"model": "driver_acceptance-country-id", "version": "1"}).encode())

    with stand_in(Endpoint) as url:
        yield url, seen


def test_the_new_markets_check_is_a_probe_so_it_never_reaches_the_regions_monitoring(
    tmp_path: Path, endpoint: tuple[str, list[dict[str, str]]]
) -> None:
    """Its one request per family was sampled like a client's: ``modelyard monitor`` then measured Surabaya
    on that single demo row ("too few samples (1 rows)")."""
    url, seen = endpoint
    config = _demo_config(tmp_path)

    answered = served_models(config, url, NEW_REGION)

    assert set(answered) == {f"{family}/{NEW_REGION}" for family in config.family_names}
    assert len(seen) == len(config.family_names)
    assert all(PROBE_HEADER.lower() in headers for headers in seen), seen
