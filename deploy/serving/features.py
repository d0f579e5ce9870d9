"""Raw fields to the model matrix with the version's fitted feature spec (ADR 0007).

A model version trained on a declared dataset ships ``feature_spec.json``; with it the server
computes the features from what a client sends (the raw columns, the event time as ISO-8601
with an offset, and the window aggregates by name) with the same numpy code the pipeline ran
(``modelyard.core.featurespec``). Requests with the precomputed feature names keep working.

A batch is featurised columnar in one call; it is either all raw records or all precomputed
ones (a record is raw when it carries a raw field that is not a feature name).

Raw values are checked against the declared column types first, like the precomputed path
checks feature values (:func:`check_raw_values`): a number where the column is a number
(finite, within float32 for a float, a whole number within int64 for an int; ``true`` and
``"12"`` are not numbers), ``true``/``false``/0/1 for a bool, text with an offset for the time
column, a scalar for a category; ``null`` only for a category (the unknown code). Each
refusal is a 422 naming ``records[i].field``. The time column is parsed once, by the
featuriser, when a time feature reads it: only a featurising that fails checks it, so a bad
time gets the same answer, after any other field's refusal.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Collection, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from modelyard.core.featurespec import (
    TIME_KINDS,
    Calendar,
    FeatureSpecError,
    FittedSpec,
    MissingInputError,
    Transformed,
)
from modelyard.core.featurespec.rows import RowPlan
from modelyard.core.featurespec.spec import Bounds
from modelyard.deploy.serving.errors import BadInput
from modelyard.deploy.serving.schema import shown

if TYPE_CHECKING:
    import numpy as np


class MatrixSchema(Protocol):
    """The precomputed path: validates feature records into the matrix (``runtime.InputSchema``)."""

    def to_matrix(self, records: list[Any]) -> np.ndarray: ...


class BadRawInput(BadInput):
    """Raw fields the feature spec cannot compute from (missing field, bad time, wrong type)."""

    status = 400
    code = "bad_raw_input"


class BadRawValue(BadInput):
    """A raw field's value does not fit its declared column type (422, ``field`` names record and field)."""

    code = "bad_raw_value"


_FLOAT32_MAX = 3.4028234663852886e38
_INT64_LIMIT = 2.0**63
_TIMESTAMP_YEARS = (1678, 2261)  # what int64 nanoseconds since the epoch hold
COLUMNAR_ROWS = 32  # past this many records, a number or category field is first checked as a whole column
_COLUMN_TYPES = {  # what fits without a closer look
    "float": frozenset({float, int}), "int": frozenset({int}),
    "category": frozenset({str, type(None), int, float}), "string": frozenset({str, type(None), int, float}),
}  # fmt: skip


RawField = tuple[str, str, "Bounds | None"]  # a field a raw record may carry: name, declared type, bounds


def raw_fields(fitted: FittedSpec) -> list[RawField]:
    """The fields :func:`check_raw_values` checks: the raw inputs by declared type, window aggregates as floats."""
    columns, bounds = fitted.spec.columns, fitted.spec.bounds
    kinds = [(name, columns.get(name, "float")) for name in fitted.raw_inputs]
    kinds += [(name, "float") for name in fitted.requested]
    return [(name, kind, bounds.get(name) if kind in ("int", "float") else None) for name, kind in kinds]


def check_raw_values(
    fitted: FittedSpec, records: list[Any], fields: list[RawField] | None = None, calendar: Calendar | None = None
) -> dict[str, int]:
    """Refuse a raw value that does not fit its declared column (see the module's docstring).

    Window aggregates (requested by name) are floats. A field a record lacks is left to the
    featuriser, which names it. A number outside its column's declared ``min``/``max`` is refused,
    or clipped to the bound in the record when the column says ``out_of_range: clip``.

    Args:
        fitted: The version's spec.
        records: The request's records.
        fields: :func:`raw_fields` of ``fitted``, worked out once by the caller (default: now).
        calendar: The request's region's (a pooled model serving a region, ADR 0015): a time without an
            offset is answered with that region's offset. Default: the version's own.

    Returns:
        How many values were clipped, per field.

    Raises:
        BadRawValue: the first value that does not fit, naming ``records[i].field``.
    """
    fields = raw_fields(fitted) if fields is None else fields
    calendar = calendar or fitted.calendar
    if len(records) > COLUMNAR_ROWS:  # fields that fit as a whole column skip the row loop
        fields = [field for field in fields if not _column_fits(records, field)]
    clipped: dict[str, int] = {}
    for index, record in enumerate(records):
        for name, kind, bounds in fields:
            if name not in record:
                continue
            value = record[name]
            # An ordinary float in a float column fits (NaN and inf fail the comparison): no call.
            if not (kind == "float" and type(value) is float and -_FLOAT32_MAX <= value <= _FLOAT32_MAX):
                _check_value(fitted, value, kind, name, index, calendar)
            if bounds is not None and _outside(record, name, bounds, fitted, index):
                clipped[name] = clipped.get(name, 0) + 1
    return clipped


