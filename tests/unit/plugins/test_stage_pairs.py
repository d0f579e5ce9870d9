"""What each stage's per-pair result becomes in its chunk: outcome, log line, Asset event."""

from __future__ import annotations

from pathlib import Path

from modelyard.core.contracts.assets import challenger_uri, features_uri
from modelyard.pipeline.build import BuildResult
from modelyard.plugins import stage_pairs
from modelyard.training.train import TrainResult


def test_published_snapshot_announces_its_features_asset_with_the_digest() -> None:
    report = Path("/store/features/pickup_eta/jakarta/abc123.html")
    result = BuildResult("pickup_eta", "jakarta", "published", rows=1500, digest="abc123", checks=10, report=report)
    outcome = stage_pairs.data_outcome(result)
    assert outcome.ok
    assert outcome.event_uri == features_uri("pickup_eta", "jakarta")
    assert outcome.event_extra == {"family": "pickup_eta", "region": "jakarta", "digest": "abc123", "rows": 1500}
    assert outcome.line().startswith(
        f"pickup_eta/jakarta: published | 1500 rows, validation passed 10/10, report {report} | digest abc123"
    )


def test_unchanged_and_skipped_snapshots_announce_nothing() -> None:
    unchanged = stage_pairs.data_outcome(BuildResult("f", "r", "unchanged", rows=10, digest="d", checks=1))
    skipped = stage_pairs.data_outcome(BuildResult("f", "r", "skipped", rows=3, reason="3 rows, fewer than 200"))
    assert (unchanged.ok, unchanged.event_uri, unchanged.link) == (True, None, "digest d")
    assert (skipped.ok, skipped.event_uri, skipped.detail) == (True, None, "3 rows, fewer than 200")


def test_failed_validation_is_a_final_failure_naming_the_report() -> None:
    result = BuildResult("f", "r", "failed", reason="column 'x' has 3 values outside [0, 1]", report=Path("/r.html"))
    outcome = stage_pairs.data_outcome(result)
    assert not outcome.ok
    assert not outcome.retryable
    assert outcome.event_uri is None
    assert outcome.detail == "column 'x' has 3 values outside [0, 1] (report: /r.html)"


def test_registered_challenger_is_announced_with_its_run_link() -> None:
    result = TrainResult(
        "pickup_eta", "jakarta", "registered", "pickup_eta-jakarta", version="3", run_id="r1",
        run_url="http://mlflow/#/experiments/1/runs/r1", metrics={"holdout_mae": 2.5},
    )  # fmt: skip
    outcome = stage_pairs.train_outcome(result)
    assert outcome.event_uri == challenger_uri("pickup_eta", "jakarta")
    assert outcome.event_extra == result.asset_extra()
    assert outcome.line().startswith(
        "pickup_eta/jakarta: registered | pickup_eta-jakarta v3 (holdout_mae 2.500) | http://mlflow/#/experiments/1/runs/r1"
    )


def test_skipped_training_announces_nothing() -> None:
    outcome = stage_pairs.train_outcome(TrainResult("f", "r", "skipped", "f-r", reason="one class"))
    assert (outcome.ok, outcome.event_uri, outcome.detail) == (True, None, "one class")


def test_model_version_url_quotes_names() -> None:
    url = stage_pairs.model_version_url("http://mlflow:5000/", "a b", "3")
    assert url == "http://mlflow:5000/#/models/a%20b/versions/3"


def test_training_line_shows_the_models_own_main_metric_not_the_baselines() -> None:
    metrics = {"baseline_holdout_auc": 0.816, "baseline_holdout_logloss": 0.41, "holdout_auc": 0.842}
    result = TrainResult("driver_acceptance", "jakarta", "registered", "driver_acceptance-jakarta", version="1",
                         metrics=metrics)  # fmt: skip
    detail = stage_pairs.train_outcome(result).detail
    assert detail == "driver_acceptance-jakarta v1 (holdout_auc 0.842, baseline 0.816)"
