"""Fitting one model: what cannot be trained is a skip, a missing column an error, and fits are reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from modelyard.core.config import Config
from modelyard.training.fit import TrainingSkipped, check_trainable, fit_pair
from modelyard.training.job import TrainingError


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