def _column_fits(records: list[Any], field: RawField) -> bool:
    """Whether every record's value of ``field`` fits (within its bounds): what the row loop would find.

    False (the row loop then names or clips) at the first doubt: a record without it, a value of another
    type (a whole float in an int column, a bool), a non-finite float, a value past its range or bounds.
    """
    name, kind, bounds = field
    accepted = _COLUMN_TYPES.get(kind)
    if accepted is None:
        return False
    try:
        values = [record[name] for record in records]
        if not set(map(type, values)) <= accepted or (kind == "float" and not all(map(math.isfinite, values))):
            return False
        if kind not in ("float", "int"):  # a category takes text, null, an int and a finite float
            return all(math.isfinite(value) for value in values if type(value) is float)
        low, high = min(values), max(values)
    except (KeyError, TypeError, OverflowError):
        return False
    limit = _FLOAT32_MAX if kind == "float" else _INT64_LIMIT
    if not (-limit <= low and (high <= limit if kind == "float" else high < limit)):
        return False
    if bounds is None:
        return True
    declared_low, declared_high, _ = bounds
    return (declared_low is None or low >= declared_low) and (declared_high is None or high <= declared_high)


def _check_value(fitted: FittedSpec, value: Any, kind: str, name: str, index: int, calendar: Calendar) -> None:
    """Raise the 422 (or, for a time without an offset, the 400) naming ``records[index].name`` if ``value`` misfits."""
    where = f"records[{index}].{name}"
    if kind == "timestamp":
        problem, wall = _time_problem(value, calendar)
    else:
        problem, wall = _misfit(value, kind), None
    if problem is not None:
        raise BadRawValue(f"family '{fitted.spec.family}': field '{name}' is {shown(value)}: {problem}", field=where)
    if wall is not None:
        hint = _naive_hint(wall, calendar)
        raise BadRawInput(f"family '{fitted.spec.family}': field '{name}' is {shown(value)}: {hint}", field=where)


def _outside(record: Any, name: str, bounds: Bounds, fitted: FittedSpec, index: int) -> bool:
    """Whether the value was outside its declared bounds and clipped (refused: raises BadRawValue)."""
    low, high, policy = bounds
    value = record[name]
    if (low is None or value >= low) and (high is None or value <= high):
        return False
    if policy != "clip":
        declared = f"[{_bound(low)}, {_bound(high)}]"
        raise BadRawValue(
            f"family '{fitted.spec.family}': field '{name}' is {shown(value)}: outside its declared range "
            f"{declared}; send a value within it (the model never saw one outside)",
            field=f"records[{index}].{name}",
        )
    record[name] = min(max(value, low if low is not None else value), high if high is not None else value)
    return True


def _bound(value: float | None) -> str:
    if value is None:
        return "-inf"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _misfit(value: Any, kind: str) -> str | None:
    """Why ``value`` does not fit a column of type ``kind`` other than the time column (None: it fits)."""
    if kind in ("category", "string"):
        ok = (
            value is None
            or isinstance(value, str)
            or type(value) is int
            or (type(value) is float and math.isfinite(value))
        )
        return None if ok else "send text or a number (or null) for a category"
    if value is None:
        return f"this {kind} field is not nullable; send a number"
    if kind == "bool":
        return None if type(value) in (bool, int, float) and value in (0, 1) else "send true or false (or 1 or 0)"
    if type(value) not in (int, float):
        return f"send a JSON number for this {kind} field"
    if type(value) is float and not math.isfinite(value):  # an int is finite (and may be too large for a float)
        return "send a finite number"
    if kind == "int":
        whole = type(value) is int or value.is_integer()
        return None if whole and -_INT64_LIMIT <= value < _INT64_LIMIT else "send a whole number within int64"
    return None if abs(value) <= _FLOAT32_MAX else "out of the model's float range (|x| <= 3.4e38)"


