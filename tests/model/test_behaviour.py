"""Behavioural tests of the trained models: directional expectations, invariance, minimum quality, reproducibility.

They train the configured algorithm with the configured params on realistic synthetic
snapshots (no MLflow), exactly as ``training.train.train_pair`` does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelyard.core.config import Config
from modelyard.training import models
from modelyard.training.fit import FitOutcome, fit_pair

MODEL_REGIONS = ["jakarta", "bangkok"]  # the regions conftest.snapshot_frames builds

ACCEPTANCE, ETA = "driver_acceptance", "pickup_eta"


def train(config: Config, frame: pd.DataFrame, family: str, region: str) -> FitOutcome:
    spec = config.family(family)
    algorithm = spec.algorithm_for(region)
    params = models.validate_params(algorithm, spec.params_for(region))
    return fit_pair(config, spec, frame, algorithm, params, spec.baseline)


@pytest.fixture(scope="module")
def fitted(model_config: Config, snapshot_frames) -> dict[tuple[str, str], FitOutcome]:
    return {(f, r): train(model_config, frame, f, r) for (f, r), frame in snapshot_frames.items()}


def predict_holdout(config: Config, outcome: FitOutcome, family: str, holdout: pd.DataFrame) -> np.ndarray:
    spec = config.family(family)
    return models.predict(outcome.model, spec.task, models.feature_frame(holdout, spec.features))


@pytest.mark.parametrize("region", MODEL_REGIONS)
def test_higher_driver_rating_never_lowers_acceptance(model_config: Config, fitted, region: str) -> None:
    outcome = fitted[(ACCEPTANCE, region)]
    holdout = outcome.split.holdout
    better = holdout.assign(driver_rating=np.minimum(holdout["driver_rating"] + 0.5, 5.0))
    before = predict_holdout(model_config, outcome, ACCEPTANCE, holdout)
    after = predict_holdout(model_config, outcome, ACCEPTANCE, better)
    assert (after >= before - 1e-9).all(), f"{(after < before).sum()} rows got a lower acceptance probability"
    assert (after - before).mean() > 0.01  # and the rating matters at all


@pytest.mark.parametrize("region", MODEL_REGIONS)
def test_farther_pickup_never_shortens_the_eta(model_config: Config, fitted, region: str) -> None:
    outcome = fitted[(ETA, region)]
    holdout = outcome.split.holdout
    farther = holdout.assign(pickup_distance_km=holdout["pickup_distance_km"] + 2.0)
    before = predict_holdout(model_config, outcome, ETA, holdout)
    after = predict_holdout(model_config, outcome, ETA, farther)
    assert (after >= before - 1e-9).all()
    assert (after - before).mean() > 1.0  # two more kilometres is minutes, not seconds


@pytest.mark.parametrize("family", [ACCEPTANCE, ETA])
def test_an_irrelevant_added_column_changes_nothing(model_config: Config, snapshot_frames, fitted, family) -> None:
    region = MODEL_REGIONS[0]
    frame = snapshot_frames[(family, region)]
    rng = np.random.default_rng(99)
    noisy = frame.assign(booking_channel_code=rng.integers(0, 5, len(frame)), promo_noise=rng.normal(size=len(frame)))
    noisy = noisy[["promo_noise", *frame.columns, "booking_channel_code"]]  # and a different column order
    outcome = train(model_config, noisy, family, region)
    reference = fitted[(family, region)]
    assert outcome.metrics == reference.metrics
    np.testing.assert_array_equal(outcome.holdout_predictions, reference.holdout_predictions)


@pytest.mark.parametrize("region", MODEL_REGIONS)
def test_acceptance_model_meets_the_absolute_gate_and_is_calibrated(model_config: Config, fitted, region) -> None:
    metrics = fitted[(ACCEPTANCE, region)].metrics
    gate = next(g for g in model_config.gates.defaults.classification.absolute if g.metric == "holdout_auc")
    assert metrics["holdout_auc"] >= gate.threshold
    holdout = fitted[(ACCEPTANCE, region)].split.holdout
    base_rate = holdout["accepted"].mean()
    assert metrics["holdout_brier"] < base_rate * (1 - base_rate)  # better than predicting the base rate


@pytest.mark.parametrize("region", MODEL_REGIONS)
def test_eta_model_meets_the_absolute_gate_and_beats_a_constant(model_config: Config, fitted, region) -> None:
    outcome = fitted[(ETA, region)]
    gate = next(g for g in model_config.gates.defaults.regression.absolute if g.metric == "holdout_mae")
    assert outcome.metrics["holdout_mae"] <= gate.threshold
    holdout_y = outcome.split.holdout["pickup_eta_min"]
    constant_mae = (holdout_y - outcome.split.train["pickup_eta_min"].median()).abs().mean()
    assert outcome.metrics["holdout_mae"] < 0.7 * constant_mae
    assert outcome.metrics["holdout_mae"] < outcome.metrics["baseline_holdout_mae"]


def test_slices_are_scored_for_hours_and_driver_experience(fitted) -> None:
    metrics = fitted[(ACCEPTANCE, MODEL_REGIONS[0])].metrics
    for name in ("hour_morning", "hour_evening", "new_drivers", "experienced_drivers"):
        assert 0.5 < metrics[f"holdout_auc__{name}"] <= 1.0


@pytest.mark.parametrize("family", [ACCEPTANCE, ETA])
def test_same_snapshot_config_and_seed_give_identical_results(model_config, snapshot_frames, fitted, family) -> None:
    region = MODEL_REGIONS[1]
    again = train(model_config, snapshot_frames[(family, region)].copy(), family, region)
    reference = fitted[(family, region)]
    assert again.metrics == reference.metrics
    np.testing.assert_array_equal(again.holdout_predictions, reference.holdout_predictions)
    assert again.best_iteration == reference.best_iteration
