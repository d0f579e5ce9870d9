"""Deterministic feature building: raw rows of one region → the snapshot contract.

The features are declared per family in the config and computed by
:mod:`core.featurespec` (the same code the serving pod runs); this module adds what needs
the whole table, with pandas: window aggregates, the stable row order and the target.

The snapshot frame has, in this order: ``event_time`` (UTC; the dataset's time column),
the family's ``slice_features``, its ``features`` (model order), its target, and the raw
columns a client sends for them as ``raw.<column>`` (for parity checks and the model's input
example). Rows are sorted by time, then by the dataset's key column. The same raw frame
always gives the same snapshot, bit for bit.

Vocabularies and bucket edges are learnt on the rows training will learn from: those before
``newest - (training.holdout_days + training.validation_days)``, the cut of
``training.split.boundaries_for``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelyard.core import featurespec
from modelyard.core.config import ConfigError, Dataset, Family, PairView, TrainingSettings
from modelyard.core.contracts.columns import RAW_PREFIX, TIME_COLUMN
from modelyard.core.errors import ModelyardError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class FeatureError(ModelyardError, ValueError):
    """The raw frame cannot be turned into features; the message names family, feature and column."""


@dataclass(frozen=True)
class BuiltFeatures:
    """A snapshot frame, the fitted spec that made it, and the unknown categories it counted."""

    frame: pd.DataFrame
    fitted: featurespec.FittedSpec
    unknown: dict[str, int]


def check_family(pair: PairView) -> None:
    """Fail fast on a family that cannot be built: a user function that does not import.

    Raises:
        ConfigError: names the family and what to fix.
    """
    try:
        pair.snapshot_spec.check_functions()
    except featurespec.FeatureSpecError as exc:
        raise ConfigError(str(exc)) from exc


def snapshot_columns(pair: PairView) -> list[str]:
    """The columns of a snapshot of the pair's family, in order."""
    family = pair.family
    raw = [f"{RAW_PREFIX}{name}" for name in raw_inputs(pair)]
    return [TIME_COLUMN, *(f.name for f in family.slice_features), *family.feature_names, family.target, *raw]


def raw_inputs(pair: PairView) -> list[str]:
    """The raw columns (other than time) a client sends for the family's row-computable features."""
    return [c for c in pair.spec.raw_inputs if c != pair.dataset.time_column]


def required_raw_columns(pair: PairView) -> list[str]:
    """The raw columns the family needs: time, region, key, every feature's inputs and the target's column."""
    dataset, family, spec = pair.dataset, pair.family, pair.snapshot_spec
    roles = (dataset.key_column, dataset.request_id_column, dataset.request_record_column)
    names = [dataset.time_column, dataset.region_column, *[name for name in roles if name]]
    for feature in spec.features:
        names.extend(spec.inputs_of(feature))
    names.append(family.target_from.column if family.target_from else family.target)
    return list(dict.fromkeys(names))


def build_features(raw: pd.DataFrame, pair: PairView, training: TrainingSettings) -> BuiltFeatures:
    """The snapshot frame of a pair from its raw rows (typed by ingest or the generator).

    Args:
        raw: The region's raw rows.
        pair: The (family, region), resolved once.
        training: Its windows say which rows vocabularies and bucket edges are learnt on.

    Raises:
        FeatureError: a column is missing or a feature cannot be computed (names family, feature, column).
    """
    import pandas as pd

    dataset, family = pair.dataset, pair.family
    missing = [c for c in required_raw_columns(pair) if c not in raw.columns]
    if missing:
        raise FeatureError(f"family '{family.name}': raw data has no column(s) {', '.join(missing)}")
    ordered = raw.sort_values(_order(dataset), kind="stable").reset_index(drop=True)
    columns = raw_columns(ordered, dataset)
    columns.update(window_aggregates(ordered, pair))
    try:
        learn_on = _rows(columns, training_window(ordered[dataset.time_column], training))
        fitted = pair.snapshot_spec.fit(learn_on, pair.calendar)
        unknown: dict[str, int] = {}
        computed = fitted.compute(columns, unknown=unknown)
    except featurespec.FeatureSpecError as exc:
        raise FeatureError(str(exc)) from exc
    frame = {TIME_COLUMN: ordered[dataset.time_column].dt.tz_convert("UTC"), **computed}
    frame[family.target] = target_values(ordered, family)
    for name in raw_inputs(pair):
        frame[f"{RAW_PREFIX}{name}"] = ordered[name]
    _no_missing(family, computed)
    return BuiltFeatures(pd.DataFrame(frame), _model_spec(pair, fitted), unknown)


