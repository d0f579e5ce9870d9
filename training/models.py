"""The algorithm registry: which estimators a family may name, their hyperparameters, and how to fit them.

``xgboost`` (the default, with early stopping on the validation window) and scikit-learn
baselines (``sklearn_logistic``, ``sklearn_ridge``, ``sklearn_random_forest``). Every
hyperparameter is validated against the algorithm's schema before anything trains, so
a typo in ``modelyard.yaml`` or in a DAG trigger's JSON fails with the key's name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from modelyard.core.errors import ModelyardError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

Task = Literal["classification", "regression"]
Flavor = Literal["xgboost", "sklearn"]


class ParamError(ModelyardError, ValueError):
    """A hyperparameter is unknown or has the wrong type/value; ``key`` names it."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class AlgorithmError(ModelyardError, ValueError):
    """An algorithm name is unknown or cannot do the family's task."""


@dataclass(frozen=True)
class ParamSpec:
    """Accepted types (``int`` also accepts ``float`` keys) and an optional value check with its wording."""

    types: tuple[type | None, ...]
    check: Callable[[Any], bool] = lambda _: True
    requirement: str = ""


def _positive_int() -> ParamSpec:
    return ParamSpec((int,), lambda v: v >= 1, ">= 1")


def _fraction() -> ParamSpec:
    return ParamSpec((float,), lambda v: 0 < v <= 1, "in (0, 1]")


def _non_negative() -> ParamSpec:
    return ParamSpec((float,), lambda v: v >= 0, ">= 0")


def _positive() -> ParamSpec:
    return ParamSpec((float,), lambda v: v > 0, "> 0")


@dataclass(frozen=True)
class Algorithm:
    """One trainable algorithm: its tasks, hyperparameter schema and estimator factory."""

    name: str
    flavor: Flavor
    tasks: tuple[Task, ...]
    params: Mapping[str, ParamSpec]
    build: Callable[[Task, dict[str, Any], int], Any]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    early_stopping: bool = False


def _build_xgboost(task: Task, params: dict[str, Any], seed: int) -> Any:
    import xgboost as xgb

    if task == "classification":
        return xgb.XGBClassifier(**params, random_state=seed, eval_metric="logloss")
    return xgb.XGBRegressor(**params, random_state=seed, eval_metric="rmse")


def _build_logistic(task: Task, params: dict[str, Any], seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(**params, random_state=seed))


def _build_ridge(task: Task, params: dict[str, Any], seed: int) -> Any:
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), Ridge(**params, random_state=seed))


def _build_random_forest(task: Task, params: dict[str, Any], seed: int) -> Any:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    estimator = RandomForestClassifier if task == "classification" else RandomForestRegressor
    return estimator(**params, random_state=seed)


ALGORITHMS: dict[str, Algorithm] = {
    "xgboost": Algorithm(
        name="xgboost",
        flavor="xgboost",
        tasks=("classification", "regression"),
        params={
            "n_estimators": _positive_int(),
            "max_depth": ParamSpec((int,), lambda v: v >= 0, ">= 0"),
            "learning_rate": _positive(),
            "subsample": _fraction(),
            "colsample_bytree": _fraction(),
            "min_child_weight": _non_negative(),
            "gamma": _non_negative(),
            "reg_alpha": _non_negative(),
            "reg_lambda": _non_negative(),
            "max_bin": ParamSpec((int,), lambda v: v >= 2, ">= 2"),
            "scale_pos_weight": _positive(),
            "tree_method": ParamSpec((str,), lambda v: v in {"hist", "approx", "exact"}, "one of hist, approx, exact"),
            "n_jobs": _positive_int(),
            "early_stopping_rounds": _positive_int(),
            # Domain knowledge as a guarantee, e.g. {rating: 1}: a higher rating never lowers the score.
            "monotone_constraints": ParamSpec(
                (dict,),
                lambda v: all(isinstance(k, str) and c in (-1, 0, 1) for k, c in v.items()),
                "a mapping of feature name to -1, 0 or 1",
            ),
        },
        # One thread: identical results everywhere, and the cores are shared with other tasks.
        defaults={"n_jobs": 1, "tree_method": "hist"},
        build=_build_xgboost,
        early_stopping=True,
    ),
    "sklearn_logistic": Algorithm(
        name="sklearn_logistic",
        flavor="sklearn",
        tasks=("classification",),
        params={
            "C": _positive(),
            "max_iter": _positive_int(),
            "tol": _positive(),
            "class_weight": ParamSpec((str, None), lambda v: v in {None, "balanced"}, "null or 'balanced'"),
        },
        defaults={"max_iter": 1000},
        build=_build_logistic,
    ),
    "sklearn_ridge": Algorithm(
        name="sklearn_ridge",
        flavor="sklearn",
        tasks=("regression",),
        params={"alpha": _non_negative(), "tol": _positive()},
        build=_build_ridge,
    ),
    "sklearn_random_forest": Algorithm(
        name="sklearn_random_forest",
        flavor="sklearn",
        tasks=("classification", "regression"),
        params={
            "n_estimators": _positive_int(),
            "max_depth": ParamSpec((int, None), lambda v: v is None or v >= 1, "null or >= 1"),
            "min_samples_leaf": _positive_int(),
            "max_features": ParamSpec(
                (str, float, None),
                lambda v: v is None or v in {"sqrt", "log2"} or (not isinstance(v, str) and 0 < v <= 1),
                "null, 'sqrt', 'log2' or a fraction in (0, 1]",
            ),
            "n_jobs": _positive_int(),
        },
        defaults={"n_jobs": 1, "n_estimators": 200, "min_samples_leaf": 5},
        build=_build_random_forest,
    ),
}


