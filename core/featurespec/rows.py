"""A few rows at a time: a server's small requests featurised with Python scalars, bit for bit the batch's values.

The batch path (:meth:`~modelyard.core.featurespec.spec.FittedSpec.transform_counted`) runs a
handful of numpy calls per feature; on a one-row request that is ~100 µs of array set-up for a
dozen numbers. A :class:`RowPlan` works each value out with scalars instead, step for step as the
batch does: the same integer floor divisions for the local time parts (with the same cached zone
offsets), ``bisect_right`` where the batch calls ``searchsorted(side="right")``, the same
category text, the hour's sine and cosine from the table the batch reads
(:func:`~modelyard.core.featurespec.times.hour_wave`), and numpy's own ``log1p`` (ADR 0031).

It covers every kind but ``function`` (a user function takes arrays; :data:`COVERED`): a spec with
one has no plan. A value it cannot take exactly as the batch would (a missing field, text where a
number goes, a number that is not finite, a whole number of 2**53 or more) makes it decline the
request: the caller then runs the batch path, which computes or names the problem as it always has.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from modelyard.core.featurespec.definitions import Calendar, FeatureDef
from modelyard.core.featurespec.errors import FeatureSpecError
from modelyard.core.featurespec.inputs import category_text
from modelyard.core.featurespec.kinds import COMPARISONS, NUMERIC_TYPES, TIME_KINDS, WINDOW_KINDS
from modelyard.core.featurespec.spec import FittedSpec, Transformed
from modelyard.core.featurespec.times import hour_wave, one_in_holidays, one_local_seconds, one_month

# The kinds with a scalar step below; a kind added later has none until it gets one (the batch path serves it).
COVERED = frozenset({"column", *TIME_KINDS, "log1p", "clip", "bucket", "compare", "category", *WINDOW_KINDS})
_EXACT = 2.0**53  # below it an int and its float64 are the same number, as in the batch's int64/float64 casts


class _Decline(Exception):
    """A row the scalar path does not take exactly as the batch would: the batch path runs instead."""


class _Time:
    """One row's local hour, minute and day number, as the batch's ``LocalTimes`` derives them."""

    __slots__ = ("day", "hour", "minute")

    def __init__(self, local: int) -> None:
        self.hour, self.minute, self.day = (local // 3600) % 24, (local // 60) % 60, local // 86400


Step = Callable[[Mapping[str, Any], _Time, Calendar], "float | int"]


class RowPlan:
    """The scalar steps of a fitted spec's features, in model order (see the module docstring)."""

    def __init__(self, fitted: FittedSpec, steps: Sequence[Step], category_names: Sequence[str | None]) -> None:
        self._fitted, self._steps, self._categories = fitted, tuple(steps), tuple(category_names)
        self._timed = any(f.kind in TIME_KINDS for f in fitted.spec.features)

    @classmethod
    def of(cls, fitted: FittedSpec) -> RowPlan | None:
        """The plan of ``fitted``, or None when a feature is of a kind it does not cover (``function``)."""
        if any(f.kind not in COVERED for f in fitted.spec.features):
            return None
        steps = [_step(fitted, feature) for feature in fitted.spec.features]
        categories = [f.name if f.kind == "category" else None for f in fitted.spec.features]
        return cls(fitted, steps, categories)

    def transform_counted(
        self, records: Sequence[Mapping[str, Any]], calendar: Calendar | None = None
    ) -> Transformed | None:
        """What the batch path gives ``records`` (``fitted.transform_counted`` of its columns), or None: declined."""
        import numpy as np

        calendar = calendar or self._fitted.calendar
        unknown: dict[str, int] = {}
        try:
            rows = [self._row(record, calendar, unknown) for record in records]
        except (_Decline, KeyError, TypeError, ValueError, OverflowError, FeatureSpecError):
            return None
        return Transformed(np.array(rows, dtype=np.float64).reshape(len(rows), len(self._steps)), unknown)

    def _row(self, record: Mapping[str, Any], calendar: Calendar, unknown: dict[str, int]) -> list[float | int]:
        time = self._time(record, calendar) if self._timed else _NO_TIME
        values = [step(record, time, calendar) for step in self._steps]
        for index, name in enumerate(self._categories):
            if name is not None and values[index] == len(self._fitted.vocabularies[name]):
                unknown[name] = unknown.get(name, 0) + 1
        return values

    def _time(self, record: Mapping[str, Any], calendar: Calendar) -> _Time:
        spec = self._fitted.spec
        name = spec.time_column
        return _Time(one_local_seconds(record[name], spec.family, name, name, calendar.timezone))


