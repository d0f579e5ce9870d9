"""The pyfunc flavour on raw rows: a saved model folder predicts from raw fields as its native model does."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.models import Model, infer_signature, validate_serving_input

from modelyard.core.featurespec import Calendar, FeatureDef, FeatureSpec, FittedSpec, MissingInputError
from modelyard.training import pyfunc_model
from modelyard.training.mlflow_log import SKOPS_TRUSTED_TYPES

COLUMNS = {"ts": "timestamp", "size": "float", "items": "int", "shop": "category"}
FEATURES = (
    FeatureDef("hour", "hour"),
    FeatureDef("size"),
    FeatureDef("items"),
    FeatureDef("shop", "category"),
    FeatureDef("demand", "window_count", key="shop"),
)
JAKARTA = Calendar("jakarta", "Asia/Jakarta")


def raw_rows(rows: int, seed: int) -> pd.DataFrame:
    """Raw rows as a client sends them: the time as text with Jakarta's offset, the aggregate by name."""
    rng = np.random.default_rng(seed)
    start = dt.datetime(2026, 3, 1, tzinfo=dt.timezone(dt.timedelta(hours=7)))
    return pd.DataFrame(
        {
            "ts": [(start + dt.timedelta(minutes=int(m))).isoformat() for m in rng.integers(0, 60 * 24 * 30, rows)],
            "size": rng.normal(size=rows),
            "items": rng.integers(0, 9, rows).astype("float64"),
            "shop": rng.choice(["a", "b", "c"], rows),
            "demand": rng.uniform(0.5, 2.0, rows),
        }
    )


def fitted_spec(frame: pd.DataFrame) -> FittedSpec:
    spec = FeatureSpec("shop", "ts", COLUMNS, FEATURES)
    columns = {name: frame[name].to_numpy(dtype=object if name in ("ts", "shop") else np.float64) for name in frame}
    return spec.fit(columns, JAKARTA)


def features(fitted: FittedSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """The model's float32 input, computed by the spec from raw records (the server's path)."""
    matrix = fitted.transform(fitted.columns_from_records(frame.to_dict("records"))).astype(np.float32)
    return pd.DataFrame(matrix, columns=fitted.names)


def save(tmp_path: Path, model: Any, flavor: str, fitted: FittedSpec, example: pd.DataFrame) -> Path:
    spec_file = tmp_path / pyfunc_model.SPEC_FILE
    spec_file.write_text(json.dumps(fitted.to_dict()))
    path = tmp_path / "model"
    sklearn = (
        {"serialization_format": "skops", "skops_trusted_types": SKOPS_TRUSTED_TYPES} if flavor == "sklearn" else {}
    )
    pyfunc_model.save_model(
        str(path),
        Model(),
        native_model=model,
        native_flavor=flavor,
        signature=infer_signature(example, np.zeros(len(example))),
        input_example=example,
        extra_files=[str(spec_file)],
        pip_requirements=["mlflow"],
        **sklearn,
    )
    return path


@pytest.fixture
def training() -> tuple[FittedSpec, pd.DataFrame, pd.DataFrame]:
    rows = raw_rows(400, seed=1)
    fitted = fitted_spec(rows)
    return fitted, rows, features(fitted, rows)


def test_an_xgboost_classifier_answers_the_positive_class_probability_on_raw_rows(tmp_path: Path, training) -> None:
    import xgboost as xgb

    fitted, rows, x = training
    y = (x["size"] + 0.3 * x["hour"] / 24 > 0.2).astype(int)
    model = xgb.XGBClassifier(n_estimators=60, max_depth=3, early_stopping_rounds=3, eval_metric="logloss")
    model.fit(x[:300], y[:300], eval_set=[(x[300:], y[300:])], verbose=False)
    assert model.best_iteration < 59  # early stopping kept fewer trees than the file holds
    path = save(tmp_path, model, "xgboost", fitted, rows.head(3))

    unseen = raw_rows(200, seed=2)
    unseen.loc[0, "shop"] = "never seen"
    predicted = mlflow.pyfunc.load_model(str(path)).predict(unseen)

    expected = model.predict_proba(features(fitted, unseen))[:, 1]
    assert predicted.dtype == np.float64
    assert predicted.shape == (200,)
    np.testing.assert_allclose(predicted, expected, atol=1e-7, rtol=0)
    assert 0 < predicted.min() < predicted.max() < 1


def test_a_skops_forest_regressor_answers_its_values_on_raw_rows(tmp_path: Path, training) -> None:
    from sklearn.ensemble import RandomForestRegressor

    fitted, rows, x = training
    model = RandomForestRegressor(n_estimators=10, max_depth=4, random_state=0).fit(x, 10 + 3 * x["size"])
    path = save(tmp_path, model, "sklearn", fitted, rows.head(3))

    unseen = raw_rows(50, seed=3)
    predicted = mlflow.pyfunc.load_model(str(path)).predict(unseen)

    np.testing.assert_allclose(predicted, model.predict(features(fitted, unseen)), atol=1e-9, rtol=0)


def test_the_folder_keeps_what_the_server_reads_and_points_pyfunc_at_the_raw_rows_loader(
    tmp_path: Path, training
) -> None:
    import xgboost as xgb

    fitted, rows, x = training
    model = xgb.XGBRegressor(n_estimators=5).fit(x, x["size"])
    path = save(tmp_path, model, "xgboost", fitted, rows.head(3))

    mlmodel = yaml.safe_load((path / "MLmodel").read_text())
    assert (path / mlmodel["flavors"]["xgboost"]["data"]).is_file()  # the server loads the booster from here
    assert json.loads((path / "extra_files" / pyfunc_model.SPEC_FILE).read_text()) == fitted.to_dict()
    loader = mlmodel["flavors"]["python_function"]
    assert loader["loader_module"] == "modelyard.training.pyfunc_model"
    assert "data" not in loader  # the loader reads the folder, as the server does
    assert (path / loader["env"]["virtualenv"]).is_file()
    serving_input = Model.load(str(path)).get_serving_input(str(path))
    assert serving_input is not None
    assert '"ts"' in serving_input
    assert len(validate_serving_input(str(path), serving_input)) == 3


def test_time_may_be_a_zoned_datetime_column_and_a_missing_field_is_named(tmp_path: Path, training) -> None:
    import xgboost as xgb

    fitted, rows, x = training
    model = xgb.XGBRegressor(n_estimators=5).fit(x, x["size"])
    loaded = pyfunc_model._load_pyfunc(str(save(tmp_path, model, "xgboost", fitted, rows.head(3))))
    zoned = rows.assign(ts=pd.to_datetime(rows["ts"], format="ISO8601").dt.tz_convert("Europe/Berlin"))

    np.testing.assert_array_equal(loaded.predict(zoned), loaded.predict(rows))
    with pytest.raises(MissingInputError, match="'demand'"):
        loaded.predict(rows.drop(columns="demand"))


def test_a_pickled_estimator_is_refused_unless_mlflow_allows_pickles(
    tmp_path: Path, training, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.exceptions import MlflowException
    from sklearn.linear_model import Ridge

    fitted, rows, x = training
    model = Ridge().fit(x, x["size"])
    path = save(tmp_path, model, "sklearn", fitted, rows.head(3))
    flavor = {"pickled_model": "model.pkl", "serialization_format": "cloudpickle"}
    monkeypatch.delenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", raising=False)

    with pytest.raises(MlflowException, match="MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true"):
        pyfunc_model.sklearn_predict(path, flavor)
