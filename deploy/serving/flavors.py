"""The native predict function of each model flavour the runtime loads itself.

* xgboost: the ``Booster`` from the model file, ``inplace_predict`` on a float32 matrix, one
  thread, up to the scored ``best_iteration``;
* scikit-learn: the estimator (skops; cloudpickle or pickle only when the operator allows
  pickles: loading one runs code from the artifact), read as ``mlflow.sklearn`` reads it but
  without importing it (it imports pandas), ``predict_proba`` (class 1) for classifiers,
  ``predict`` otherwise;
* anything else: the generic ``mlflow.pyfunc`` model on a pandas frame; it needs pandas,
  which the ``[serving]`` extra leaves out.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from modelyard.deploy.serving.engines import Predict
from modelyard.deploy.serving.errors import ModelLoadFailed
from modelyard.deploy.serving.schema import InputSchema
from modelyard.deploy.serving.trust import ALLOW_PICKLE_ENV, PickleNotAllowed, inside_model_dir

if TYPE_CHECKING:
    import numpy as np

Task = Literal["classification", "regression", "unknown"]


def xgboost_predictor(model_file: Path) -> tuple[Predict, Task]:
    """The booster's predict function (probabilities for a raw-logit binary objective) and its task."""
    import orjson
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(str(model_file))
    booster.set_param({"nthread": 1})
    objective = str(orjson.loads(booster.save_config())["learner"]["objective"]["name"])
    task: Task = "classification" if objective.startswith(("binary:", "multi:")) else "regression"
    # Early stopping keeps every tree in the file; the model that was scored (and that the
    # sklearn wrapper predicts with) stops at best_iteration.
    best = booster.attributes().get("best_iteration")
    trees = (0, int(best) + 1) if best is not None else (0, 0)

    def predict(x: np.ndarray) -> np.ndarray:
        return booster.inplace_predict(x, iteration_range=trees)

    if objective == "binary:logitraw":
        import numpy as np

        return (lambda x: 1.0 / (1.0 + np.exp(-predict(x)))), task
    return predict, task


def sklearn_predictor(uri: str, path: Path, flavor: dict[str, Any], *, allow_pickle: bool) -> tuple[Predict, Task]:
    """The estimator's predict function (class-1 probability for a binary classifier) and its task.

    Raises:
        PickleNotAllowed: the model is a pickle and ``allow_pickle`` is off.
        OutsideModelDir: the flavour's model file is outside the model's folder.
    """
    from sklearn.base import is_classifier

    model_file = inside_model_dir(uri, path, flavor.get("pickled_model"), "sklearn 'pickled_model'")
    estimator = _load_sklearn_estimator(uri, model_file, flavor, allow_pickle)
    if is_classifier(estimator) and hasattr(estimator, "predict_proba"):
        n_classes = len(getattr(estimator, "classes_", [0, 1]))
        if n_classes == 2:
            import numpy as np

            # A column view is not C-contiguous, and orjson refuses to serialize it.
            return (lambda x: np.ascontiguousarray(estimator.predict_proba(x)[:, 1])), "classification"
        return estimator.predict_proba, "classification"
    return estimator.predict, "regression"


def _load_sklearn_estimator(uri: str, model_file: Path, flavor: dict[str, Any], allow_pickle: bool) -> Any:
    """The estimator of an MLflow ``sklearn`` flavour, read as ``mlflow.sklearn`` reads it.

    Not through ``mlflow.sklearn``: that module imports pandas, which the ``[serving]`` image
    leaves out. skops loads only the types it trusts by default plus those the flavour lists;
    a pickle runs whatever it holds, so it loads only when the operator allowed pickles.
    """
    fmt = flavor.get("serialization_format", "pickle")
    if fmt == "skops":
        import skops.io

        return skops.io.load(model_file, trusted=_skops_trusted(uri, flavor, allow_pickle))
    if fmt not in ("pickle", "cloudpickle"):
        raise ModelLoadFailed(f"{uri}: unknown scikit-learn serialization format {str(fmt)[:40]!r}")
    if not allow_pickle:
        raise PickleNotAllowed(
            f"{uri}: the scikit-learn model is a {fmt} and this server loads no pickles (loading one runs "
            f"code from the registry); re-log it with serialization_format='skops', or set {ALLOW_PICKLE_ENV}=1 "
            "(chart: serving.allowPickle) for a registry you trust"
        )
    import cloudpickle  # reads plain pickles too

    with model_file.open("rb") as file:
        return cloudpickle.load(file)


# Types an artifact may ask skops to trust without the operator's say: data holders of these packages.
_SKOPS_TRUSTED_PACKAGES = ("sklearn", "numpy", "scipy")


def _skops_trusted(uri: str, flavor: dict[str, Any], allow_pickle: bool) -> list[str] | None:
    """The extra types the flavour asks skops to trust: scikit-learn/numpy/scipy ones only, unless pickles are allowed.

    Raises:
        PickleNotAllowed: it asks to trust another type (that would let the artifact construct anything).
    """
    asked = flavor.get("skops_trusted_types")
    if not asked:
        return None
    names = [str(name) for name in asked] if isinstance(asked, list) else [str(asked)]
    foreign = [name for name in names if name.split(".")[0] not in _SKOPS_TRUSTED_PACKAGES]
    if foreign and not allow_pickle:
        raise PickleNotAllowed(
            f"{uri}: the skops model asks to trust {foreign[0][:80]!r}, which is not a scikit-learn, numpy or "
            f"scipy type; set {ALLOW_PICKLE_ENV}=1 (chart: serving.allowPickle) for a registry you trust"
        )
    return names


def pyfunc_predictor(path: Path, schema: InputSchema) -> Predict:
    """The generic pyfunc model on a frame built from the matrix (columns typed as the signature says)."""
    try:
        import mlflow.pyfunc  # needs pandas, which the [serving] extra leaves out
    except ImportError as exc:
        raise ModelLoadFailed(
            f"pyfunc model at {path.name} needs {exc.name}: install it into the serving image "
            "(only the xgboost and scikit-learn flavours load without pandas)"
        ) from exc
    try:
        model = mlflow.pyfunc.load_model(str(path))
    except Exception as exc:
        raise ModelLoadFailed(f"pyfunc model at {path.name} cannot be loaded: {type(exc).__name__}") from exc
    names = list(schema.names)

    def predict(matrix: np.ndarray) -> np.ndarray:
        import numpy as np
        import pandas as pd

        frame = pd.DataFrame(matrix, columns=names)
        for feature in schema.features:
            if feature.kind in ("long", "integer"):
                frame[feature.name] = frame[feature.name].astype("int64")
            elif feature.kind in ("double", "float"):
                frame[feature.name] = frame[feature.name].astype("float64")
        output = model.predict(frame)
        array = np.asarray(output.to_numpy() if hasattr(output, "to_numpy") else output)
        return array.reshape(len(matrix), -1)[:, 0] if array.ndim > 1 and array.shape[-1] == 1 else array

    return predict