def _order(dataset: Dataset) -> list[str]:
    # Rows at the same time keep a stable order whatever order the file had.
    return [dataset.time_column, *([dataset.key_column] if dataset.key_column else [])]


def raw_columns(raw: pd.DataFrame, dataset: Dataset) -> dict[str, np.ndarray]:
    """The declared columns of ``raw`` as numpy arrays (the time column as UTC ``datetime64``)."""
    out = {}
    for name in dataset.columns:
        if name not in raw.columns:
            continue
        series = raw[name]
        if name == dataset.time_column:
            out[name] = series.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
        else:
            out[name] = series.to_numpy()
    return out


def training_window(times: pd.Series, training: TrainingSettings) -> np.ndarray:
    """Rows training learns from (before its validation and holdout windows), as a boolean mask."""
    import pandas as pd

    span = pd.Timedelta(days=training.holdout_days + training.validation_days)
    return (times < times.max() - span).to_numpy()


def _rows(columns: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {name: values[mask] for name, values in columns.items()}


def window_aggregates(raw: pd.DataFrame, pair: PairView) -> dict[str, np.ndarray]:
    """Every window aggregate of the pair's family over ``raw``, by feature name.

    ``window_count``: rows with the same key in the same local hour (or day), divided by the
    mean of those counts when ``relative``; ``window_mean``: the mean of ``column`` there.
    """
    out = {}
    for feature in pair.snapshot_spec.features:
        if feature.kind in featurespec.WINDOW_KINDS:
            out[feature.name] = _window(raw, pair, feature)
    return out


def _window(raw: pd.DataFrame, pair: PairView, feature: featurespec.FeatureDef) -> np.ndarray:
    dataset = pair.dataset
    times = raw_columns(raw[[dataset.time_column]], dataset)[dataset.time_column]
    utc_ns = featurespec.epoch_ns(times, pair.family.name, feature.name, dataset.time_column)
    key = featurespec.window_keys(feature, raw[str(feature.key)], utc_ns, pair.timezone)
    if feature.kind == "window_mean":
        return raw[str(feature.column)].astype("float64").groupby(key).transform("mean").to_numpy()
    per_key = key.value_counts()
    counts = key.map(per_key).astype("float64")
    return (counts / float(per_key.mean()) if feature.relative else counts).to_numpy()


def target_values(raw: pd.DataFrame, family: Family) -> pd.Series:
    """The target: its column, or 1/0 from ``target_from`` (int for classification, float for regression)."""
    rule = family.target_from
    values = raw[rule.column] if rule else raw[family.target]
    if rule:
        values = values.astype("float64")
        values = values.where(values.isna(), featurespec.COMPARISONS[rule.op](values, rule.value).astype("float64"))
    kind = "int64" if family.task == "classification" else "float64"
    try:
        return values.astype(kind).reset_index(drop=True)
    except (TypeError, ValueError) as exc:
        nulls = int(values.isna().sum())
        column = rule.column if rule else family.target
        reason = f"{nulls} missing values" if nulls else f"values that are not numbers ({exc})"
        raise FeatureError(
            f"family '{family.name}': target column '{column}' has {reason}; validate the raw data first"
        ) from exc


def _no_missing(family: Family, computed: dict[str, np.ndarray]) -> None:
    import numpy as np

    for name, values in computed.items():
        nulls = int(np.isnan(values).sum()) if values.dtype.kind == "f" else 0
        if nulls:
            raise FeatureError(
                f"family '{family.name}', feature '{name}': {nulls} missing values; declare the input column "
                "not nullable or fill it before modelyard"
            )


def _model_spec(pair: PairView, fitted: featurespec.FittedSpec) -> featurespec.FittedSpec:
    """The fitted spec of the model's features only (the slice features are not model inputs)."""
    names = set(pair.spec.names)
    return featurespec.FittedSpec(
        pair.spec,
        fitted.calendar,
        {k: v for k, v in fitted.vocabularies.items() if k in names},
        {k: v for k, v in fitted.edges.items() if k in names},
    )