def get_algorithm(name: str, task: Task | None = None) -> Algorithm:
    """The registered algorithm ``name``, checked against ``task`` when given.

    Raises:
        AlgorithmError: unknown name, or the algorithm cannot do ``task``.
    """
    algorithm = ALGORITHMS.get(name)
    if algorithm is None:
        raise AlgorithmError(f"unknown algorithm '{name}' (known: {', '.join(ALGORITHMS)})")
    if task is not None and task not in algorithm.tasks:
        raise AlgorithmError(f"algorithm '{name}' cannot do {task} (it does: {', '.join(algorithm.tasks)})")
    return algorithm


def validate_params(algorithm: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``params`` against the algorithm's schema and return them with the defaults filled in.

    Raises:
        AlgorithmError: the algorithm is unknown.
        ParamError: a key is unknown, or its value has the wrong type or is out of range;
            the message and ``.key`` name it.
    """
    spec = get_algorithm(algorithm)
    for key, value in params.items():
        if key not in spec.params:
            raise ParamError(
                f"algorithm '{algorithm}': unknown hyperparameter '{key}' (known: {', '.join(sorted(spec.params))})",
                key=key,
            )
        _check_value(algorithm, key, value, spec.params[key])
    return {**spec.defaults, **params}


def _check_value(algorithm: str, key: str, value: Any, spec: ParamSpec) -> None:
    if not _type_matches(value, spec.types):
        wanted = " or ".join("null" if t is None else t.__name__ for t in spec.types)
        raise ParamError(
            f"algorithm '{algorithm}': hyperparameter '{key}' must be {wanted}, got {type(value).__name__} {value!r}",
            key=key,
        )
    if not spec.check(value):
        raise ParamError(
            f"algorithm '{algorithm}': hyperparameter '{key}' must be {spec.requirement}, got {value!r}", key=key
        )


def _type_matches(value: Any, types: tuple[type | None, ...]) -> bool:
    if value is None:
        return None in types
    if isinstance(value, bool):  # JSON true/false are not numbers
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return any(t is not None and isinstance(value, t) for t in types)


def check_feature_params(algorithm: str, params: Mapping[str, Any], features: list[str]) -> None:
    """Check that hyperparameters naming features (``monotone_constraints``) name configured features.

    Raises:
        ParamError: an unknown feature is named; the message names the key and the feature.
    """
    unknown = sorted(set(params.get("monotone_constraints") or {}) - set(features))
    if unknown:
        raise ParamError(
            f"algorithm '{algorithm}': hyperparameter 'monotone_constraints' names unknown features {unknown} "
            f"(features: {', '.join(features)})",
            key="monotone_constraints",
        )


def parse_params_json(text: str | None) -> dict[str, Any]:
    """Parse a hyperparameter override given as a JSON object (empty text: no override).

    Raises:
        ParamError: the text is not JSON or not an object (``key`` is ``params``).
    """
    if text is None or not text.strip():
        return {}
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParamError(f"params: not valid JSON ({exc.msg} at position {exc.pos}): {text!r}", key="params") from exc
    if not isinstance(parsed, dict):
        raise ParamError(
            f'params: expected a JSON object such as {{"max_depth": 4}}, got {type(parsed).__name__}', key="params"
        )
    return parsed


def build_model(algorithm: str, task: Task, params: Mapping[str, Any], seed: int, early_stopping_rounds: int) -> Any:
    """An unfitted estimator of ``algorithm`` for ``task`` with validated ``params`` and ``seed``."""
    spec = get_algorithm(algorithm, task)
    checked = validate_params(algorithm, params)
    if spec.early_stopping:
        checked.setdefault("early_stopping_rounds", early_stopping_rounds)
    return spec.build(task, checked, seed)


def feature_frame(frame: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """The model input: ``features`` of ``frame`` as float64, in the configured order.

    Floats everywhere keep the logged signature tolerant (a client may send 3.0 for an int
    feature) and make training and serving see identical inputs.
    """
    return frame[features].astype("float64")


def fit(
    algorithm: str, model: Any, x_train: pd.DataFrame, y_train: pd.Series, x_valid: pd.DataFrame, y_valid: pd.Series
) -> Any:
    """Fit ``model``; xgboost watches the validation window for early stopping."""
    if get_algorithm(algorithm).early_stopping:
        model.fit(x_train, y_train, eval_set=[(x_valid, y_valid)], verbose=False)
    else:
        model.fit(x_train, y_train)
    return model


def predict(model: Any, task: Task, x: pd.DataFrame) -> np.ndarray:
    """Positive-class probabilities for classification, values for regression."""
    import numpy as np

    if task == "classification":
        return np.asarray(model.predict_proba(x)[:, 1], dtype=float)
    return np.asarray(model.predict(x), dtype=float)


def feature_importance(model: Any, features: list[str]) -> dict[str, float]:
    """Importance per feature: tree gain/impurity importances, or absolute standardized coefficients."""
    import numpy as np

    estimator = model.steps[-1][1] if hasattr(model, "steps") else model
    if hasattr(estimator, "feature_importances_"):
        values = np.asarray(estimator.feature_importances_, dtype=float)
    else:
        values = np.abs(np.asarray(estimator.coef_, dtype=float)).reshape(-1, len(features)).mean(axis=0)
    return {name: float(value) for name, value in zip(features, values, strict=True)}


def best_iteration(model: Any) -> int | None:
    """The boosting round early stopping kept, when the model has one."""
    try:
        value = model.best_iteration
    except AttributeError:
        return None
    return int(value) if value is not None else None
