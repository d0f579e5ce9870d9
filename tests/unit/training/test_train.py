from __future__ import annotations

import numpy as np
import pytest
from rich.console import Console

from modelyard.core.config import Config
from modelyard.core.contracts.assets import pairs_in
from modelyard.core.tracking import run_url
from modelyard.pipeline import snapshots
from modelyard.training import models
from modelyard.training.train import (
    TrainingError,
    TrainingSkipped,
    TrainResult,
    check_trainable,
    fit_pair,
    plan_training,
    render_results,
    validate_override,
)


def publish(config: Config, frame, family: str = "acceptance", region: str = "alpha") -> snapshots.SnapshotMeta:
    meta, _ = snapshots.publish(
        config.storage.features_dir, frame, family=family, region=region, target=config.family(family).target,
        time_column="event_time", source="unit-test", validation=snapshots.ValidationSummary(success=True, checks=3),
    )  # fmt: skip
    return meta


def test_plan_resolves_region_override_and_keys_the_inputs(small_config: Config, frame_factory) -> None:
    publish(small_config, frame_factory(task="regression"), family="eta", region="beta")
    plan = plan_training(small_config, "eta", "beta")
    assert plan.algorithm == "sklearn_random_forest"
    assert plan.params["n_estimators"] == 20
    assert plan.model_name == "eta-beta"
    assert plan.run_name == f"eta/beta/{plan.meta.digest[:8]}"
    assert plan_training(small_config, "eta", "beta").input_key == plan.input_key
    assert plan_training(small_config, "eta", "beta", {"max_depth": 2}).input_key != plan.input_key


def test_missing_snapshot_names_the_pair(small_config: Config) -> None:
    with pytest.raises(snapshots.SnapshotNotFoundError, match="family 'acceptance', region 'alpha'"):
        plan_training(small_config, "acceptance", "alpha")


def test_unvalidated_snapshot_is_refused(small_config: Config, frame_factory) -> None:
    meta = publish(small_config, frame_factory())
    meta_file = meta.path(small_config.storage.features_dir).with_suffix(".json")
    failed = meta.model_copy(update={"validation": snapshots.ValidationSummary(success=False, failed=2)})
    meta_file.write_text(failed.model_dump_json())
    with pytest.raises(TrainingError, match="did not pass validation"):
        plan_training(small_config, "acceptance", "alpha")


def test_override_is_checked_against_every_pairs_algorithm(small_config: Config) -> None:
    validate_override(small_config, small_config.pairs(regions=["alpha"]), {"max_depth": 2})
    # beta's eta model is a random forest, which has no learning_rate
    with pytest.raises(models.ParamError, match=r"eta/beta: algorithm 'sklearn_random_forest'.*'learning_rate'"):
        validate_override(small_config, small_config.pairs(), {"learning_rate": 0.05})


def test_too_few_rows_and_single_class_are_skips(small_config: Config, frame_factory) -> None:
    family = small_config.family("acceptance")
    with pytest.raises(TrainingSkipped, match=r"fewer than data\.min_rows=100"):
        check_trainable(small_config, family, frame_factory(rows=50))
    one_class = frame_factory().assign(accepted=1)
    with pytest.raises(TrainingSkipped, match="single class"):
        check_trainable(small_config, family, one_class)
    with pytest.raises(TrainingSkipped, match="window is empty"):
        fit_pair(small_config, family, frame_factory(days=12), "xgboost", {})


def test_a_feature_missing_from_the_snapshot_is_an_error(small_config: Config, frame_factory) -> None:
    with pytest.raises(TrainingError, match=r"columns \['x2'\] are not in the snapshot"):
        check_trainable(small_config, small_config.family("acceptance"), frame_factory().drop(columns="x2"))


def test_fit_pair_scores_model_and_baseline_reproducibly(small_config: Config, frame_factory) -> None:
    family = small_config.family("acceptance")
    frame = frame_factory()
    first = fit_pair(small_config, family, frame, "xgboost", {"n_estimators": 30}, baseline="sklearn_logistic")
    second = fit_pair(small_config, family, frame, "xgboost", {"n_estimators": 30}, baseline="sklearn_logistic")
    assert first.metrics == second.metrics
    np.testing.assert_array_equal(first.holdout_predictions, second.holdout_predictions)
    assert first.metrics["holdout_auc"] > 0.8
    assert "baseline_holdout_auc" in first.metrics
    assert not any(name.startswith("baseline_") and "__" in name for name in first.metrics)


def test_pairs_from_asset_uris_keeps_configured_feature_pairs(small_config: Config) -> None:
    uris = [
        "modelyard://features/eta/beta",
        "modelyard://features/acceptance/alpha",
        "modelyard://features/eta/beta",
        "modelyard://features/unknown/alpha",
        "modelyard://challenger/eta/alpha",
    ]
    assert pairs_in(uris, "features", small_config.pairs()) == [("acceptance", "alpha"), ("eta", "beta")]


def test_render_results_shows_version_metrics_url_and_reasons() -> None:
    results = [
        TrainResult("acceptance", "alpha", "registered", "acceptance-alpha", version="3", run_url=run_url(
            "http://mlflow:5000/", "1", "abc"), metrics={"holdout_auc": 0.8123, "baseline_holdout_auc": 0.75}),
        TrainResult("eta", "beta", "skipped", "eta-beta", reason="120 rows, fewer than data.min_rows=500"),
    ]  # fmt: skip
    console = Console(width=300, record=True)
    console.print(render_results(results))
    text = console.export_text()
    assert "acceptance-alpha v3" in text
    assert "auc=0.812" in text
    assert "baseline_auc=0.750" in text
    assert "http://mlflow:5000/#/experiments/1/runs/abc" in text
    assert "fewer than data.min_rows=500" in text


def test_asset_extra_carries_the_contract_keys() -> None:
    result = TrainResult("eta", "beta", "registered", "eta-beta", version="2", run_id="r1")
    assert result.asset_extra() == {
        "family": "eta", "region": "beta", "model_name": "eta-beta", "version": "2", "run_id": "r1"
    }  # fmt: skip
