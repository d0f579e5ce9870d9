"""Deterministic feature building: raw bookings of one region → the snapshot contract.

The snapshot frame has, in this order: ``event_time`` (UTC), ``hour`` (local hour, for
slices), ``is_new_driver`` (for slices), every feature the family lists in the config,
and the family's target. Rows are sorted by event time. The same raw frame always
gives the same features, bit for bit.

A feature is a name in :data:`FEATURES` with the raw columns it reads and a function;
adding one is adding an entry here and naming it in the config.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelyard.pipeline.config import ConfigError, Family, Region
from modelyard.pipeline.errors import ModelyardError

if TYPE_CHECKING:
    import pandas as pd

NEW_DRIVER_DAYS = 30
TIME_COLUMN = "event_time"
SLICE_COLUMNS = ("hour", "is_new_driver")


class FeatureError(ModelyardError, ValueError):
    """The raw frame cannot be turned into features; the message names the column."""


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: the raw columns it reads and how it is computed."""

    inputs: tuple[str, ...]
    build: Callable[[pd.DataFrame, Region], pd.Series]
    kind: str = "float"  # "float" or "int": the dtype of the snapshot column


def _passthrough(column: str, kind: str = "float") -> FeatureSpec:
    def build(raw: pd.DataFrame, region: Region) -> pd.Series:
        return raw[column]

    return FeatureSpec((column,), build, kind)


def local_time(raw: pd.DataFrame, region: Region) -> pd.Series:
    """Booking times in the region's own time zone."""
    return raw[TIME_COLUMN].dt.tz_convert(region.timezone)


def _hour(raw: pd.DataFrame, region: Region) -> pd.Series:
    return local_time(raw, region).dt.hour


def _hour_angle(raw: pd.DataFrame, region: Region) -> pd.Series:
    local = local_time(raw, region)
    return (local.dt.hour + local.dt.minute / 60.0) * (2 * math.pi / 24)


def _hour_sin(raw: pd.DataFrame, region: Region) -> pd.Series:
    import numpy as np

    return np.sin(_hour_angle(raw, region))


def _hour_cos(raw: pd.DataFrame, region: Region) -> pd.Series:
    import numpy as np

    return np.cos(_hour_angle(raw, region))


def _day_of_week(raw: pd.DataFrame, region: Region) -> pd.Series:
    return local_time(raw, region).dt.dayofweek


def _is_weekend(raw: pd.DataFrame, region: Region) -> pd.Series:
    return local_time(raw, region).dt.dayofweek >= 5


def _is_festival(raw: pd.DataFrame, region: Region) -> pd.Series:
    import pandas as pd

    day = local_time(raw, region).dt.tz_localize(None).dt.normalize()
    flags = pd.Series(False, index=raw.index)
    for fest in region.festivals:
        flags |= (day >= pd.Timestamp(fest.start)) & (day <= pd.Timestamp(fest.end))
    return flags


def _is_new_driver(raw: pd.DataFrame, region: Region) -> pd.Series:
    return raw["driver_tenure_days"] < NEW_DRIVER_DAYS


def _area_demand_index(raw: pd.DataFrame, region: Region) -> pd.Series:
    """Bookings in the same pickup area and local hour, relative to the average such hour."""
    hour = local_time(raw, region).dt.strftime("%Y-%m-%dT%H")
    key = raw["pickup_area"].astype(str) + "|" + hour
    per_key = key.value_counts()
    return key.map(per_key).astype("float64") / float(per_key.mean())


