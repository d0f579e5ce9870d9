"""What a promotion run decides: pairs from challenger events, manual requests checked up front."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.core.config import Config, load_config
from modelyard.core.contracts.assets import challenger_uri, features_uri, pairs_in
from modelyard.promotion.decide import check_request
from modelyard.promotion.decision import PromotionError

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def config() -> Config:
    return load_config(REPO / "modelyard.yaml", environ={})


def test_pairs_come_from_challenger_events_only_in_config_order(config: Config) -> None:
    uris = [
        challenger_uri("pickup_eta", "bangkok"),
        challenger_uri("driver_acceptance", "jakarta"),
        challenger_uri("driver_acceptance", "jakarta"),
        features_uri("driver_acceptance", "hanoi"),
        challenger_uri("driver_acceptance", "atlantis"),
    ]
    assert pairs_in(uris, "challenger", config.pairs()) == [("driver_acceptance", "jakarta"), ("pickup_eta", "bangkok")]


def test_manual_promotion_needs_one_pair_a_version_and_a_reason() -> None:
    one = [("driver_acceptance", "jakarta")]
    check_request("promote-version", one, "3", "festival hotfix")
    with pytest.raises(PromotionError, match="exactly one family and one region, got 2"):
        check_request("promote-version", [*one, ("pickup_eta", "jakarta")], "3", "why")
    with pytest.raises(PromotionError, match="needs a version and a reason"):
        check_request("promote-version", one, None, "why")
    with pytest.raises(PromotionError, match="needs a version and a reason"):
        check_request("promote-version", one, "3", " ")


def test_evaluate_and_rollback_take_any_pairs_and_unknown_actions_fail() -> None:
    pairs = [("driver_acceptance", "jakarta"), ("pickup_eta", "hanoi")]
    check_request("evaluate", pairs, None, None)
    check_request("rollback", pairs, None, None)
    with pytest.raises(PromotionError, match="unknown action 'demote'"):
        check_request("demote", pairs, None, None)
