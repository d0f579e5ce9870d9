"""The vocabulary of a declaration: the kinds of features, the column types and the comparisons."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

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
