"""Task metrics and per-slice metrics, named the same everywhere.

Naming (the contract with the promotion gates and the MLflow UI):

``<split>_<metric>``
    ``split`` is ``valid`` or ``holdout``; ``metric`` is one of
    classification: ``auc``, ``logloss``, ``brier``, ``precision``, ``recall``
    (precision and recall at ``training.operating_threshold``);
    regression: ``mae``, ``rmse``, ``mape`` (MAPE as a fraction, rows with a zero target excluded).
    Examples: ``holdout_auc``, ``valid_logloss``, ``holdout_mae``.
``<split>_<metric>__<slice>``
    the same metric on one slice of rows, as the family declares its ``slices`` in the config
    (a feature or slice feature in [min, max], or in a set of values; e.g. ``hour_morning``:
    local hour 6-11). A slice with fewer than :data:`MIN_SLICE_ROWS` rows, or a metric
    undefined on it (AUC on one class), is left out. Example: ``holdout_auc__hour_morning``.
``baseline_<split>_<metric>``
    the scikit-learn baseline's metrics on the same window, e.g. ``baseline_holdout_auc``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from modelyard.core.config import Slice

Task = Literal["classification", "regression"]

CLASSIFICATION_METRICS = ("auc", "logloss", "brier", "precision", "recall")
REGRESSION_METRICS = ("mae", "rmse", "mape")
MIN_SLICE_ROWS = 30
# Metrics where a smaller value is better; the rest are better when higher.
LOWER_IS_BETTER = frozenset({"logloss", "brier", "mae", "rmse", "mape"})


def metric_name(split: str, metric: str, slice_name: str | None = None) -> str:
    """The logged name of ``metric`` on ``split`` (and optionally one slice), e.g. ``holdout_auc__hour_morning``."""
    return f"{split}_{metric}" + (f"__{slice_name}" if slice_name else "")


def higher_is_better(name: str) -> bool:
    """Whether a larger value of the named metric (any prefix/slice) is better."""
    base = name.split("__", 1)[0].rsplit("_", 1)[-1]
    return base not in LOWER_IS_BETTER


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, float]:
    """AUC, log loss, Brier score, and precision/recall at ``threshold`` of positive-class probabilities.

    AUC is left out when ``y_true`` holds a single class (it is undefined).
    """
    import numpy as np
    from sklearn.metrics import brier_score_loss, log_loss, precision_score, recall_score, roc_auc_score

    y = np.asarray(y_true).astype(int)
    p = np.clip(np.asarray(proba, dtype=float), 1e-7, 1 - 1e-7)
    predicted = (p >= threshold).astype(int)
    result = {
        "logloss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p, labels=[0, 1])),
        "precision": float(precision_score(y, predicted, zero_division=0)),
        "recall": float(recall_score(y, predicted, zero_division=0)),
    }
    if len(np.unique(y)) == 2:
        result["auc"] = float(roc_auc_score(y, p))
    return result


def regression_metrics(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and MAPE (a fraction; rows whose target is 0 are excluded from MAPE)."""
    import numpy as np

    y = np.asarray(y_true, dtype=float)
    p = np.asarray(predicted, dtype=float)
    errors = p - y
    result = {"mae": float(np.mean(np.abs(errors))), "rmse": float(math.sqrt(np.mean(errors**2)))}
    nonzero = y != 0
    if nonzero.any():
        result["mape"] = float(np.mean(np.abs(errors[nonzero] / y[nonzero])))
    return result


def task_metrics(task: Task, y_true: np.ndarray, predicted: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """The metrics of ``task`` (unprefixed names); ``predicted`` is a probability for classification."""
    if task == "classification":
        return classification_metrics(y_true, predicted, threshold)
    return regression_metrics(y_true, predicted)


def slice_masks(frame: pd.DataFrame, slices: Sequence[Slice]) -> dict[str, np.ndarray]:
    """Boolean row masks of every declared slice whose feature ``frame`` has."""
    import numpy as np

    masks: dict[str, np.ndarray] = {}
    for piece in slices:
        if piece.feature not in frame.columns:
            continue
        values = frame[piece.feature]
        if piece.values is not None:
            mask = values.isin(piece.values).to_numpy()
        else:
            low = -np.inf if piece.min is None else piece.min
            high = np.inf if piece.max is None else piece.max
            mask = ((values >= low) & (values <= high)).to_numpy()
        masks[piece.name] = np.asarray(mask, dtype=bool)
    return masks


def evaluate(
    task: Task,
    frame: pd.DataFrame,
    predicted: np.ndarray,
    *,
    target: str,
    split: str,
    threshold: float = 0.5,
    slices: Sequence[Slice] = (),
) -> dict[str, float]:
    """Every metric of ``predicted`` against ``frame[target]``, named ``<split>_<metric>[__<slice>]``.

    Args:
        task: ``classification`` (``predicted`` are positive-class probabilities) or ``regression``.
        frame: the rows scored, with the target and the slice columns.
        predicted: one prediction per row of ``frame``.
        target: the target column.
        split: the name prefix, ``valid`` or ``holdout`` (``baseline_holdout`` for a baseline).
        threshold: the classification operating threshold.
        slices: the family's declared slices, scored each on its own (none: overall metrics only).

    Raises:
        KeyError: ``target`` is not a column of ``frame``.
        ValueError: ``predicted`` does not have one value per row.
    """
    import numpy as np

    if target not in frame.columns:
        raise KeyError(f"target column '{target}' is missing from the frame being scored")
    y = frame[target].to_numpy()
    p = np.asarray(predicted)
    if p.shape[0] != len(frame):
        raise ValueError(f"{p.shape[0]} predictions for {len(frame)} rows of split '{split}'")
    result = {metric_name(split, k): v for k, v in task_metrics(task, y, p, threshold).items()}
    if slices:
        for slice_name, mask in slice_masks(frame, slices).items():
            if mask.sum() < MIN_SLICE_ROWS:
                continue
            scored = task_metrics(task, y[mask], p[mask], threshold)
            result.update({metric_name(split, k, slice_name): v for k, v in scored.items()})
    return result
