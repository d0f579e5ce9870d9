from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from modelyard.core.config import Slice
from modelyard.training import metrics

# The demo's declared slices (modelyard.yaml): local hour buckets and new/experienced drivers.
SLICES = [
    Slice(name="hour_night", feature="hour", min=0, max=5),
    Slice(name="hour_morning", feature="hour", min=6, max=11),
    Slice(name="hour_afternoon", feature="hour", min=12, max=17),
    Slice(name="hour_evening", feature="hour", min=18, max=23),
    Slice(name="new_drivers", feature="is_new_driver", values=[1]),
    Slice(name="experienced_drivers", feature="is_new_driver", values=[0]),
]


def test_perfect_classifier_scores() -> None:
    y = np.array([0, 0, 1, 1])
    scores = metrics.classification_metrics(y, np.array([0.1, 0.2, 0.8, 0.9]), threshold=0.5)
    assert scores["auc"] == 1.0
    assert scores["precision"] == 1.0
    assert scores["recall"] == 1.0
    assert scores["brier"] == pytest.approx((0.01 + 0.04 + 0.04 + 0.01) / 4)
    assert scores["logloss"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.8, 0.9])))


def test_threshold_moves_precision_and_recall() -> None:
    y = np.array([0, 1, 1, 1])
    proba = np.array([0.6, 0.4, 0.7, 0.9])
    low = metrics.classification_metrics(y, proba, threshold=0.3)
    high = metrics.classification_metrics(y, proba, threshold=0.65)
    assert (low["precision"], low["recall"]) == (0.75, 1.0)
    assert (high["precision"], high["recall"]) == (1.0, pytest.approx(2 / 3))


def test_auc_is_left_out_for_a_single_class() -> None:
    assert "auc" not in metrics.classification_metrics(np.array([1, 1]), np.array([0.3, 0.7]), 0.5)


def test_regression_metrics() -> None:
    scores = metrics.regression_metrics(np.array([10.0, 20.0, 0.0]), np.array([12.0, 18.0, 1.0]))
    assert scores["mae"] == pytest.approx(5 / 3)
    assert scores["rmse"] == pytest.approx(math.sqrt(9 / 3))
    assert scores["mape"] == pytest.approx((0.2 + 0.1) / 2)  # the zero target is excluded


def test_evaluate_names_metrics_and_slices() -> None:
    rng = np.random.default_rng(0)
    rows = 400
    frame = pd.DataFrame(
        {"hour": np.arange(rows) % 24, "is_new_driver": (np.arange(rows) % 5 == 0).astype(int),
         "accepted": rng.integers(0, 2, rows)}
    )  # fmt: skip
    scores = metrics.evaluate(
        "classification", frame, rng.uniform(size=rows), target="accepted", split="holdout", threshold=0.5,
        slices=SLICES,
    )  # fmt: skip
    for name in ("holdout_auc", "holdout_logloss", "holdout_brier", "holdout_precision", "holdout_recall"):
        assert name in scores
    for slice_name in ("hour_night", "hour_morning", "hour_afternoon", "hour_evening", "new_drivers"):
        assert f"holdout_auc__{slice_name}" in scores
    assert "holdout_auc__experienced_drivers" in scores
    assert not any(name.startswith("valid_") for name in scores)


def test_slice_metrics_are_computed_on_the_slice_only() -> None:
    frame = pd.DataFrame({"hour": [1] * 40 + [8] * 40, "eta": [10.0] * 80})
    predicted = np.array([10.0] * 40 + [14.0] * 40)
    scores = metrics.evaluate("regression", frame, predicted, target="eta", split="valid", slices=SLICES)
    assert scores["valid_mae"] == 2.0
    assert scores["valid_mae__hour_night"] == 0.0
    assert scores["valid_mae__hour_morning"] == 4.0
    assert "valid_mae__hour_evening" not in scores  # no rows


def test_small_slices_are_left_out() -> None:
    frame = pd.DataFrame({"is_new_driver": [1] * 5 + [0] * 95, "eta": np.linspace(1, 2, 100)})
    scores = metrics.evaluate("regression", frame, np.ones(100), target="eta", split="holdout", slices=SLICES)
    assert "holdout_mae__new_drivers" not in scores
    assert "holdout_mae__experienced_drivers" in scores


def test_evaluate_rejects_a_length_mismatch_and_a_missing_target() -> None:
    frame = pd.DataFrame({"eta": [1.0, 2.0]})
    with pytest.raises(ValueError, match="1 predictions for 2 rows"):
        metrics.evaluate("regression", frame, np.ones(1), target="eta", split="holdout")
    with pytest.raises(KeyError, match="'pickup_eta_min'"):
        metrics.evaluate("regression", frame, np.ones(2), target="pickup_eta_min", split="holdout")


@pytest.mark.parametrize(
    ("name", "higher"),
    [("holdout_auc", True), ("holdout_mae", False), ("baseline_holdout_logloss", False),
     ("holdout_recall__hour_morning", True), ("valid_rmse__new_drivers", False)],
)  # fmt: skip
def test_direction_of_a_metric(name: str, higher: bool) -> None:
    assert metrics.higher_is_better(name) is higher


def test_no_declared_slices_means_overall_metrics_only() -> None:
    frame = pd.DataFrame({"hour": [1] * 40 + [8] * 40, "eta": [10.0] * 80})
    scores = metrics.evaluate("regression", frame, np.full(80, 11.0), target="eta", split="valid")
    assert set(scores) == {"valid_mae", "valid_rmse", "valid_mape"}


def test_an_open_ended_slice_takes_every_row_past_its_bound() -> None:
    frame = pd.DataFrame({"size": np.arange(100.0), "y": np.zeros(100)})
    big = [Slice(name="big_orders", feature="size", min=60)]
    scores = metrics.evaluate("regression", frame, np.arange(100.0), target="y", split="holdout", slices=big)
    assert scores["holdout_mae__big_orders"] == pytest.approx(np.arange(60.0, 100.0).mean())
