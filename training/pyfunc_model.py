"""The registered model as an ``mlflow.pyfunc`` model on raw rows (ADR 0017).

A version's folder keeps the native model exactly where the server reads it (the ``xgboost`` or
``sklearn`` flavour, ``extra_files/feature_spec.json``, the ONNX copy); this module is its
``python_function`` flavour's loader: ``mlflow.pyfunc.load_model(uri).predict(raw_frame)``
featurises the rows with the version's own fitted spec (``modelyard.core.featurespec``, the code
the server runs), casts the matrix to float32 as the server does, and predicts with the native
model: the positive-class probability of a classifier, the value of a regressor, as the server
answers.

:func:`save_model` is the flavour module's save function ``mlflow.models.Model.log`` calls: it
saves the native flavour, then points ``python_function`` here. Nothing is pickled for the
pyfunc flavour: the loader reads the same files as the server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.core.featurespec import FittedSpec, MissingInputError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from mlflow.models import Model

    Predict = Callable[[np.ndarray], np.ndarray]

LOADER_MODULE = __name__
EXTRA_FILES_DIR = "extra_files"  # where the native flavour's save_model puts extra_files (the server reads them there)
SPEC_FILE = "feature_spec.json"
# skops types a version may ask to trust without MLFLOW_ALLOW_PICKLE_DESERIALIZATION: data holders only
# (the serving runtime's rule, deploy/serving/flavors.py).
SKOPS_TRUSTED_PACKAGES = ("sklearn", "numpy", "scipy")


class RawRowsModel:
    """Raw rows (or, without a feature spec, the feature columns) to the native model's predictions."""

    def __init__(self, fitted: FittedSpec | None, features: list[str], predict: Predict) -> None:
        self.fitted = fitted
        self.features = features
        self._predict = predict

    def predict(self, model_input: pd.DataFrame, params: Mapping[str, Any] | None = None) -> np.ndarray:
        """One float64 prediction per row: the class-1 probability of a classifier, else the value.

        Raises:
            MissingInputError: a raw field (or feature column) is missing.
            FeatureSpecError: a value cannot be featurised (names family, feature and column).
        """
        import numpy as np

        return np.asarray(self._predict(self.matrix(model_input)), dtype=np.float64)

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The float32 model matrix of ``frame``, computed as the server computes it."""
        import numpy as np

        if self.fitted is None:
            _require(frame, self.features, "feature column")
            return frame[self.features].to_numpy(dtype=np.float64).astype(np.float32)
        return self.fitted.transform(raw_columns(self.fitted, frame)).astype(np.float32)


def raw_columns(fitted: FittedSpec, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The spec's raw inputs and requested aggregates of ``frame``, typed as the server types JSON records.

    Raises:
        MissingInputError: ``frame`` lacks one (names all that a row must carry).
    """
    names = [*fitted.raw_inputs, *fitted.requested]
    _require(frame, names, f"field of family '{fitted.spec.family}'")
    return {name: _column(frame[name], fitted.spec.columns.get(name, "float")) for name in names}


def _require(frame: pd.DataFrame, names: list[str], what: str) -> None:
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise MissingInputError(f"the rows have no {what} {', '.join(map(repr, missing))} (send: {', '.join(names)})")


def _column(values: pd.Series, kind: str) -> np.ndarray:
    import numpy as np
    import pandas as pd

    if kind == "timestamp" and isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    if kind in ("category", "string", "timestamp"):
        return values.to_numpy(dtype=object)  # ISO-8601 text; naive datetime64 is read as UTC
    return values.to_numpy(dtype=np.float64)


def _load_pyfunc(path: str) -> RawRowsModel:
    """The pyfunc implementation of the model folder ``path`` (called by ``mlflow.pyfunc.load_model``)."""
    from mlflow.models import Model

    folder = Path(path)
    meta = Model.load(str(folder / "MLmodel"))
    spec_path = folder / EXTRA_FILES_DIR / SPEC_FILE
    fitted = FittedSpec.from_dict(json.loads(spec_path.read_text())) if spec_path.exists() else None
    schema = meta.get_input_schema()
    features = fitted.names if fitted is not None else (schema.input_names() if schema is not None else [])
    return RawRowsModel(fitted, [str(name) for name in features], native_predict(folder, meta))


def native_predict(folder: Path, meta: Model) -> Predict:
    """The native model's predict function on a float32 matrix, read from its flavour's files.

    Raises:
        MlflowException: the folder has neither an ``xgboost`` nor a ``sklearn`` flavour.
    """
    from mlflow.exceptions import MlflowException

    if "xgboost" in meta.flavors:
        return xgboost_predict(folder / meta.flavors["xgboost"]["data"])
    if "sklearn" in meta.flavors:
        return sklearn_predict(folder, meta.flavors["sklearn"])
    raise MlflowException(f"{folder.name}: no xgboost or sklearn flavour to predict with")


