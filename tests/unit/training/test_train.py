"""What training announces: the pairs named by feature events, and the challenger event's extra."""

from __future__ import annotations

from modelyard.core.config import Config
from modelyard.core.contracts.assets import pairs_in
from modelyard.training.train import TrainResult


def test_pairs_from_asset_uris_keeps_configured_feature_pairs(small_config: Config) -> None:
    uris = [
        "modelyard://features/eta/beta",
        "modelyard://features/acceptance/alpha",
        "modelyard://features/eta/beta",
        "modelyard://features/unknown/alpha",
        "modelyard://challenger/eta/alpha",
    ]
    assert pairs_in(uris, "features", small_config.pairs()) == [("acceptance", "alpha"), ("eta", "beta")]


def test_asset_extra_carries_the_contract_keys() -> None:
    result = TrainResult("eta", "beta", "registered", "eta-beta", version="2", run_id="r1")
    assert result.asset_extra() == {
        "family": "eta",
        "region": "beta",
        "model_name": "eta-beta",
        "version": "2",
        "run_id": "r1",
    }
