from __future__ import annotations

import numpy as np
import pytest

from modelyard.training import models
from modelyard.training.split import time_split


def test_defaults_are_filled_in_and_given_params_win() -> None:
    params = models.validate_params("xgboost", {"max_depth": 3, "n_jobs": 2})
    assert params["max_depth"] == 3
    assert params["n_jobs"] == 2
    assert params["tree_method"] == "hist"


def test_unknown_hyperparameter_names_the_key() -> None:
    with pytest.raises(models.ParamError, match="unknown hyperparameter 'max_dept'") as caught:
        models.validate_params("xgboost", {"max_dept": 3})
    assert caught.value.key == "max_dept"


@pytest.mark.parametrize(
    ("algorithm", "key", "value", "message"),
    [
        ("xgboost", "max_depth", "5", "'max_depth' must be int, got str"),
        ("xgboost", "n_estimators", 2.5, "'n_estimators' must be int, got float"),
        ("xgboost", "n_estimators", True, "'n_estimators' must be int, got bool"),
        ("xgboost", "learning_rate", -0.1, "'learning_rate' must be > 0"),
        ("xgboost", "subsample", 1.5, r"'subsample' must be in \(0, 1\]"),
        ("xgboost", "monotone_constraints", {"x1": 2}, "'monotone_constraints' must be a mapping"),
        ("sklearn_logistic", "class_weight", "heavy", "'class_weight' must be null or 'balanced'"),
        ("sklearn_random_forest", "max_features", "all", "'max_features' must be null, 'sqrt'"),
    ],
)
def test_wrong_type_or_value_names_the_key(algorithm: str, key: str, value: object, message: str) -> None:
    with pytest.raises(models.ParamError, match=message) as caught:
        models.validate_params(algorithm, {key: value})
    assert caught.value.key == key


def test_an_int_is_accepted_where_a_float_is_expected() -> None:
    assert models.validate_params("xgboost", {"learning_rate": 1})["learning_rate"] == 1


def test_monotone_constraints_must_name_features() -> None:
    with pytest.raises(models.ParamError, match=r"unknown features \['rating'\]"):
        models.check_feature_params("xgboost", {"monotone_constraints": {"rating": 1}}, ["x1", "x2"])
    models.check_feature_params("xgboost", {"monotone_constraints": {"x1": 1}}, ["x1", "x2"])


def test_algorithm_must_exist_and_fit_the_task() -> None:
    with pytest.raises(models.AlgorithmError, match="unknown algorithm 'lightgbm'"):
        models.get_algorithm("lightgbm")
    with pytest.raises(models.AlgorithmError, match="'sklearn_ridge' cannot do classification"):
        models.get_algorithm("sklearn_ridge", "classification")


@pytest.mark.parametrize(
    "text", ["{not json", "[1, 2]", '"max_depth"'],
)  # fmt: skip
def test_override_json_must_be_an_object(text: str) -> None:
    with pytest.raises(models.ParamError, match="params:") as caught:
        models.parse_params_json(text)
    assert caught.value.key == "params"


def test_empty_override_is_no_override() -> None:
    assert models.parse_params_json("") == {}
    assert models.parse_params_json(None) == {}
    assert models.parse_params_json('{"max_depth": 4}') == {"max_depth": 4}


@pytest.mark.parametrize(
    ("algorithm", "task"),
    [("xgboost", "classification"), ("xgboost", "regression"), ("sklearn_logistic", "classification"),
     ("sklearn_ridge", "regression"), ("sklearn_random_forest", "classification"),
     ("sklearn_random_forest", "regression")],
)  # fmt: skip
def test_every_algorithm_fits_predicts_and_explains(frame_factory, algorithm: str, task: str) -> None:
    target = "accepted" if task == "classification" else "eta_min"
    split = time_split(frame_factory(task=task), 10, 10)
    features = ["x1", "x2", "is_new_driver"]
    params = {"n_estimators": 20} if "forest" in algorithm or algorithm == "xgboost" else {}
    model = models.build_model(algorithm, task, params, seed=1, early_stopping_rounds=5)
    x_train, x_valid = models.feature_frame(split.train, features), models.feature_frame(split.valid, features)
    models.fit(algorithm, model, x_train, split.train[target], x_valid, split.valid[target])
    predicted = models.predict(model, task, models.feature_frame(split.holdout, features))
    assert predicted.shape == (len(split.holdout),)
    if task == "classification":
        assert ((predicted >= 0) & (predicted <= 1)).all()
    importance = models.feature_importance(model, features)
    assert set(importance) == set(features)
    assert max(importance, key=importance.__getitem__) == "x1"  # the strongest signal in make_frame


def test_xgboost_stops_early_on_the_validation_window(frame_factory) -> None:
    split = time_split(frame_factory(), 10, 10)
    features = ["x1", "x2", "is_new_driver"]
    model = models.build_model("xgboost", "classification", {"n_estimators": 500}, seed=1, early_stopping_rounds=5)
    models.fit(
        "xgboost", model, models.feature_frame(split.train, features), split.train["accepted"],
        models.feature_frame(split.valid, features), split.valid["accepted"],
    )  # fmt: skip
    best = models.best_iteration(model)
    assert best is not None
    assert best < 499


def test_feature_frame_is_float64_in_configured_order(frame_factory) -> None:
    x = models.feature_frame(frame_factory(), ["x2", "is_new_driver"])
    assert list(x.columns) == ["x2", "is_new_driver"]
    assert all(dtype == np.float64 for dtype in x.dtypes)