def xgboost_predict(model_file: Path) -> Predict:
    """The booster up to its scored ``best_iteration``; probabilities for a binary objective (the server's call)."""
    import numpy as np
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(str(model_file))
    objective = str(json.loads(booster.save_config())["learner"]["objective"]["name"])
    best = booster.attributes().get("best_iteration")
    trees = (0, int(best) + 1) if best is not None else (0, 0)

    def predict(matrix: np.ndarray) -> np.ndarray:
        return np.asarray(booster.inplace_predict(matrix, iteration_range=trees))

    if objective == "binary:logitraw":
        return lambda matrix: 1.0 / (1.0 + np.exp(-predict(matrix)))
    return predict


def sklearn_predict(folder: Path, flavor: Mapping[str, Any]) -> Predict:
    """The estimator's class-1 probability (binary classifier) or prediction, on the matrix with its feature names.

    Raises:
        MlflowException: the model is a pickle, or asks skops to trust a type outside scikit-learn,
            numpy and scipy, and ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` is not ``true``.
    """
    import numpy as np
    from sklearn.base import is_classifier

    estimator = _load_estimator(folder / str(flavor["pickled_model"]), flavor)
    frame = _named(estimator)
    if is_classifier(estimator) and len(getattr(estimator, "classes_", ())) == 2:
        return lambda matrix: np.asarray(estimator.predict_proba(frame(matrix))[:, 1])
    if is_classifier(estimator):
        return lambda matrix: np.asarray(estimator.predict_proba(frame(matrix)))
    return lambda matrix: np.asarray(estimator.predict(frame(matrix)))


def _named(estimator: Any) -> Callable[[np.ndarray], Any]:
    """The matrix as a frame with the names the estimator was fitted with (same values; no name warning)."""
    import pandas as pd

    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        return lambda matrix: matrix
    columns = [str(name) for name in names]
    return lambda matrix: pd.DataFrame(matrix, columns=columns, copy=False)


def _load_estimator(model_file: Path, flavor: Mapping[str, Any]) -> Any:
    from mlflow.exceptions import MlflowException

    trusted = [str(name) for name in flavor.get("skops_trusted_types") or []]
    foreign = [name for name in trusted if name.split(".")[0] not in SKOPS_TRUSTED_PACKAGES]
    fmt = flavor.get("serialization_format", "pickle")
    if (fmt != "skops" or foreign) and os.environ.get("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "").lower() != "true":
        raise MlflowException(
            f"{model_file.name}: a {fmt} model{' trusting ' + foreign[0] if foreign else ''} runs code from the "
            "artifact when loaded; set MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true for a registry you trust"
        )
    if fmt == "skops":
        import skops.io

        return skops.io.load(model_file, trusted=trusted or None)
    import cloudpickle  # reads plain pickles too

    with model_file.open("rb") as file:
        return cloudpickle.load(file)


def save_model(
    path: str,
    mlflow_model: Model,
    *,
    native_model: Any,
    native_flavor: str,
    signature: Any,
    input_example: Any,
    extra_files: list[str],
    pip_requirements: list[str],
    serialization_format: str | None = None,
    skops_trusted_types: list[str] | None = None,
    validate_serving_input: bool = True,
) -> None:
    """Save the native flavour to ``path``, then make this module the ``python_function`` loader.

    Called by ``mlflow.models.Model.log(flavor=pyfunc_model, ...)``, which passes on every keyword it
    was given: ``validate_serving_input`` is Model.log's own (whether it loads the folder through
    :func:`_load_pyfunc` to predict the serving example), unused here.
    """
    import mlflow
    from mlflow import pyfunc

    common = {
        "mlflow_model": mlflow_model,
        "signature": signature,
        "input_example": input_example,
        "extra_files": extra_files,
        "pip_requirements": pip_requirements,
    }
    if native_flavor == "xgboost":
        mlflow.xgboost.save_model(native_model, path, **common)
    else:
        mlflow.sklearn.save_model(
            native_model,
            path,
            serialization_format=serialization_format or "skops",
            skops_trusted_types=skops_trusted_types,
            **common,
        )
    native_pyfunc = mlflow_model.flavors.pop(pyfunc.FLAVOR_NAME)
    pyfunc.add_to_model(
        mlflow_model,
        loader_module=LOADER_MODULE,
        conda_env=native_pyfunc.get(pyfunc.ENV, {}).get("conda"),
        python_env=native_pyfunc.get(pyfunc.ENV, {}).get("virtualenv"),
        model_input="raw rows, featurised with extra_files/feature_spec.json",
    )
    mlflow_model.save(os.path.join(path, "MLmodel"))
