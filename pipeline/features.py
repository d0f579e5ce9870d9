"""Deterministic feature building: raw rows of one region → the snapshot contract.

The features are declared per family in the config and computed by
:mod:`pipeline.featurespec` (the same code the serving pod runs); this module adds what needs
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
from modelyard.core.config import Config, ConfigError, Dataset, Family, Region
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


def check_family(config: Config, family: Family) -> None:
    """Fail fast on a family that cannot be built: no dataset, or a user function that does not import.

    Raises:
        ConfigError: names the family and what to fix.
    """
    try:
        config.feature_spec(family, slices=True).check_functions()
    except featurespec.FeatureSpecError as exc:
        raise ConfigError(str(exc)) from exc


def snapshot_columns(config: Config, family: Family) -> list[str]:
    """The columns of a snapshot of ``family``, in order."""
    raw = [f"{RAW_PREFIX}{name}" for name in raw_inputs(config, family)]
    return [TIME_COLUMN, *(f.name for f in family.slice_features), *family.feature_names, family.target, *raw]


def raw_inputs(config: Config, family: Family) -> list[str]:
    """The raw columns (other than time) a client sends for ``family``'s row-computable features."""
    time_column = config.dataset_of(family).time_column
    return [c for c in config.feature_spec(family).raw_inputs if c != time_column]


def required_raw_columns(config: Config, family: Family) -> list[str]:
    """The raw columns ``family`` needs: time, region, key, every feature's inputs and the target's column."""
    dataset = config.dataset_of(family)
    spec = config.feature_spec(family, slices=True)
    roles = (dataset.key_column, dataset.request_id_column, dataset.request_record_column)
    names = [dataset.time_column, dataset.region_column, *[name for name in roles if name]]
    for feature in spec.features:
        names.extend(spec.inputs_of(feature))
    names.append(family.target_from.column if family.target_from else family.target)
    return list(dict.fromkeys(names))


def build_features(raw: pd.DataFrame, config: Config, family: Family, region: Region) -> BuiltFeatures:
    """The snapshot frame of ``family`` for ``region`` from its raw rows (typed by ingest or the generator).

    Raises:
        ConfigError: the family has no dataset or a user function does not import.
        FeatureError: a column is missing or a feature cannot be computed (names family, feature, column).
    """
    import pandas as pd

    dataset = config.dataset_of(family)
    missing = [c for c in required_raw_columns(config, family) if c not in raw.columns]
    if missing:
        raise FeatureError(f"family '{family.name}': raw data has no column(s) {', '.join(missing)}")
    ordered = raw.sort_values(_order(dataset), kind="stable").reset_index(drop=True)
    columns = raw_columns(ordered, dataset)
    columns.update(window_aggregates(ordered, config, family, region))
    spec = config.feature_spec(family, slices=True)
    try:
        fitted = spec.fit(_rows(columns, training_window(ordered[dataset.time_column], config)), region.calendar())
        unknown: dict[str, int] = {}
        computed = fitted.compute(columns, unknown=unknown)
    except featurespec.FeatureSpecError as exc:
        raise FeatureError(str(exc)) from exc
    frame = {TIME_COLUMN: ordered[dataset.time_column].dt.tz_convert("UTC"), **computed}
    frame[family.target] = target_values(ordered, family)
    for name in raw_inputs(config, family):
        frame[f"{RAW_PREFIX}{name}"] = ordered[name]
    _no_missing(family, computed)
    return BuiltFeatures(pd.DataFrame(frame), _model_spec(config, family, fitted), unknown)


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


def training_window(times: pd.Series, config: Config) -> np.ndarray:
    """Rows training learns from (before its validation and holdout windows), as a boolean mask."""
    import pandas as pd

    span = pd.Timedelta(days=config.training.holdout_days + config.training.validation_days)
    return (times < times.max() - span).to_numpy()


def _rows(columns: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {name: values[mask] for name, values in columns.items()}


def window_aggregates(raw: pd.DataFrame, config: Config, family: Family, region: Region) -> dict[str, np.ndarray]:
    """Every window aggregate of ``family`` over ``raw``, by feature name.

    ``window_count``: rows with the same key in the same local hour (or day), divided by the
    mean of those counts when ``relative``; ``window_mean``: the mean of ``column`` there.
    """
    dataset = config.dataset_of(family)
    out = {}
    for feature in [*family.slice_features, *family.feature_decls]:
        if feature.kind in featurespec.WINDOW_KINDS:
            out[feature.name] = _window(raw, dataset, feature.to_def(), region, family)
    return out


def _window(
    raw: pd.DataFrame, dataset: Dataset, feature: featurespec.FeatureDef, region: Region, family: Family
) -> np.ndarray:
    times = raw_columns(raw[[dataset.time_column]], dataset)[dataset.time_column]
    utc_ns = featurespec.epoch_ns(times, family.name, feature.name, dataset.time_column)
    bucket = featurespec.local_seconds(utc_ns, region.timezone) // featurespec.WINDOW_EVERY[feature.every]
    key = raw[str(feature.key)].astype(str) + "|" + bucket.astype(str)
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


def _model_spec(config: Config, family: Family, fitted: featurespec.FittedSpec) -> featurespec.FittedSpec:
    """The fitted spec of the model's features only (the slice features are not model inputs)."""
    names = set(family.feature_names)
    return featurespec.FittedSpec(
        config.feature_spec(family),
        fitted.calendar,
        {k: v for k, v in fitted.vocabularies.items() if k in names},
        {k: v for k, v in fitted.edges.items() if k in names},
    )