FEATURES: dict[str, FeatureSpec] = {
    "pickup_distance_km": _passthrough("pickup_distance_km"),
    "driver_rating": _passthrough("driver_rating"),
    "driver_acceptance_rate": _passthrough("driver_acceptance_rate"),
    "driver_tenure_days": _passthrough("driver_tenure_days", "int"),
    "surge_multiplier": _passthrough("surge_multiplier"),
    "is_new_driver": FeatureSpec(("driver_tenure_days",), _is_new_driver, "int"),
    "area_demand_index": FeatureSpec(("pickup_area", TIME_COLUMN), _area_demand_index),
    "hour": FeatureSpec((TIME_COLUMN,), _hour, "int"),
    "hour_sin": FeatureSpec((TIME_COLUMN,), _hour_sin),
    "hour_cos": FeatureSpec((TIME_COLUMN,), _hour_cos),
    "day_of_week": FeatureSpec((TIME_COLUMN,), _day_of_week, "int"),
    "is_weekend": FeatureSpec((TIME_COLUMN,), _is_weekend, "int"),
    "is_festival": FeatureSpec((TIME_COLUMN,), _is_festival, "int"),
}
# Raw columns every family reads, whatever its feature list.
BASE_COLUMNS = (TIME_COLUMN, "region", "driver_tenure_days")


def check_family(family: Family) -> None:
    """Fail fast on features the builder does not know.

    Raises:
        ConfigError: names the family and the unknown feature, and lists the known ones.
    """
    for name in family.features:
        if name == family.target:
            raise ConfigError(f"families '{family.name}': the target '{name}' is also listed as a feature")
        if name not in FEATURES:
            raise ConfigError(
                f"families '{family.name}': feature '{name}' is not known to the feature builder "
                f"(known: {', '.join(sorted(FEATURES))}); fix features in the config or add it to pipeline/features.py"
            )


def snapshot_columns(family: Family) -> list[str]:
    """The columns of a snapshot of ``family``, in order."""
    check_family(family)
    ordered = [TIME_COLUMN, *SLICE_COLUMNS, *family.features, family.target]
    return list(dict.fromkeys(ordered))


def required_raw_columns(family: Family) -> list[str]:
    """The raw columns ``family`` needs: time, region, the features' inputs and the target."""
    check_family(family)
    names = [*BASE_COLUMNS]
    for name in [*SLICE_COLUMNS, *family.features]:
        names.extend(FEATURES[name].inputs)
    names.append(family.target)
    return list(dict.fromkeys(names))


def build_features(raw: pd.DataFrame, family: Family, region: Region) -> pd.DataFrame:
    """The snapshot frame of ``family`` for ``region`` from its raw bookings.

    Args:
        raw: Raw bookings of this region (typed by :mod:`pipeline.ingest` or the generator).
        family: The model family: which features and which target.
        region: The region: its time zone and festival windows.

    Returns:
        The snapshot contract columns, sorted by ``event_time``, with a fresh index.

    Raises:
        ConfigError: the family names a feature the builder does not know.
        FeatureError: a raw column the family needs is missing.
    """
    import pandas as pd

    missing = [c for c in required_raw_columns(family) if c not in raw.columns]
    if missing:
        raise FeatureError(f"family '{family.name}': raw data has no column(s) {', '.join(missing)}")
    ordered = raw.sort_values([TIME_COLUMN, *_tiebreak(raw)], kind="stable").reset_index(drop=True)
    columns: dict[str, pd.Series] = {TIME_COLUMN: ordered[TIME_COLUMN]}
    for name in snapshot_columns(family)[1:-1]:
        columns[name] = _typed(name, FEATURES[name].build(ordered, region), FEATURES[name].kind)
    target_kind = "int" if family.task == "classification" else "float"
    columns[family.target] = _typed(family.target, ordered[family.target], target_kind)
    return pd.DataFrame(columns)


def _tiebreak(raw: pd.DataFrame) -> list[str]:
    # Bookings at the same second keep a stable order whatever order the file had.
    return ["booking_id"] if "booking_id" in raw.columns else []


def _typed(name: str, values: pd.Series, kind: str) -> pd.Series:
    import pandas as pd

    series = pd.Series(values)
    try:
        return series.astype("int64" if kind == "int" else "float64")
    except (TypeError, ValueError) as exc:
        nulls = int(series.isna().sum())
        reason = f"{nulls} missing values" if nulls else f"values that are not numbers ({exc})"
        raise FeatureError(f"column '{name}' has {reason}; validate the raw data first") from exc
