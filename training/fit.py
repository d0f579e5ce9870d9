"""Fitting one model: split a snapshot by time, fit the model (and its baseline), score both.

The pure part of training: no MLflow, no registry. Deterministic: the same frame, settings
and ``config.seed`` give the same model, predictions and metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelyard.training import metrics as metrics_mod
from modelyard.training import models
from modelyard.training.job import TrainingError
from modelyard.training.split import SplitError, TimeSplit, time_split

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from modelyard.core.config import Config, Family


class TrainingSkipped(Exception):
    """The data cannot make a model (too few rows, one class, empty window); ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TooFewRows(TrainingSkipped):
    """Fewer rows than ``data.min_rows``: no model of its own (a grouped region is served by its pooled model)."""


@dataclass(frozen=True)
class FitOutcome:
    """A fitted model, its baseline, the split and every metric (no MLflow involved)."""

    model: Any
    baseline_model: Any | None
    split: TimeSplit
    holdout_predictions: np.ndarray
    metrics: dict[str, float]
    importance: dict[str, float]
    best_iteration: int | None
    fit_seconds: float = 0.0  # wall time of split, fits and scoring: what a pair costs beyond the bookkeeping


def check_trainable(config: Config, family: Family, frame: pd.DataFrame) -> None:
    """Raise :class:`TrainingSkipped` when the frame cannot make a model.

    Raises:
        TooFewRows: fewer rows than ``data.min_rows`` (a :class:`TrainingSkipped`).
        TrainingSkipped: a single-class label.
        TrainingError: a configured feature or the target is missing from the snapshot.
    """
    missing = [c for c in [*family.feature_names, family.target] if c not in frame.columns]
    if missing:
        raise TrainingError(
            f"family '{family.name}': columns {missing} are not in the snapshot; "
            "rebuild it after changing the family's features"
        )
    if len(frame) < config.data.min_rows:
        raise TooFewRows(f"{len(frame)} rows, fewer than data.min_rows={config.data.min_rows}")
    if family.task == "classification" and frame[family.target].nunique() < 2:
        raise TrainingSkipped(f"target '{family.target}' has a single class ({frame[family.target].iloc[0]})")


def fit_pair(
    config: Config,
    family: Family,
    frame: pd.DataFrame,
    algorithm: str,
    params: Mapping[str, Any],
    baseline: str | None = None,
) -> FitOutcome:
    """Split ``frame`` by time, fit the model (and baseline) and score validation and holdout.

    Deterministic: the same frame, settings and ``config.seed`` give the same model,
    predictions and metrics.

    Raises:
        TrainingSkipped: the frame is too small, has one class, or a time window is empty.
    """
    import time

    started = time.perf_counter()
    check_trainable(config, family, frame)
    settings = config.training
    try:
        split = time_split(frame, settings.holdout_days, settings.validation_days)
    except SplitError as exc:
        raise TrainingSkipped(str(exc)) from exc
    if family.task == "classification" and split.train[family.target].nunique() < 2:
        raise TrainingSkipped(f"target '{family.target}' has a single class in the training window")
    model = _fit(config, family, algorithm, params, split)
    scores = _score(config, family, model, split)
    baseline_model = None
    if baseline:
        baseline_model = _fit(config, family, baseline, {}, split)
        scores.update(_score(config, family, baseline_model, split, prefix="baseline_", sliced=False))
    return FitOutcome(
        model=model,
        baseline_model=baseline_model,
        split=split,
        holdout_predictions=models.predict(
            model, family.task, models.feature_frame(split.holdout, family.feature_names)
        ),
        metrics=scores,
        importance=models.feature_importance(model, family.feature_names),
        best_iteration=models.best_iteration(model),
        fit_seconds=time.perf_counter() - started,
    )


def _fit(config: Config, family: Family, algorithm: str, params: Mapping[str, Any], split: TimeSplit) -> Any:
    model = models.build_model(algorithm, family.task, params, config.seed, config.training.early_stopping_rounds)
    x_train = models.feature_frame(split.train, family.feature_names)
    x_valid = models.feature_frame(split.valid, family.feature_names)
    target = family.target
    return models.fit(algorithm, model, x_train, split.train[target], x_valid, split.valid[target])


def _score(
    config: Config, family: Family, model: Any, split: TimeSplit, prefix: str = "", sliced: bool = True
) -> dict[str, float]:
    scores: dict[str, float] = {}
    for name, part in (("valid", split.valid), ("holdout", split.holdout)):
        predicted = models.predict(model, family.task, models.feature_frame(part, family.feature_names))
        scores.update(
            metrics_mod.evaluate(
                family.task,
                part,
                predicted,
                target=family.target,
                split=f"{prefix}{name}",
                threshold=config.training.operating_threshold,
                slices=family.slices if sliced else (),
            )
        )
    return scores