_NO_TIME = _Time(0)


def _step(fitted: FittedSpec, feature: FeatureDef) -> Step:
    kind = feature.kind
    if kind in TIME_KINDS:
        return _time_step(kind)
    if kind in WINDOW_KINDS:
        name = feature.name
        return lambda record, time, calendar: _number(record[name], "float")
    column = feature.column or feature.name
    column_type = fitted.spec.columns[column]
    if kind == "category":
        lookup = {value: code for code, value in enumerate(fitted.vocabularies[feature.name])}
        missing = len(lookup)
        numeric = column_type in NUMERIC_TYPES  # read as float64 by the batch, then as text
        return lambda record, time, calendar: lookup.get(_category(record[column], numeric), missing)  # type: ignore[arg-type]
    return _numeric_step(feature, column, column_type, fitted.edges.get(feature.name, ()))


def _numeric_step(feature: FeatureDef, column: str, column_type: str, edges: tuple[float, ...]) -> Step:
    kind = feature.kind
    if kind == "column":
        return lambda record, time, calendar: _number(record[column], column_type)
    if kind == "log1p":
        import numpy as np

        return lambda record, time, calendar: float(np.log1p(np.float64(_number(record[column], column_type))))
    if kind == "clip":
        low = -math.inf if feature.lower is None else feature.lower
        high = math.inf if feature.upper is None else feature.upper
        return lambda record, time, calendar: min(max(float(_number(record[column], column_type)), low), high)
    if kind == "bucket":
        return lambda record, time, calendar: bisect.bisect_right(edges, _number(record[column], column_type))
    compare, value = COMPARISONS[str(feature.op)], feature.value
    return lambda record, time, calendar: int(compare(_number(record[column], column_type), value))


def _time_step(kind: str) -> Step:
    if kind == "hour":
        return lambda record, time, calendar: time.hour
    if kind in ("hour_sin", "hour_cos"):
        table = hour_wave(kind).tolist()
        return lambda record, time, calendar: table[time.hour * 60 + time.minute]
    if kind == "day_of_week":
        return lambda record, time, calendar: (time.day + 3) % 7
    if kind == "is_weekend":
        return lambda record, time, calendar: int((time.day + 3) % 7 >= 5)
    if kind == "month":
        return lambda record, time, calendar: one_month(time.day)
    return lambda record, time, calendar: one_in_holidays(time.day, calendar)


def _number(value: Any, column_type: str) -> float | int:
    """``value`` as the batch reads it: through float64, then int64 for int and bool columns."""
    if type(value) not in (int, float, bool):
        raise _Decline
    number = float(value)
    if not math.isfinite(number):
        raise _Decline
    if column_type in ("int", "bool") or type(value) is int:
        if not abs(number) < _EXACT:  # its float64 and int64 casts round
            raise _Decline
        return int(number) if column_type in ("int", "bool") else number
    return number


def _category(value: Any, numeric: bool) -> str | None:
    """The category text of ``value`` as the batch makes it (numeric columns are read as float64 first)."""
    if numeric:
        value = float(_number(value, "float"))
    elif not (value is None or isinstance(value, (str, int, float))):
        raise _Decline
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return None if missing else category_text(value)
