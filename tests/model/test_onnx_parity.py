"""The ONNX fast path answers exactly like the native model, for every flavour modelyard trains.

Each algorithm of ``training/models.py`` is fitted on a small synthetic frame shaped like a
demo family (its features and monotone constraint, missing values in an optional
feature), saved the way training logs it (``onnx_export.write_serving_extras`` into the
model's ``extra_files``), and loaded by the serving runtime from that folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelyard.deploy.serving import engines, runtime
from modelyard.training import models, onnx_export
from modelyard.training.mlflow_log import SKOPS_TRUSTED_TYPES

FEATURES = ["pickup_distance_km", "driver_rating", "driver_tenure_days", "surge_multiplier", "hour_sin", "hour_cos"]
MONOTONE = {"classification": {"driver_rating": 1}, "regression": {"pickup_distance_km": 1}}
FLAVOURS = [
    ("xgboost", "classification"),
    ("xgboost", "regression"),
    ("sklearn_logistic", "classification"),
    ("sklearn_ridge", "regression"),
    ("sklearn_random_forest", "classification"),
    ("sklearn_random_forest", "regression"),
]


def synthetic(rows: int, seed: int, with_nan: bool) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "pickup_distance_km": rng.gamma(2.0, 1.5, rows),
            "driver_rating": rng.uniform(3.5, 5.0, rows),
            "driver_tenure_days": rng.integers(0, 2000, rows).astype(float),
            "surge_multiplier": rng.choice([1.0, 1.2, 1.5, 2.0], rows),
            "hour_sin": np.sin(rng.uniform(0, 2 * np.pi, rows)),
            "hour_cos": np.cos(rng.uniform(0, 2 * np.pi, rows)),
        }
    )
    score = 1.5 * (frame.driver_rating - 4.2) - 0.3 * frame.pickup_distance_km + 0.4 * frame.hour_sin
    accepted = (score + rng.normal(0, 0.7, rows) > -0.9).astype(int)
    eta = 2 + 2.2 * frame.pickup_distance_km + frame.surge_multiplier + rng.normal(0, 0.5, rows)
    if with_nan:  # tenure unknown for some drivers
        frame.loc[rng.random(rows) < 0.1, "driver_tenure_days"] = np.nan
    return frame, accepted, eta


def fitted(algorithm: str, task: str) -> tuple[Any, pd.DataFrame]:
    # scikit-learn's linear models cannot fit on NaN; the trees learn a direction for it.
    with_nan = algorithm in ("xgboost", "sklearn_random_forest")
    frame, accepted, eta = synthetic(1200, 0, with_nan)
    target = accepted if task == "classification" else eta
    params: dict[str, Any] = {"n_estimators": 60} if algorithm != "sklearn_logistic" else {}
    if algorithm == "sklearn_ridge":
        params = {}
    if algorithm == "xgboost":
        params |= {"max_depth": 4, "monotone_constraints": MONOTONE[task]}
    model = models.build_model(algorithm, task, params, seed=0, early_stopping_rounds=10)  # type: ignore[arg-type]
    models.fit(algorithm, model, frame[:900], target[:900], frame[900:], target[900:])
    holdout, _, _ = synthetic(400, 1, with_nan=True)
    return model, holdout


def save_like_training(model: Any, algorithm: str, holdout: pd.DataFrame, folder: Path) -> Path:
    """The model folder training logs: MLmodel, signature, input example and the ONNX extras."""
    import mlflow
    from mlflow.models import infer_signature

    flavor = models.get_algorithm(algorithm).flavor
    example = holdout.head(5)
    extras = onnx_export.write_serving_extras(model, flavor, holdout, folder / "extras")
    signature = infer_signature(example, model.predict(example))
    path = folder / "model"
    if flavor == "xgboost":
        mlflow.xgboost.save_model(model, str(path), signature=signature, input_example=example, extra_files=extras)
    else:
        mlflow.sklearn.save_model(
            model, str(path), signature=signature, input_example=example, extra_files=extras,
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
        )  # fmt: skip
    return path


def serve_from(path: Path) -> runtime.ServedModel:
    status = runtime.ModelStatus(uri="models:/parity/1", name="parity", version="1")
    model = runtime._load_from_dir(status, path, path)
    model.warm_up()
    return model


def native_predictions(model: Any, task: str, matrix: np.ndarray) -> np.ndarray:
    frame = pd.DataFrame(matrix, columns=FEATURES)
    return models.predict(model, task, frame)  # type: ignore[arg-type]


@pytest.fixture(scope="module", params=FLAVOURS, ids=[f"{a}-{t}" for a, t in FLAVOURS])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    algorithm, task = request.param
    model, holdout = fitted(algorithm, task)
    path = save_like_training(model, algorithm, holdout, tmp_path_factory.mktemp(f"{algorithm}-{task}"))
    return {"algorithm": algorithm, "task": task, "model": model, "holdout": holdout, "served": serve_from(path)}


def test_every_flavour_serves_small_batches_on_onnx(served: dict[str, Any]) -> None:
    status = served["served"].status
    detail = status.engine_detail
    assert status.engine == "onnx", detail
    assert detail is not None
    assert detail["parity_rows"] >= 200
    assert detail["parity_max_abs_diff"] <= engines.PARITY_ATOL + engines.PARITY_RTOL * 100
    assert detail["onnx_max_rows"] is None or detail["onnx_max_rows"] >= 1
    assert set(detail["calibration_us"]["onnx"]) == {str(2**i) for i in range(11)}


def test_served_predictions_match_native_on_the_holdout_including_missing_values(served: dict[str, Any]) -> None:
    matrix = served["holdout"].to_numpy(np.float32)
    clean = matrix[~np.isnan(matrix).any(axis=1)]
    for rows in (clean[:1], clean[:8], clean[:64], clean):
        expected = native_predictions(served["model"], served["task"], rows)
        got = served["served"].predict(rows)
        assert engines.parity_diff(expected, got) == 0.0
    if served["algorithm"] in ("sklearn_logistic", "sklearn_ridge"):
        with pytest.raises(runtime.InferenceFailed):  # native rejects NaN; the ONNX path must not answer instead
            served["served"].predict(matrix[np.isnan(matrix).any(axis=1)][:1])
        assert served["served"].status.engine_detail["missing_values"] == "native"
        return
    for rows in (matrix[np.isnan(matrix).any(axis=1)][:1], matrix):
        expected = native_predictions(served["model"], served["task"], rows)
        assert engines.parity_diff(expected, served["served"].predict(rows)) == 0.0


def test_the_monotone_constraint_holds_on_the_served_path(served: dict[str, Any]) -> None:
    if served["algorithm"] != "xgboost":
        pytest.skip("monotone constraints are an xgboost parameter")
    feature = next(iter(MONOTONE[served["task"]]))
    base = served["holdout"].dropna().head(16).to_numpy(np.float32)
    grid = np.linspace(*((3.5, 5.0) if feature == "driver_rating" else (0.1, 12.0)), 25, dtype=np.float32)
    column = FEATURES.index(feature)
    for row in base:
        rows = np.repeat(row[None, :], len(grid), axis=0)
        rows[:, column] = grid
        assert np.all(np.diff(served["served"].predict(rows)) >= 0)
