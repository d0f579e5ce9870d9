"""What a promotion run selects: pairs, or with groups the pooled models (CLI and DAG form alike)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.core.config import ConfigError, load_config
from modelyard.promotion.decide import pooled_pairs, selected_pairs
from modelyard.promotion.decision import PromotionError

REPO = Path(__file__).resolve().parents[3]
CONFIG = load_config(REPO / "modelyard.yaml", environ={})


def test_groups_select_the_pooled_model_of_every_family() -> None:
    assert selected_pairs(CONFIG, None, None, ["country-vn"]) == [
        ("driver_acceptance", "country-vn"),
        ("pickup_eta", "country-vn"),
    ]
    assert selected_pairs(CONFIG, ["pickup_eta"], None, ["country-id"]) == [("pickup_eta", "country-id")]


def test_without_groups_the_pairs_are_selected() -> None:
    assert selected_pairs(CONFIG, ["pickup_eta"], ["jakarta"]) == [("pickup_eta", "jakarta")]


def test_every_pooled_model_is_every_family_times_every_group() -> None:
    assert pooled_pairs(CONFIG) == [(f, g) for f in CONFIG.family_names for g in ("country-id", "country-vn")]


def test_regions_and_groups_together_or_unknown_names_are_refused() -> None:
    with pytest.raises(PromotionError, match="select pooled models; leave out the regions"):
        selected_pairs(CONFIG, None, ["jakarta"], ["country-id"])
    with pytest.raises(ConfigError, match="unknown region group 'java'"):
        selected_pairs(CONFIG, None, None, ["java"])
    with pytest.raises(ConfigError, match="unknown family 'eta'"):
        pooled_pairs(CONFIG, ["eta"], ["country-id"])
