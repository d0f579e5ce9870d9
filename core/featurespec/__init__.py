"""Declared features, computed from raw columns with numpy and the standard library only.

This package is the one feature definition shared by the pipeline (training) and the serving
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
  returns one 1-D numeric or boolean array of that length (checked). Whoever reads a spec says
  which modules it may import (``allowed_function_modules``; a server allows none by default).
- window aggregates, ``window_count`` (rows per ``key`` per local ``every`` hour/day, divided by
  the mean over the keys when ``relative``) and ``window_mean`` (mean of ``column`` per key and
  time bucket): not computable from one row. The pipeline computes them over the data (with
  pandas) and passes them in as a column named like the feature; a server takes them from
  the request by that name (:attr:`FittedSpec.requested`).

Timestamps are ``datetime64`` (naive means UTC) or ISO-8601 text with an offset
(``2026-03-29T01:30:00+01:00`` or ``...Z``); text without an offset is refused.

Modules: ``spec`` (:class:`FeatureSpec`, :class:`FittedSpec`, their JSON), ``definitions``
(:class:`FeatureDef`, :class:`Calendar`), ``kinds`` (the vocabulary), ``fitting`` (what a spec
learns), ``times``, ``transforms`` and ``inputs`` (computing on a batch), ``rows`` (the same values for
a few rows with Python scalars, for a server's small requests), ``errors``.
"""

from __future__ import annotations

from modelyard.core.featurespec.definitions import Calendar, FeatureDef
from modelyard.core.featurespec.errors import (
    FeatureSpecError,
    FunctionNotAllowedError,
    MissingInputError,
    TimeOffsetError,
    UndeclaredColumnError,
    UnknownTransformError,
    UserFunctionError,
)
from modelyard.core.featurespec.inputs import Columns
from modelyard.core.featurespec.kinds import (
    COLUMN_TYPES,
    COMPARISONS,
    INT_KINDS,
    KINDS,
    NUMERIC_KINDS,
    NUMERIC_TYPES,
    TIME_KINDS,
    WINDOW_EVERY,
    WINDOW_KINDS,
)
from modelyard.core.featurespec.spec import FORMAT_VERSION, FeatureSpec, FittedSpec, Transformed
from modelyard.core.featurespec.times import SMALL_BATCH_ROWS, epoch_ns, local_seconds, window_keys

__all__ = [
    "COLUMN_TYPES",
    "COMPARISONS",
    "FORMAT_VERSION",
    "INT_KINDS",
    "KINDS",
    "NUMERIC_KINDS",
    "NUMERIC_TYPES",
    "SMALL_BATCH_ROWS",
    "TIME_KINDS",
    "WINDOW_EVERY",
    "WINDOW_KINDS",
    "Calendar",
    "Columns",
    "FeatureDef",
    "FeatureSpec",
    "FeatureSpecError",
    "FittedSpec",
    "FunctionNotAllowedError",
    "MissingInputError",
    "TimeOffsetError",
    "Transformed",
    "UndeclaredColumnError",
    "UnknownTransformError",
    "UserFunctionError",
    "epoch_ns",
    "local_seconds",
    "window_keys",
]
