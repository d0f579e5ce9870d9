"""Declared features, computed from raw columns with numpy and the standard library only.

This module is the one feature definition shared by the pipeline (training) and the serving
pod, so it imports nothing but numpy and the standard library (the ``[serving]`` install has
no pandas). Inputs are columnar: ``dict[str, np.ndarray]``, one array per raw column.

A :class:`FeatureSpec` lists the features of a family in model order. ``fit`` learns what a
feature needs from the training window (category vocabularies, bucket edges) and returns a
:class:`FittedSpec`; that is JSON (``to_dict``/``from_dict``), saved with the model version,
and ``transform`` turns raw columns into the float matrix the model reads.

Kinds (``FeatureDef.kind``):

- ``column``: the raw column as it is (int/bool columns as int, float as float).
- time, of the time column in the region's own time zone: ``hour``, ``hour_sin``, ``hour_cos``
  (cyclic hour, minutes included), ``day_of_week`` (Monday 0), ``is_weekend``, ``month`` (1-12),
  ``is_holiday`` (the region's holiday/festival calendar, local dates, both ends included).
- numeric: ``log1p``, ``clip`` (``lower``/``upper``), ``bucket`` (``edges`` declared, or
  ``buckets: n`` quantile edges learnt on the training window; value = number of edges <= x),
  ``compare`` (``op`` and ``value``: 1 when ``x <op> value`` holds, else 0).
- ``category``: the code of the value in the vocabulary learnt on the training window (sorted
  text values); a value never seen (or missing) gets the "unknown" code ``len(vocabulary)``
  and is counted in :attr:`Transformed.unknown`.
- ``function``: a user function named ``"package.module:name"``. Signature::

      def price_band(columns: Mapping[str, np.ndarray]) -> np.ndarray

  ``columns`` holds the feature's ``inputs`` (raw columns, each of the batch length); it
  returns one 1-D numeric or boolean array of that length (checked).
- window aggregates, ``window_count`` (rows per ``key`` per local ``every`` hour/day, divided by
  the mean over the keys when ``relative``) and ``window_mean`` (mean of ``column`` per key and
  time bucket): not computable from one row. The pipeline computes them over the data (with
  pandas) and passes them in as a column named like the feature; a server takes them from
  the request by that name (:attr:`FittedSpec.requested`).

Timestamps are ``datetime64`` (naive means UTC) or ISO-8601 text with an offset
(``2026-03-29T01:30:00+01:00`` or ``...Z``); text without an offset is refused.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import importlib
import math
import operator
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelyard.core.errors import ModelyardError

if TYPE_CHECKING:
    import numpy as np

Columns = Mapping[str, "np.ndarray"]

TIME_KINDS = ("hour", "hour_sin", "hour_cos", "day_of_week", "is_weekend", "month", "is_holiday")
NUMERIC_KINDS = ("log1p", "clip", "bucket", "compare")
WINDOW_KINDS = ("window_count", "window_mean")
KINDS = ("column", *TIME_KINDS, *NUMERIC_KINDS, "category", "function", *WINDOW_KINDS)
COLUMN_TYPES = ("float", "int", "bool", "category", "string", "timestamp")
NUMERIC_TYPES = ("float", "int", "bool")
INT_KINDS = frozenset({"hour", "day_of_week", "is_weekend", "month", "is_holiday", "bucket", "compare", "category"})
COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
WINDOW_EVERY = {"hour": 3600, "day": 86400}
FORMAT_VERSION = 1
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_NS = 1_000_000_000
SMALL_BATCH_ROWS = 16  # up to this many rows, time offsets are looked up row by row (cached)


class FeatureSpecError(ModelyardError, ValueError):
    """A feature cannot be declared or computed; the one-line message names family, feature and column."""


class UnknownTransformError(FeatureSpecError):
    """A feature names a kind this module does not have."""


class UndeclaredColumnError(FeatureSpecError):
    """A feature reads a column the dataset does not declare (or of the wrong type)."""


class UserFunctionError(FeatureSpecError):
    """A user function cannot be imported, or returned the wrong length or type."""


class MissingInputError(FeatureSpecError):
    """A raw column (or a window aggregate) the features need was not given."""


class TimeOffsetError(FeatureSpecError):
    """A time is not a timestamp, or is text without a UTC offset."""


@dataclass(frozen=True)
class Calendar:
    """What the time features need of a region: its name, IANA time zone and holiday periods."""

    region: str
    timezone: str
    holidays: tuple[tuple[dt.date, dt.date], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        holidays = [[start.isoformat(), end.isoformat()] for start, end in self.holidays]
        return {"region": self.region, "timezone": self.timezone, "holidays": holidays}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calendar:
        holidays = tuple((dt.date.fromisoformat(s), dt.date.fromisoformat(e)) for s, e in data.get("holidays", []))
        return cls(str(data["region"]), str(data["timezone"]), holidays)


@dataclass(frozen=True)
class FeatureDef:
    """One declared feature. Only the fields of its ``kind`` are used (see the module docstring)."""

    name: str
    kind: str = "column"
    column: str | None = None  # the input column; default: the name (column) or the time column (time kinds)
    inputs: tuple[str, ...] = ()  # function
    function: str | None = None  # function: "package.module:name"
    lower: float | None = None  # clip
    upper: float | None = None  # clip
    edges: tuple[float, ...] | None = None  # bucket, declared
    buckets: int | None = None  # bucket, learnt quantile edges
    op: str | None = None  # compare
    value: float | None = None  # compare
    key: str | None = None  # window: the column grouped by
    every: str = "hour"  # window: hour | day
    relative: bool = True  # window_count: divided by the mean count over keys and buckets
    dtype: str = "float"  # function: float | int

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, ())}
        if self.edges is not None:
            out["edges"] = list(self.edges)
        if self.inputs:
            out["inputs"] = list(self.inputs)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureDef:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FeatureSpecError(f"feature '{data.get('name')}': unknown keys {unknown} (allowed: {sorted(known)})")
        values = dict(data)
        if values.get("inputs") is not None:
            values["inputs"] = tuple(values["inputs"])
        if values.get("edges") is not None:
            values["edges"] = tuple(float(e) for e in values["edges"])
        return cls(**values)


@dataclass(frozen=True)
class FeatureSpec:
    """The features of one family, in model order, over a dataset's declared columns.

    Args:
        family: The family's name (for messages).
        time_column: The dataset's time column.
        columns: Every raw column the dataset declares, name -> type (see :data:`COLUMN_TYPES`).
        features: The features in the order the model reads them.
    """

    family: str
    time_column: str
    columns: Mapping[str, str]
    features: tuple[FeatureDef, ...]

    def __post_init__(self) -> None:
        for feature in self.features:
            self._check(feature)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def inputs_of(self, feature: FeatureDef) -> list[str]:
        """The raw columns ``feature`` reads (window aggregates: the columns the pipeline groups)."""
        if feature.kind in TIME_KINDS:
            return [self.time_column]
        if feature.kind == "function":
            return list(feature.inputs)
        if feature.kind == "window_count":
            return [self.time_column, _need(self, feature, feature.key, "key")]
        if feature.kind == "window_mean":
            return [self.time_column, _need(self, feature, feature.key, "key"), feature.column or ""]
        return [feature.column or feature.name]

    def dtype_of(self, feature: FeatureDef) -> str:
        """``int`` or ``float``: the dtype :meth:`FittedSpec.compute` gives ``feature``."""
        if feature.kind in INT_KINDS:
            return "int"
        if feature.kind == "column":
            return "int" if self.columns.get(feature.column or feature.name) in ("int", "bool") else "float"
        return feature.dtype if feature.kind == "function" else "float"

    @property
    def raw_inputs(self) -> list[str]:
        """Every raw column a row needs for the row-computable features, in first-use order."""
        return list(self._raw_inputs)

    @functools.cached_property
    def _raw_inputs(self) -> tuple[str, ...]:
        # Asked on every request a server featurises: the declaration is frozen, so work it out once.
        names: list[str] = []
        for feature in self.features:
            if feature.kind not in WINDOW_KINDS:
                names.extend(self.inputs_of(feature))
        return tuple(dict.fromkeys(names))

    def fit(self, columns: Columns, calendar: Calendar) -> FittedSpec:
        """Learn vocabularies and bucket edges on the training window ``columns``.

        Raises:
            MissingInputError: a column a learnt feature reads is not in ``columns``.
        """
        vocabularies: dict[str, tuple[str, ...]] = {}
        edges: dict[str, tuple[float, ...]] = {}
        for feature in self.features:
            if feature.kind == "category":
                values = _text(_column(self, feature, columns, feature.column or feature.name))
                vocabularies[feature.name] = tuple(sorted({v for v in values.tolist() if v is not None}))
            elif feature.kind == "bucket":
                edges[feature.name] = feature.edges or _quantile_edges(self, feature, columns)
        return FittedSpec(self, calendar, vocabularies, edges)

    def check_functions(self) -> None:
        """Import every user function now, so a bad path fails before any data is read.

        Raises:
            UserFunctionError: the module or the name cannot be imported.
        """
        for feature in self.features:
            if feature.kind == "function":
                _user_function(self, feature)

    def _check(self, feature: FeatureDef) -> None:
        where = f"family '{self.family}', feature '{feature.name}'"
        if feature.kind not in KINDS:
            raise UnknownTransformError(
                f"{where}: unknown kind '{feature.kind}' (known: {', '.join(KINDS)}); fix the feature's kind"
            )
        for name in self.inputs_of(feature):
            if name not in self.columns:
                raise UndeclaredColumnError(
                    f"{where} reads column '{name}', which the dataset does not declare "
                    f"(declared: {', '.join(self.columns)}); declare it under the dataset's columns"
                )
        _check_kind_fields(self, feature, where)


def _check_kind_fields(spec: FeatureSpec, feature: FeatureDef, where: str) -> None:
    kind = feature.kind
    column_type = spec.columns.get(feature.column or feature.name)
    if kind in ("column", *NUMERIC_KINDS) and column_type not in NUMERIC_TYPES:
        raise UndeclaredColumnError(
            f"{where}: column '{feature.column or feature.name}' is of type {column_type}, {kind} needs a number "
            "(use kind category for text)"
        )
    if kind == "window_mean" and spec.columns.get(feature.column or "") not in NUMERIC_TYPES:
        raise UndeclaredColumnError(f"{where}: window_mean needs a numeric 'column' to average")
    if kind in WINDOW_KINDS and feature.every not in WINDOW_EVERY:
        raise FeatureSpecError(f"{where}: every '{feature.every}' is not one of {', '.join(WINDOW_EVERY)}")
    if kind == "compare" and (feature.op not in COMPARISONS or feature.value is None):
        raise FeatureSpecError(f"{where}: compare needs 'op' (one of {' '.join(COMPARISONS)}) and 'value'")
    if kind == "clip" and feature.lower is None and feature.upper is None:
        raise FeatureSpecError(f"{where}: clip needs 'lower' and/or 'upper'")
    if kind == "bucket" and not feature.edges and not (feature.buckets and feature.buckets >= 2):
        raise FeatureSpecError(f"{where}: bucket needs 'edges' (increasing) or 'buckets' (>= 2, learnt)")
    if kind == "bucket" and feature.edges and list(feature.edges) != sorted(set(feature.edges)):
        raise FeatureSpecError(f"{where}: bucket 'edges' must be strictly increasing")
    if kind == "function" and (not feature.function or ":" not in feature.function or not feature.inputs):
        raise FeatureSpecError(f"{where}: function needs 'function: package.module:name' and 'inputs: [columns]'")
    if kind == "function" and feature.dtype not in ("float", "int"):
        raise FeatureSpecError(f"{where}: dtype must be float or int")


def _need(spec: FeatureSpec, feature: FeatureDef, value: str | None, key: str) -> str:
    if not value:
        raise FeatureSpecError(f"family '{spec.family}', feature '{feature.name}': {feature.kind} needs '{key}'")
    return value


@dataclass(frozen=True)
class Transformed:
    """The model matrix of a batch and what was counted on the way (unknown categories per feature)."""

    matrix: np.ndarray
    unknown: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class FittedSpec:
    """A :class:`FeatureSpec` with what it learnt, for one region's calendar. JSON via ``to_dict``."""

    spec: FeatureSpec
    calendar: Calendar
    vocabularies: Mapping[str, tuple[str, ...]]
    edges: Mapping[str, tuple[float, ...]]

    @property
    def names(self) -> list[str]:
        """The feature names, in the order of the matrix's columns."""
        return self.spec.names

    @property
    def raw_inputs(self) -> list[str]:
        """The raw columns a client sends (the time column as ISO-8601 with an offset)."""
        return self.spec.raw_inputs

    @property
    def requested(self) -> list[str]:
        """Window aggregates: a server takes them from the request by these names."""
        return [f.name for f in self.spec.features if f.kind in WINDOW_KINDS]

    def compute(
        self, columns: Columns, calendar: Calendar | None = None, unknown: dict[str, int] | None = None
    ) -> dict[str, np.ndarray]:
        """Every feature as its own typed array (int64 or float64), keyed by name, in order.

        ``unknown``, when given, receives the count of unknown categories per feature.
        """

        return self._compute(columns, calendar, {} if unknown is None else unknown)

    def transform(self, columns: Columns, calendar: Calendar | None = None) -> np.ndarray:
        """The float64 matrix (rows x features, declared order) of raw ``columns``.

        Args:
            columns: Raw columns (and window aggregates by feature name), all of one length.
            calendar: The region's calendar; default: the one the spec was fitted for.

        Raises:
            FeatureSpecError: a subclass naming family, feature and column (see this module).
        """

        return self.transform_counted(columns, calendar).matrix

    def transform_counted(self, columns: Columns, calendar: Calendar | None = None) -> Transformed:
        """Like :meth:`transform`, and count the unknown categories per feature."""
        import numpy as np

        unknown: dict[str, int] = {}
        computed = self._compute(columns, calendar, unknown)
        rows = _length(self.spec, columns)
        matrix = np.empty((rows, len(computed)), dtype=np.float64)
        for index, values in enumerate(computed.values()):
            matrix[:, index] = values
        return Transformed(matrix, unknown)

    def _compute(self, columns: Columns, calendar: Calendar | None, unknown: dict[str, int]) -> dict[str, np.ndarray]:

        calendar = calendar or self.calendar
        times = _LocalTimes(self.spec, columns, calendar)
        return {f.name: self._feature(f, columns, times, unknown) for f in self.spec.features}

    def _feature(self, feature: FeatureDef, columns: Columns, times: _LocalTimes, unknown: dict[str, int]) -> Any:
        spec, kind = self.spec, feature.kind
        if kind in TIME_KINDS:
            return times.feature(feature)
        if kind in WINDOW_KINDS:
            return _numbers(spec, feature, _column(spec, feature, columns, feature.name, requested=True), "float")
        if kind == "function":
            return _call_user_function(spec, feature, columns)
        if kind == "category":
            return self._codes(feature, columns, unknown)
        column_type = spec.columns[feature.column or feature.name]
        values = _numbers(spec, feature, _column(spec, feature, columns, feature.column or feature.name), column_type)
        return _numeric(feature, values, self.edges.get(feature.name, ()))

    def _codes(self, feature: FeatureDef, columns: Columns, unknown: dict[str, int]) -> np.ndarray:
        import numpy as np

        vocabulary = self.vocabularies[feature.name]
        lookup = {value: code for code, value in enumerate(vocabulary)}
        values = _text(_column(self.spec, feature, columns, feature.column or feature.name))
        codes = np.fromiter((lookup.get(v, len(vocabulary)) for v in values.tolist()), np.int64, len(values))
        missed = int((codes == len(vocabulary)).sum())
        if missed:
            unknown[feature.name] = unknown.get(feature.name, 0) + missed
        return codes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the declaration, the calendar and what was learnt."""
        return {
            "format": FORMAT_VERSION,
            "family": self.spec.family,
            "time_column": self.spec.time_column,
            "columns": dict(self.spec.columns),
            "features": [f.to_dict() for f in self.spec.features],
            "calendar": self.calendar.to_dict(),
            "vocabularies": {k: list(v) for k, v in self.vocabularies.items()},
            "edges": {k: list(v) for k, v in self.edges.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FittedSpec:
        """The inverse of :meth:`to_dict`.

        Raises:
            FeatureSpecError: an unknown format version or an invalid declaration.
        """
        if data.get("format") != FORMAT_VERSION:
            raise FeatureSpecError(f"feature spec format {data.get('format')!r} is not {FORMAT_VERSION}; retrain")
        spec = FeatureSpec(
            family=str(data["family"]),
            time_column=str(data["time_column"]),
            columns=dict(data["columns"]),
            features=tuple(FeatureDef.from_dict(f) for f in data["features"]),
        )
        vocabularies = {k: tuple(str(v) for v in values) for k, values in data.get("vocabularies", {}).items()}
        edges = {k: tuple(float(v) for v in values) for k, values in data.get("edges", {}).items()}
        return cls(spec, Calendar.from_dict(data["calendar"]), vocabularies, edges)

    def columns_from_records(self, records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """Columnar raw inputs from JSON-like rows (what a server receives), typed by the declaration.

        Raises:
            MissingInputError: a row lacks a raw column or a requested window aggregate.
        """
        import numpy as np

        out: dict[str, np.ndarray] = {}
        for name in [*self.raw_inputs, *self.requested]:
            try:
                values = [record[name] for record in records]
            except KeyError:
                raise MissingInputError(
                    f"family '{self.spec.family}': a row has no field '{name}' (send: "
                    f"{', '.join([*self.raw_inputs, *self.requested])})"
                ) from None
            kind = self.spec.columns.get(name, "float")
            out[name] = np.array(values, dtype=object if kind in ("category", "string", "timestamp") else np.float64)
        return out


# --- time -------------------------------------------------------------------------------


class _LocalTimes:
    """Local wall-clock seconds of the time column in the calendar's zone, computed once per batch.

    The hour, the minute and the day number every time feature derives from are computed once
    per batch too, whatever the number of time features.
    """

    def __init__(self, spec: FeatureSpec, columns: Columns, calendar: Calendar) -> None:

        self._spec, self._columns, self._calendar = spec, columns, calendar
        self._local: np.ndarray | None = None
        self._parts: dict[str, np.ndarray] = {}

    def seconds(self, feature: FeatureDef) -> np.ndarray:

        if self._local is None:
            column = self._spec.time_column
            utc_ns = epoch_ns(
                _column(self._spec, feature, self._columns, column), self._spec.family, feature.name, column
            )
            self._local = local_seconds(utc_ns, self._calendar.timezone)
        return self._local

    def _part(self, feature: FeatureDef, name: str) -> np.ndarray:
        part = self._parts.get(name)
        if part is None:
            local = self.seconds(feature)
            if name == "hour":
                part = (local // 3600) % 24
            elif name == "minute":
                part = (local // 60) % 60
            elif name == "day":
                part = local // 86400
            else:  # weekday: 1970-01-01 was a Thursday; Monday is 0
                part = (self._part(feature, "day") + 3) % 7
            self._parts[name] = part
        return part

    def feature(self, feature: FeatureDef) -> np.ndarray:
        import numpy as np

        kind = feature.kind
        if kind == "hour":
            return self._part(feature, "hour")
        if kind in ("hour_sin", "hour_cos"):
            hours = self._part(feature, "hour") + self._part(feature, "minute") / 60.0
            angle = hours * (2 * math.pi / 24)
            return np.sin(angle) if kind == "hour_sin" else np.cos(angle)
        if kind == "day_of_week":
            return self._part(feature, "weekday")
        if kind == "is_weekend":
            return (self._part(feature, "weekday") >= 5).astype(np.int64)
        days = self._part(feature, "day")
        if kind == "month":
            return days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12 + 1
        return _in_holidays(days, self._calendar)


def _in_holidays(days: np.ndarray, calendar: Calendar) -> np.ndarray:
    import numpy as np

    starts, ends = _holiday_days(calendar.holidays)
    if not len(starts):
        return np.zeros(days.shape, dtype=np.int64)
    inside: np.ndarray = (days[:, None] >= starts) & (days[:, None] <= ends)
    return np.asarray(inside.any(axis=1), dtype=np.int64)


@functools.lru_cache(maxsize=256)
def _holiday_days(holidays: tuple[tuple[dt.date, dt.date], ...]) -> tuple[np.ndarray, np.ndarray]:
    """First and last day numbers (days since the epoch) of each holiday period, per calendar."""
    import numpy as np

    starts = np.array([start.toordinal() - _EPOCH_ORDINAL for start, _ in holidays], dtype=np.int64)
    ends = np.array([end.toordinal() - _EPOCH_ORDINAL for _, end in holidays], dtype=np.int64)
    return starts, ends


def epoch_ns(values: np.ndarray, family: str, feature: str, column: str) -> np.ndarray:
    """UTC nanoseconds since the epoch of ``datetime64`` values (naive: UTC) or offset ISO-8601 text.

    Raises:
        TimeOffsetError: a value is not a timestamp, or is text without an offset.
    """
    import numpy as np

    array = np.asarray(values)
    if array.dtype.kind == "M":
        return array.astype("datetime64[ns]").astype(np.int64)
    out = np.empty(len(array), dtype=np.int64)
    for index, value in enumerate(array.tolist()):
        out[index] = _one_epoch_ns(value, family, feature, column)
    return out


def _one_epoch_ns(value: Any, family: str, feature: str, column: str) -> int:
    where = f"family '{family}', feature '{feature}': column '{column}'"
    if isinstance(value, dt.datetime):
        moment = value
    else:
        try:
            moment = dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise TimeOffsetError(
                f"{where}: {value!r} is not a timestamp; send ISO-8601 with an offset, e.g. 2026-01-05T08:30:00+07:00"
            ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise TimeOffsetError(
            f"{where}: {value!r} has no UTC offset, so its local time is unknown; add one (+07:00 or Z)"
        )
    return ((moment - _EPOCH) // dt.timedelta(microseconds=1)) * 1000


def local_seconds(utc_ns: np.ndarray, timezone: str) -> np.ndarray:
    """Local wall-clock seconds since the epoch in ``timezone`` (one zone lookup per distinct minute).

    Offsets are the zone's at each whole UTC minute (every tzdb transition since 1970 is on one),
    remembered per (zone, minute), so a server asks the zone once per minute of traffic.
    """
    import numpy as np

    seconds = utc_ns // _NS
    minutes = seconds // 60
    if len(minutes) <= SMALL_BATCH_ROWS:
        # np.unique costs more than it saves on a few rows.
        offsets = [_minute_offset(timezone, minute) for minute in minutes.tolist()]
        return seconds + np.array(offsets, dtype=np.int64)
    unique, inverse = np.unique(minutes, return_inverse=True)
    offsets_of = np.fromiter((_minute_offset(timezone, m) for m in unique.tolist()), np.int64, len(unique))
    return seconds + offsets_of[inverse.reshape(-1)]


@functools.lru_cache(maxsize=1 << 16)
def _minute_offset(timezone: str, minute: int) -> int:
    """The UTC offset in seconds of ``timezone`` at ``minute`` (minutes since the epoch)."""
    return _offset_seconds(minute * 60, _zone(timezone))


@functools.cache
def _zone(timezone: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(timezone)


def _offset_seconds(epoch_seconds: int, zone: zoneinfo.ZoneInfo) -> int:
    offset = dt.datetime.fromtimestamp(epoch_seconds, tz=zone).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


# --- numbers, categories, functions --------------------------------------------------------


def _numeric(feature: FeatureDef, values: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    import numpy as np

    kind = feature.kind
    if kind == "column":
        return values
    if kind == "log1p":
        return np.log1p(values.astype(np.float64))
    if kind == "clip":
        low = -np.inf if feature.lower is None else feature.lower
        high = np.inf if feature.upper is None else feature.upper
        return np.clip(values.astype(np.float64), low, high)
    if kind == "bucket":
        return np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right").astype(np.int64)
    compare = COMPARISONS[str(feature.op)]
    return np.asarray(compare(values, feature.value), dtype=np.int64)


def _quantile_edges(spec: FeatureSpec, feature: FeatureDef, columns: Columns) -> tuple[float, ...]:
    import numpy as np

    name = feature.column or feature.name
    values = _numbers(spec, feature, _column(spec, feature, columns, name), spec.columns[name]).astype(np.float64)
    values = values[~np.isnan(values)]
    if not len(values):
        raise FeatureSpecError(
            f"family '{spec.family}', feature '{feature.name}': column '{name}' has no values to learn bucket edges on"
        )
    quantiles = np.quantile(values, np.linspace(0, 1, int(feature.buckets or 2) + 1)[1:-1])
    return tuple(float(q) for q in np.unique(quantiles))


def _user_function(spec: FeatureSpec, feature: FeatureDef) -> Callable[[Columns], Any]:
    module_name, _, attribute = str(feature.function).partition(":")
    where = f"family '{spec.family}', feature '{feature.name}'"
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise UserFunctionError(
            f"{where}: cannot import '{feature.function}' ({exc}); install the module or fix the dotted path"
        ) from exc
    if not callable(function):
        raise UserFunctionError(f"{where}: '{feature.function}' is not a function")
    return function


def _call_user_function(spec: FeatureSpec, feature: FeatureDef, columns: Columns) -> np.ndarray:
    import numpy as np

    inputs = {name: _column(spec, feature, columns, name) for name in feature.inputs}
    rows = _length(spec, columns)
    result = np.asarray(_user_function(spec, feature)(inputs))
    where = f"family '{spec.family}', feature '{feature.name}': '{feature.function}'"
    if result.ndim != 1 or len(result) != rows:
        raise UserFunctionError(
            f"{where} returned shape {result.shape} for {rows} rows; return one value per row (a 1-D array)"
        )
    if result.dtype.kind not in "biuf":
        raise UserFunctionError(f"{where} returned {result.dtype} values; return numbers or booleans")
    return result.astype(np.int64 if feature.dtype == "int" else np.float64)


def _column(
    spec: FeatureSpec, feature: FeatureDef, columns: Columns, name: str, *, requested: bool = False
) -> np.ndarray:
    import numpy as np

    try:
        return np.asarray(columns[name])
    except KeyError:
        what = "a window aggregate: send it in the request" if requested else "a raw column: send it"
        raise MissingInputError(
            f"family '{spec.family}', feature '{feature.name}': column '{name}' is missing ({what} as '{name}')"
        ) from None


def _numbers(spec: FeatureSpec, feature: FeatureDef, values: np.ndarray, column_type: str) -> np.ndarray:
    import numpy as np

    try:
        if column_type in ("int", "bool"):
            return values.astype(np.int64)
        return values.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise FeatureSpecError(
            f"family '{spec.family}', feature '{feature.name}': column '{feature.column or feature.name}' "
            f"has values that are not numbers ({exc}); send a number for every row"
        ) from exc


def _text(values: np.ndarray) -> np.ndarray:
    """Category values as text (``7`` and ``"7"`` are the same category); missing ones as None."""
    import numpy as np

    out = np.empty(len(values), dtype=object)
    for index, value in enumerate(values.tolist()):
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        out[index] = None if missing else _category_text(value)
    return out


def _category_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _length(spec: FeatureSpec, columns: Columns) -> int:
    import numpy as np

    lengths = {len(np.asarray(v)) for v in columns.values()}
    if len(lengths) > 1:
        raise FeatureSpecError(f"family '{spec.family}': columns of different lengths {sorted(lengths)}")
    return lengths.pop() if lengths else 0