def _time_problem(value: Any, calendar: Calendar) -> tuple[str | None, dt.datetime | None]:
    """Why a time value does not fit (None: it fits), and its wall time when it is text without an offset."""
    example = dt.datetime(2026, 6, 1, 8)
    if not isinstance(value, str):
        return f"send the time as ISO-8601 text with an offset, e.g. {_with_offset(example, calendar)}", None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:  # what the featuriser parses with (core.featurespec.times)
        return f"not an ISO-8601 time; send it with an offset, e.g. {_with_offset(example, calendar)}", None
    try:
        year = moment.astimezone(dt.UTC).year if moment.tzinfo is not None else moment.year
    except OverflowError:
        year = 0
    low, high = _TIMESTAMP_YEARS
    if not low <= year <= high:
        return f"send a time between the years {low} and {high}", None
    return None, (moment if moment.tzinfo is None else None)


def _naive_hint(wall: dt.datetime, calendar: Calendar) -> str:
    """'no UTC offset, ...; send 2026-06-01T08:00:00+07:00 (the offset of region ...) or the UTC time with Z'."""
    return (
        f"no UTC offset, so its local time is unknown; send {_with_offset(wall, calendar)} "
        f"(the offset of region '{calendar.region}', {calendar.timezone}, at that time) "
        "or the UTC time with Z"
    )


def _with_offset(wall: dt.datetime, calendar: Calendar) -> str:
    """The wall time ``wall`` written with the offset it has in ``calendar``'s zone, e.g. 2026-06-01T08:00:00+07:00."""
    import zoneinfo

    try:
        return wall.replace(tzinfo=zoneinfo.ZoneInfo(calendar.timezone)).isoformat()
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OverflowError):
        return wall.isoformat() + "+HH:MM"  # a zone this host does not know: the format is still the hint


ROW_PATH_ROWS = 12  # up to this many records a request is featurised row by row (RowPlan), past it as a batch
NO_COUNTS: Mapping[str, int] = MappingProxyType({})  # a precomputed-feature request counts nothing (shared, read-only)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A request's model matrix and the unknown categories met on the way (per feature)."""

    matrix: np.ndarray
    unknown: Mapping[str, int] = dataclasses.field(default_factory=dict)
    clipped: Mapping[str, int] = dataclasses.field(default_factory=dict)  # raw values clipped to their bounds


def read_spec(path: Path, allowed_function_modules: Collection[str]) -> FittedSpec:
    """The fitted spec stored at ``path`` (``feature_spec.json``); its functions only from ``allowed_function_modules``.

    Raises:
        FunctionNotAllowedError: a ``function`` feature names a module not in the list (nothing imported).
        FeatureSpecError: the file is not a spec this code reads (retrain the version).
    """
    try:
        return FittedSpec.from_dict(json.loads(path.read_text()), allowed_function_modules=allowed_function_modules)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, FeatureSpecError):
            raise
        raise FeatureSpecError(f"{path.name}: not a readable feature spec ({type(exc).__name__}); retrain") from exc


