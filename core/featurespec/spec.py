"""The feature spec of a family and the fitted spec it becomes: declaration, checks, computing, JSON.

A :class:`FeatureSpec` lists the features of a family in model order over a dataset's declared
columns and checks each when made. ``fit`` learns what a feature needs from the training window
(:mod:`~modelyard.core.featurespec.fitting`) and returns a :class:`FittedSpec`; that is JSON
(``to_dict``/``from_dict``), saved with the model version, and ``transform`` turns raw columns
into the float matrix the model reads.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelyard.core.featurespec.definitions import Calendar, FeatureDef
from modelyard.core.featurespec.errors import (
    FeatureSpecError,
    MissingInputError,
    UndeclaredColumnError,
    UnknownTransformError,
)
from modelyard.core.featurespec.fitting import learn
from modelyard.core.featurespec.inputs import Columns, column, length, numbers
from modelyard.core.featurespec.kinds import (
    COMPARISONS,
    INT_KINDS,
    KINDS,
    NUMERIC_KINDS,
    NUMERIC_TYPES,
    TIME_KINDS,
    WINDOW_EVERY,
    WINDOW_KINDS,
)
from modelyard.core.featurespec.times import LocalTimes
from modelyard.core.featurespec.transforms import (
    call_user_function,
    category_codes,
    check_allowed,
    numeric,
    user_function,
)

if TYPE_CHECKING:
    import numpy as np

FORMAT_VERSION = 1
# A raw column's declared (min, max, out_of_range); specs written before bounds existed have none.
Bounds = tuple[float | None, float | None, str]


def _bounds(value: Any) -> Bounds:
    low, high, policy = value
    if policy not in ("refuse", "clip"):
        raise FeatureSpecError(f"feature spec bounds: out_of_range {policy!r} is not refuse or clip; retrain")
    return (None if low is None else float(low), None if high is None else float(high), str(policy))


@dataclass(frozen=True)
class FeatureSpec:
    """The features of one family, in model order, over a dataset's declared columns.

    Args:
        family: The family's name (for messages).
        time_column: The dataset's time column.
        columns: Every raw column the dataset declares, name -> type (see :data:`COLUMN_TYPES`).
        features: The features in the order the model reads them.
        bounds: The declared ``(min, max, out_of_range)`` of bounded numeric columns (``out_of_range``:
            ``refuse`` or ``clip``, what a server does with a value outside them).
        allowed_function_modules: The modules a ``function`` feature may name (None: any, as in the
            pipeline, which runs the team's own config; a server passes its operator's allow-list).
            Not part of the spec's JSON: whoever reads a spec says what it may run.
    """

    family: str
    time_column: str
    columns: Mapping[str, str]
    features: tuple[FeatureDef, ...]
    bounds: Mapping[str, Bounds] = field(default_factory=dict)
    allowed_function_modules: frozenset[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for feature in self.features:
            self._check(feature)

    @property
    def names(self) -> list[str]:
        """The feature names, in model order."""
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
            elif feature.online:  # the server looks the aggregate up by the record's key (ADR 0019)
                names.append(str(feature.key))
        return tuple(dict.fromkeys(names))

    @functools.cached_property
    def online(self) -> tuple[FeatureDef, ...]:
        """The window aggregates declared ``online``: a server looks them up by their ``key`` (ADR 0019)."""
        return tuple(f for f in self.features if f.online)

    def fit(self, columns: Columns, calendar: Calendar) -> FittedSpec:
        """Learn vocabularies and bucket edges on the training window ``columns``.

        Raises:
            MissingInputError: a column a learnt feature reads is not in ``columns``.
        """
        vocabularies, edges = learn(self.family, self.columns, self.features, columns)
        return FittedSpec(self, calendar, vocabularies, edges)

    def check_functions(self) -> None:
        """Import every user function now, so a bad path fails before any data is read.

        Raises:
            UserFunctionError: the module or the name cannot be imported.
        """
        for feature in self.features:
            if feature.kind == "function":
                user_function(self.family, feature, self.allowed_function_modules)

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
        if feature.kind == "function":  # refused when declared: nothing of a refused spec is ever imported
            check_allowed(self.family, feature, self.allowed_function_modules)


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
    _check_online(feature, where)


def _check_online(feature: FeatureDef, where: str) -> None:
    if feature.online and feature.kind not in WINDOW_KINDS:
        raise FeatureSpecError(
            f"{where}: online is for window aggregates ({', '.join(WINDOW_KINDS)}), not {feature.kind}; "
            "remove 'online' (the server computes this feature from the record)"
        )
    if feature.online and feature.default is None:
        raise FeatureSpecError(f"{where}: an online feature needs a 'default' (served when no value is stored)")
    if feature.default is not None and not feature.online:
        raise FeatureSpecError(f"{where}: 'default' is only for online features; add 'online: true' or remove it")


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
        """Window aggregates: a server takes them from the request by these names (online ones: or looks them up)."""
        return [f.name for f in self.spec.features if f.kind in WINDOW_KINDS]

    @property
    def online(self) -> tuple[FeatureDef, ...]:
        """The online window aggregates (see :attr:`FeatureSpec.online`)."""
        return self.spec.online

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
            FeatureSpecError: a subclass naming family, feature and column (see the package docstring).
        """
        return self.transform_counted(columns, calendar).matrix

    def transform_counted(self, columns: Columns, calendar: Calendar | None = None) -> Transformed:
        """Like :meth:`transform`, and count the unknown categories per feature."""
        import numpy as np

        unknown: dict[str, int] = {}
        computed = self._compute(columns, calendar, unknown)
        rows = length(self.spec.family, columns)
        matrix = np.empty((rows, len(computed)), dtype=np.float64)
        for index, values in enumerate(computed.values()):
            matrix[:, index] = values
        return Transformed(matrix, unknown)

    def _compute(self, columns: Columns, calendar: Calendar | None, unknown: dict[str, int]) -> dict[str, np.ndarray]:
        times = LocalTimes(self.spec.family, self.spec.time_column, columns, calendar or self.calendar)
        return {f.name: self._feature(f, columns, times, unknown) for f in self.spec.features}

    def _feature(self, feature: FeatureDef, columns: Columns, times: LocalTimes, unknown: dict[str, int]) -> Any:
        family, kind = self.spec.family, feature.kind
        if kind in TIME_KINDS:
            return times.feature(feature)
        if kind in WINDOW_KINDS:
            return numbers(family, feature, column(family, feature, columns, feature.name, requested=True), "float")
        if kind == "function":
            return call_user_function(family, feature, columns, self.spec.allowed_function_modules)
        if kind == "category":
            return category_codes(family, feature, columns, self.vocabularies[feature.name], unknown)
        name = feature.column or feature.name
        values = numbers(family, feature, column(family, feature, columns, name), self.spec.columns[name])
        return numeric(feature, values, self.edges.get(feature.name, ()))

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
            **({"bounds": {k: list(v) for k, v in self.spec.bounds.items()}} if self.spec.bounds else {}),
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, allowed_function_modules: Collection[str] | None = None
    ) -> FittedSpec:
        """The inverse of :meth:`to_dict`.

        Args:
            data: What :meth:`to_dict` wrote.
            allowed_function_modules: The modules its ``function`` features may name (None: any).

        Raises:
            FunctionNotAllowedError: a ``function`` feature names a module not allowed (nothing imported).
            FeatureSpecError: an unknown format version or an invalid declaration.
        """
        allowed = None if allowed_function_modules is None else frozenset(allowed_function_modules)
        if data.get("format") != FORMAT_VERSION:
            raise FeatureSpecError(f"feature spec format {data.get('format')!r} is not {FORMAT_VERSION}; retrain")
        spec = FeatureSpec(
            family=str(data["family"]),
            time_column=str(data["time_column"]),
            columns=dict(data["columns"]),
            features=tuple(FeatureDef.from_dict(f) for f in data["features"]),
            bounds={k: _bounds(v) for k, v in data.get("bounds", {}).items()},
            allowed_function_modules=allowed,
        )
        vocabularies = {k: tuple(str(v) for v in values) for k, values in data.get("vocabularies", {}).items()}
        edges = {k: tuple(float(v) for v in values) for k, values in data.get("edges", {}).items()}
        return cls(spec, Calendar.from_dict(data["calendar"]), vocabularies, edges)

    def _sent(self) -> str:
        """'send: a, b, c' and the online aggregates a server looks up when a row does not carry them."""
        looked_up = {f.name: str(f.key) for f in self.online}
        sent = ", ".join(name for name in [*self.raw_inputs, *self.requested] if name not in looked_up)
        if not looked_up:
            return f"send: {sent}"
        online = ", ".join(f"{name} (by {key})" for name, key in looked_up.items())
        return f"send: {sent}; looked up when not sent: {online}"

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
                    f"family '{self.spec.family}': a row has no field '{name}' ({self._sent()})"
                ) from None
            kind = self.spec.columns.get(name, "float")
            out[name] = np.array(values, dtype=object if kind in ("category", "string", "timestamp") else np.float64)
        return out