class RawFeatures:
    """Turns raw records (or precomputed feature records) into the model matrix."""

    def __init__(self, fitted: FittedSpec, features: MatrixSchema) -> None:
        self.fitted = fitted
        self.features = features  # the precomputed path: the model's feature columns, validated
        self._raw_only = [name for name in fitted.raw_inputs if name not in set(fitted.names)]
        sent = {*fitted.raw_inputs, *fitted.requested}
        self._derived_only = [name for name in fitted.names if name not in sent]
        self._rows = RowPlan.of(fitted)  # small requests: scalars, the batch's values (ADR 0031)
        # The time column is parsed once, by the featuriser, when a time feature reads every record's
        # time; only a featurising that fails checks it here, to name a bad one as the check does.
        fields = raw_fields(fitted)
        timed = any(feature.kind in TIME_KINDS for feature in fitted.spec.features)
        deferred = [field for field in fields if timed and field[0] == fitted.spec.time_column]
        self._fields = [field for field in fields if field not in deferred]
        self._times = deferred

    def describe(self) -> dict[str, Any]:
        """What a client sends (for ``/readyz``)."""
        return {
            "raw_inputs": self.fitted.raw_inputs,
            "requested": self.fitted.requested,
            "time_column": self.fitted.spec.time_column,
            "timezone": self.fitted.calendar.timezone,
            "or_features": list(self.fitted.names),
        }

    def prepare(self, records: list[Any], calendar: Calendar | None = None) -> Prepared:
        """The float32 matrix of ``records``, raw or precomputed.

        ``calendar``: the request's region's, when the version was fitted for another region's (a
        pooled model serving a region, ADR 0015); default: the version's own.

        Raises:
            BadRawInput: a raw record lacks a field or a value cannot be computed from (400).
            BadInput: a precomputed record does not match the feature columns (422).
        """
        _require_objects(records)
        raw = [self._is_raw(record) for record in records]
        if not any(raw):
            return Prepared(self._precomputed(records))
        if not all(raw):
            index = raw.index(False)
            raise BadRawInput(
                f"record {index} has no raw field ({', '.join(self._raw_only)}) while record {raw.index(True)} "
                "has: send every record of a request as raw fields or every one as precomputed features",
                field=f"records[{index}]",
            )
        return self._featurise(records, calendar)

    def _is_raw(self, record: Mapping[str, Any]) -> bool:
        """Raw unless it carries a derived feature and no raw-only field.

        A record with neither (one that lacks its event time, say) is raw, so the answer names
        the raw field to send, never a derived feature the client does not compute.
        """
        if not self._raw_only or any(name in record for name in self._raw_only):
            return True
        return not any(name in record for name in self._derived_only)

    def _precomputed(self, records: list[Any]) -> np.ndarray:
        try:
            return self.features.to_matrix(records)
        except BadInput as exc:
            if exc.field is None or "is missing" not in exc.message:
                raise
            hint = f"; or send the raw fields {', '.join(self._sent_fields())} instead of the features"
            raise BadInput(exc.message + hint, field=exc.field) from None

    def _featurise(self, records: list[Any], calendar: Calendar | None = None) -> Prepared:
        import numpy as np

        clipped = check_raw_values(self.fitted, records, self._fields, calendar)
        if self._rows is not None and len(records) <= ROW_PATH_ROWS:
            done = self._rows.transform_counted(records, calendar)
            if done is not None:
                return Prepared(done.matrix.astype(np.float32), done.unknown, clipped)
        try:
            transformed = self._batch(records, calendar)
        except BadInput:
            check_raw_values(self.fitted, records, self._times, calendar)  # a bad time: named as the check names it
            raise
        return Prepared(transformed.matrix.astype(np.float32), transformed.unknown, clipped)

    def _batch(self, records: list[Any], calendar: Calendar | None) -> Transformed:
        """The batch path: the records' columns through ``fitted.transform_counted``."""
        try:
            columns = self.fitted.columns_from_records(records)
        except MissingInputError as exc:
            raise BadRawInput(str(exc), field=_missing_field(records, self._sent_fields())) from None
        except (TypeError, ValueError) as exc:
            raise _bad_value(self.fitted, records, exc) from None
        try:
            transformed = self.fitted.transform_counted(columns, calendar)
        except FeatureSpecError as exc:
            raise BadRawInput(str(exc), field="records") from None
        except (TypeError, ValueError) as exc:
            raise _bad_value(self.fitted, records, exc) from None
        return transformed

    def _sent_fields(self) -> list[str]:
        return [*self.fitted.raw_inputs, *self.fitted.requested]


def _require_objects(records: list[Any]) -> None:
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise BadInput(
                f"record {index} is {type(record).__name__}: each record must be a JSON object of field -> value",
                field=f"records[{index}]",
            )


def _missing_field(records: list[Any], names: list[str]) -> str:
    for index, record in enumerate(records):
        for name in names:
            if name not in record:
                return f"records[{index}].{name}"
    return "records"


def _bad_value(fitted: FittedSpec, records: list[Any], exc: Exception) -> BadRawInput:
    """Name the first raw field whose values do not convert (only on the error path: row by row)."""
    import numpy as np

    for name in [*fitted.raw_inputs, *fitted.requested]:
        if fitted.spec.columns.get(name, "float") in ("category", "string", "timestamp"):
            continue
        for index, record in enumerate(records):
            try:
                np.float64(record[name])
            except (TypeError, ValueError):
                return BadRawInput(
                    f"family '{fitted.spec.family}': field '{name}' is {record[name]!r}, not a number",
                    field=f"records[{index}].{name}",
                )
    return BadRawInput(  # the library's own text (numpy's) stays out of the answer
        f"family '{fitted.spec.family}': records cannot be featurised ({type(exc).__name__}); "
        "send one scalar value per field",
        field="records",
    )
