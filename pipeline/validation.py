"""Great Expectations 1.x suites for raw rows and for feature snapshots, generated from the declaration.

The raw suite comes from the family's dataset (every declared column's type, min/max, allowed
values, nulls, uniqueness, plus any further GX expectation declared by name), the regions,
``data.min_rows`` and ``data.freshness_days``; the features suite from the family's declared
features (their kinds give dtypes and ranges) and target. Nothing is coded per domain. They
run in-process on pandas in one ephemeral GX context per process (set up on first use, reused by
every pair: no GX project folder). Each run gives a
:class:`ValidationOutcome` with one line per failed expectation that names the column, the
expectation and how many rows offend, e.g.::

    region 'JKT': column 'distance_km' has 312 values outside [0, 200]
    (expect_column_values_to_be_between)

:mod:`pipeline.report` renders the outcomes as the HTML report stored with the snapshot.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import functools
import json
import threading
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelyard.core import featurespec
from modelyard.core.config import Column, DataSettings, Family, PairView
from modelyard.core.contracts.columns import RAW_PREFIX, TIME_COLUMN
from modelyard.core.errors import ModelyardError
from modelyard.pipeline.features import required_raw_columns, snapshot_columns
from modelyard.pipeline.snapshots import ValidationSummary

if TYPE_CHECKING:
    import great_expectations as gx
    import pandas as pd

# Ranges every value of a feature of these kinds lies in, whatever the data.
KIND_RANGES: dict[str, tuple[float, float]] = {
    "hour": (0, 23),
    "hour_sin": (-1, 1),
    "hour_cos": (-1, 1),
    "day_of_week": (0, 6),
    "month": (1, 12),
    "window_count": (0, 1e12),
}
BINARY_KINDS = ("is_weekend", "is_holiday", "compare")
# BASIC gives every field a check reads (unexpected_count, partial_unexpected_list, observed_value);
# SUMMARY would add value counts and index lists of the offending rows, computed and never read.
RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 5}
# A classifier's positive rate outside these bounds means a broken label, not a signal.
LABEL_BALANCE = (0.05, 0.95)


class ValidationFailedError(ModelyardError, ValueError):
    """Data failed its suite; the message lists every failed expectation."""


@dataclass(frozen=True)
class CheckResult:
    """One evaluated expectation."""

    expectation: str
    column: str | None
    success: bool
    message: str  # empty when it passed
    unexpected_count: int | None = None
    sample: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    observed: Any = None


@dataclass(frozen=True)
class ValidationOutcome:
    """The result of one suite on one frame."""

    suite: str
    stage: str  # "raw" or "features"
    rows: int
    checks: list[CheckResult]

    @property
    def success(self) -> bool:
        return all(c.success for c in self.checks)

    @property
    def failures(self) -> list[str]:
        return [c.message for c in self.checks if not c.success]

    def raise_for_failures(self, subject: str) -> None:
        """Raise :class:`ValidationFailedError` naming ``subject`` when any check failed."""
        if not self.success:
            lines = "; ".join(self.failures)
            raise ValidationFailedError(
                f"{subject}: {self.stage} data failed {len(self.failures)} of {len(self.checks)} checks: {lines}"
            )


def summarize(outcomes: list[ValidationOutcome]) -> ValidationSummary:
    """The summary stored in a snapshot's metadata, over every suite that ran."""
    failures = [f for o in outcomes for f in o.failures]
    return ValidationSummary(
        success=not failures,
        checks=sum(len(o.checks) for o in outcomes),
        failed=len(failures),
        failures=failures,
    )


# --- suites ----------------------------------------------------------------------------


class _SuiteBuilder:
    """Collects a suite's expectations, dropping repeats, then builds the GX suite in one go.

    ``ExpectationSuite.add_expectation`` compares each new expectation with every one already
    added (a pydantic dump per pair of them): quadratic in the suite's size, a large share of a
    pair's validation. Keyed once per expectation here, the suite is the same set.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._expectations: dict[str, Any] = {}

    def add_expectation(self, expectation: Any) -> None:
        fields = expectation.dict(exclude={"id", "rendered_content", "notes", "meta"})
        key = expectation.expectation_type + json.dumps(fields, sort_keys=True, default=repr)
        self._expectations.setdefault(key, expectation)

    def build(self) -> gx.ExpectationSuite:
        import great_expectations as gx

        return gx.ExpectationSuite(name=self.name, expectations=list(self._expectations.values()))


def raw_suite(
    pair: PairView,
    data: DataSettings,
    as_of: dt.datetime,
    columns: list[str],
    regions: Sequence[str] | None = None,
    *,
    min_rows: int | None = None,
) -> gx.ExpectationSuite:
    """Expectations on raw rows of the pair's dataset, as its family needs them.

    GX needs an active context to build a suite: :func:`frame_batch` (or :func:`gx_context`) first.

    Args:
        pair: Gives the dataset, the required columns, the target and the region.
        data: Gives ``min_rows`` and ``freshness_days``.
        as_of: The moment freshness is measured from.
        columns: The frame's columns (declared columns a family does not need are checked when present).
        regions: The regions the rows may belong to; None: the pair's region only.
        min_rows: The fewest rows the table may have; None: ``data.min_rows`` (a model of the region's
            own). A region published pooled only passes ``data.pooled_floor`` (ADR 0015).
    """
    import great_expectations.expectations as gxe

    dataset, family = pair.dataset, pair.family
    required = required_raw_columns(pair)
    suite = _SuiteBuilder(f"raw.{dataset.name}.{family.name}")
    suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=data.min_rows if min_rows is None else min_rows))
    for name in required:
        suite.add_expectation(gxe.ExpectColumnToExist(column=name))
    for name, column in dataset.columns.items():
        if name in required or name in columns:
            _column_checks(suite, name, column)
    allowed = [pair.region.name] if regions is None else list(regions)
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=dataset.region_column, value_set=allowed))
    if dataset.key_column and not dataset.columns[dataset.key_column].unique:
        suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column=dataset.key_column))
    for declared in dataset.expectations:
        suite.add_expectation(getattr(gxe, declared.expectation)(**declared.kwargs))
    _time_checks(suite, data, as_of, dataset.time_column, ordered=False)
    if not family.target_from:
        _label_checks(suite, family)
    return suite.build()


def _column_checks(suite: _SuiteBuilder, name: str, column: Column) -> None:
    import great_expectations.expectations as gxe

    if column.max_null_fraction is not None:
        mostly = 1.0 - column.max_null_fraction
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=name, mostly=mostly))
    elif not column.nullable:
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=name))
    if column.type in ("float", "int", "bool"):
        suite.add_expectation(gxe.ExpectColumnValuesToBeInTypeList(column=name, type_list=["int64", "float64"]))
    if column.min is not None or column.max is not None:
        suite.add_expectation(
            gxe.ExpectColumnValuesToBeBetween(column=name, min_value=column.min, max_value=column.max)
        )
    if column.allowed is not None:
        suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=name, value_set=list(column.allowed)))
    if column.unique:
        suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column=name))


def features_suite(
    pair: PairView, data: DataSettings, as_of: dt.datetime, *, min_rows: int | None = None
) -> gx.ExpectationSuite:
    """Expectations on a snapshot frame of the pair: the exact contract, complete, typed and in range.

    ``min_rows`` is the fewest rows it may have, as in :func:`raw_suite`.
    """
    import great_expectations.expectations as gxe

    columns = snapshot_columns(pair)
    spec, dataset, family = pair.snapshot_spec, pair.dataset, pair.family
    suite = _SuiteBuilder(f"features.{family.name}")
    suite.add_expectation(gxe.ExpectTableColumnsToMatchOrderedList(column_list=columns))
    suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=data.min_rows if min_rows is None else min_rows))
    for column in columns:
        raw = dataset.columns.get(column.removeprefix(RAW_PREFIX)) if column.startswith(RAW_PREFIX) else None
        if raw is None or not (raw.nullable or raw.max_null_fraction is not None):
            suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=column))
    for feature in spec.features:
        dtype = "int64" if spec.dtype_of(feature) == "int" else "float64"
        suite.add_expectation(gxe.ExpectColumnValuesToBeInTypeList(column=feature.name, type_list=[dtype]))
        _feature_range(suite, feature, dataset.columns)
    target_type = "int64" if family.task == "classification" else "float64"
    suite.add_expectation(gxe.ExpectColumnValuesToBeInTypeList(column=family.target, type_list=[target_type]))
    _time_checks(suite, data, as_of, TIME_COLUMN, ordered=True)
    _label_checks(suite, family)
    return suite.build()


def _feature_range(suite: _SuiteBuilder, feature: featurespec.FeatureDef, columns: dict[str, Column]) -> None:
    import great_expectations.expectations as gxe

    bounds: tuple[float | None, float | None] | None = KIND_RANGES.get(feature.kind)
    if feature.kind == "column":
        column = columns[feature.column or feature.name]
        bounds = (column.min, column.max) if column.min is not None or column.max is not None else None
    elif feature.kind == "clip":
        bounds = (feature.lower, feature.upper)
    if feature.kind in BINARY_KINDS:
        suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=feature.name, value_set=[0, 1]))
    elif bounds is not None:
        suite.add_expectation(
            gxe.ExpectColumnValuesToBeBetween(column=feature.name, min_value=bounds[0], max_value=bounds[1])
        )


def _time_checks(suite: _SuiteBuilder, data: DataSettings, as_of: dt.datetime, column: str, *, ordered: bool) -> None:
    import great_expectations.expectations as gxe
    import pandas as pd

    oldest = pd.Timestamp(as_of).tz_convert("UTC") - pd.Timedelta(days=data.freshness_days)
    suite.add_expectation(gxe.ExpectColumnMaxToBeBetween(column=column, min_value=oldest))
    if ordered:
        suite.add_expectation(gxe.ExpectColumnValuesToBeIncreasing(column=column))


def _label_checks(suite: _SuiteBuilder, family: Family) -> None:
    import great_expectations.expectations as gxe

    if family.task == "classification":
        suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=family.target, value_set=[0, 1]))
        low, high = LABEL_BALANCE
        suite.add_expectation(gxe.ExpectColumnMeanToBeBetween(column=family.target, min_value=low, max_value=high))
    else:
        suite.add_expectation(gxe.ExpectColumnStdevToBeBetween(column=family.target, min_value=1e-6))


# --- running ---------------------------------------------------------------------------


def run_suite(
    batch: Any, frame: pd.DataFrame, suite: gx.ExpectationSuite, stage: str, region: str | None
) -> ValidationOutcome:
    """Validate ``batch`` (of ``frame``, from :func:`frame_batch`) against ``suite``."""
    with configurations_kept():
        result = batch.validate(suite, result_format=RESULT_FORMAT)
    prefix = f"region '{region}': " if region else ""
    checks = [_check(r, prefix) for r in result.results]
    return ValidationOutcome(suite=suite.name, stage=stage, rows=len(frame), checks=checks)


def validate_raw(
    frame: pd.DataFrame,
    pair: PairView,
    data: DataSettings,
    as_of: dt.datetime | None = None,
    *,
    regions: Sequence[str] | None = None,
    min_rows: int | None = None,
) -> ValidationOutcome:
    """Run the raw suite of the pair's family on ``frame``.

    Args:
        frame: Raw rows.
        pair: The (family, region) the rows are for.
        data: The data stage's settings (minimum rows, freshness).
        as_of: The moment freshness is measured from (default: now).
        regions: Rows of several regions (a user's file): the regions they may belong to, and
            messages name no region. None: every row must be of the pair's region.
        min_rows: The fewest rows (None: ``data.min_rows``; a pooled-only region: ``data.pooled_floor``).
    """
    batch = frame_batch(frame)  # GX needs its context before a suite can be built
    suite = raw_suite(pair, data, as_of or _now(), list(frame.columns), regions, min_rows=min_rows)
    return run_suite(batch, frame, suite, "raw", pair.region.name if regions is None else None)


def validate_features(
    frame: pd.DataFrame,
    pair: PairView,
    data: DataSettings,
    as_of: dt.datetime | None = None,
    *,
    min_rows: int | None = None,
) -> ValidationOutcome:
    """Run the features suite of the pair on a snapshot frame (messages name its region; ``min_rows`` as raw)."""
    batch = frame_batch(frame)
    suite = features_suite(pair, data, as_of or _now(), min_rows=min_rows)
    return run_suite(batch, frame, suite, "features", pair.region.name)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def frame_batch(frame: pd.DataFrame) -> Any:
    """A GX batch over ``frame`` in this process's ephemeral context (no files, no analytics, no progress bars)."""
    return _batch_definition().get_batch(batch_parameters={"dataframe": frame})


def gx_context() -> Any:
    """This process's ephemeral GX context, made on first use and kept (it holds no data between batches)."""
    return _context_and_definition()[0]


def _batch_definition() -> Any:
    return _context_and_definition()[1]


@functools.cache
def _context_and_definition() -> tuple[Any, Any]:
    # Nothing in it depends on a config: one per process serves every pair and every config.
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    project = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=project)
    asset = context.data_sources.add_pandas("modelyard").add_dataframe_asset("frame")
    return context, asset.add_batch_definition_whole_dataframe("all")


# --- GX's metric-graph work, each piece done once during a run --------------------------

# The memo of the run in progress on this thread (None: no run, GX computes as it always does).
_RUN = threading.local()
# Metric kwargs ids by exact content (a pure function of it, so shared by every run of the process;
# the batch id is the same for every frame, so pairs of the same columns share most of them).
_IDS: dict[Hashable, Any] = {}
_IDS_LIMIT = 200_000
# Mappings GX converts to JSON key by key (GX's IDDict is added when the ids are kept).
_PLAIN_DICTS: set[type] = {dict}


@dataclass
class _RunMemo:
    """What one run keeps: per GX object, the object itself (so its id is not reused) and its result."""

    configurations: dict[int, tuple[Any, Any]] = field(default_factory=dict)
    domain_objects: dict[int, tuple[Any, Hashable, Any]] = field(default_factory=dict)


class _Unkeyable(Exception):
    """A value :func:`_key` cannot key exactly: GX computes it as it always does."""


@contextlib.contextmanager
def configurations_kept() -> Iterator[None]:
    """While validating, GX derives each expectation's configuration, domain object and metric ids once.

    GX 1.x rebuilds them over and over while it builds a suite's metric graph (issue 26): an
    expectation's ``configuration`` from its fields (a pydantic ``dict()`` and a regex on the class
    name) for every domain, success and runtime key (~66 times per expectation); a new expectation
    from its configuration (``to_domain_obj``) for every metric it needs, twice per validation; and
    each metric's id from its kwargs (``IDDict.to_id``: a JSON conversion, a dump and an md5) for
    every metric configuration, ~39 per expectation. Validation changes neither an expectation's
    fields nor its configuration's, so inside this block:

    - an expectation object's first ``configuration`` is kept for that object;
    - a configuration object's first domain object is kept while its fields are unchanged;
    - a metric kwargs id is looked up by the kwargs' exact content (type and value of each) when they
      hold only plain values (str, int, float, bool, None, enums, lists, tuples and dicts of them).

    Outside it nothing changes; a GX whose internals differ runs as it is.
    """
    _patch_gx()
    outer = getattr(_RUN, "memo", None)
    _RUN.memo = _RunMemo() if outer is None else outer
    try:
        yield
    finally:
        _RUN.memo = outer


@functools.cache
def _patch_gx() -> None:
    _keep_configurations()
    _keep_domain_objects()
    _keep_metric_ids()


def _run_memo() -> _RunMemo | None:
    memo: _RunMemo | None = getattr(_RUN, "memo", None)
    return memo


def _keep_configurations() -> None:
    from great_expectations.expectations.expectation import Expectation

    original = Expectation.__dict__.get("configuration")
    if not isinstance(original, property) or original.fget is None:
        return  # a GX whose expectations keep their configuration differently: validation runs as GX has it
    build = original.fget

    def configuration(self: Any) -> Any:
        run = _run_memo()
        if run is None:
            return build(self)
        kept = run.configurations.get(id(self))
        if kept is None or kept[0] is not self:  # the object is held by the memo, so its id is not reused
            kept = run.configurations[id(self)] = (self, build(self))
        return kept[1]

    Expectation.configuration = property(configuration, doc=original.__doc__)  # type: ignore[method-assign,assignment]


# The fields ExpectationConfiguration.to_domain_obj reads (GX 1.24; ``type`` through _get_expectation_impl).
_DOMAIN_FIELDS = ("type", "id", "meta", "notes", "rendered_content", "severity", "description", "kwargs")


def _keep_domain_objects() -> None:
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    build = ExpectationConfiguration.__dict__.get("to_domain_obj")
    reads = set(getattr(getattr(build, "__code__", None), "co_names", ("?",)))
    if not callable(build) or not reads <= {*_DOMAIN_FIELDS, "_get_expectation_impl", "update"}:
        return  # a GX whose domain object reads other fields: validation runs as GX has it

    def to_domain_obj(self: Any) -> Any:
        run = _run_memo()
        if run is None:
            return build(self)
        try:
            fields = _key(tuple(getattr(self, f) for f in _DOMAIN_FIELDS))
        except (_Unkeyable, AttributeError):
            return build(self)
        kept = run.domain_objects.get(id(self))
        if kept is None or kept[0] is not self or kept[1] != fields:  # a changed field builds anew
            kept = run.domain_objects[id(self)] = (self, fields, build(self))
        return kept[2]

    to_domain_obj.__doc__ = build.__doc__
    ExpectationConfiguration.to_domain_obj = to_domain_obj  # type: ignore[method-assign]


def _keep_metric_ids() -> None:
    from great_expectations.core.id_dict import IDDict

    build = IDDict.__dict__.get("to_id")
    if not callable(build) or not isinstance(getattr(IDDict, "_id_ignore_keys", None), set):
        return  # a GX whose ids are made differently: validation runs as GX has it
    _PLAIN_DICTS.add(IDDict)

    def to_id(self: Any, id_keys: Any = None, id_ignore_keys: Any = None) -> Any:
        if id_keys is not None or id_ignore_keys is not None or _run_memo() is None:
            return build(self, id_keys, id_ignore_keys)
        try:
            # GX's id reads the kept keys' values only, as a plain dict: the mapping's own type is moot.
            key = (type(self), frozenset(self._id_ignore_keys), _key(dict(self)))
        except (_Unkeyable, TypeError):
            return build(self)
        found = _IDS.get(key)
        if found is None:
            if len(_IDS) >= _IDS_LIMIT:
                _IDS.clear()
            found = _IDS[key] = build(self)
        return found

    to_id.__doc__ = build.__doc__
    IDDict.to_id = to_id  # type: ignore[method-assign]


def _key(value: Any) -> Hashable:
    """``value`` as a hashable key that equals another's only when both convert to the same JSON and text.

    Keyed by type as well as value (``1``, ``1.0`` and ``True`` are equal in Python, not in JSON);
    floats by their repr (``0.0 == -0.0``). Anything else raises :class:`_Unkeyable`.
    """
    kind = type(value)
    if kind in _SCALARS:
        return (kind, value)
    if kind is float:
        return (kind, repr(value))
    if kind is list or kind is tuple:
        return (kind, tuple(map(_key, value)))
    if kind in _PLAIN_DICTS:
        if not all(type(k) is str for k in value):
            raise _Unkeyable
        return (kind, tuple((k, _key(v)) for k, v in value.items()))
    if isinstance(value, enum.Enum):
        return (kind, value)
    raise _Unkeyable


_SCALARS = frozenset({str, int, bool, type(None)})


def _check(result: Any, prefix: str) -> CheckResult:
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id", "meta")}
    details = result.result or {}
    check = CheckResult(
        expectation=config.type,
        column=kwargs.get("column"),
        success=bool(result.success),
        message="",
        unexpected_count=details.get("unexpected_count"),
        sample=list(details.get("partial_unexpected_list") or [])[:5],
        kwargs=kwargs,
        observed=details.get("observed_value"),
    )
    if check.success:
        return check
    error = (result.exception_info or {}).get("exception_message") if result.exception_info else None
    text = describe_failure(check, error)
    return CheckResult(**{**check.__dict__, "message": f"{prefix}{text} ({check.expectation})"})


def describe_failure(check: CheckResult, error: str | None = None) -> str:
    """A sentence a data scientist understands: the column, what is wrong, how many rows."""
    col, n, kw = check.column, check.unexpected_count, check.kwargs
    subject = f"column '{col}'" if col else "the table"
    if error and n is None and check.observed is None:
        return f"{subject}: could not be checked ({str(error).splitlines()[0]})"
    kind = check.expectation
    if kind == "expect_column_to_exist":
        return f"{subject} is missing"
    if kind == "expect_column_values_to_not_be_null":
        allowed = f" (at most {1 - kw['mostly']:.4g} of the rows may be)" if kw.get("mostly") else ""
        return f"{subject} has {n} missing values{allowed}"
    if kind == "expect_column_values_to_be_between":
        return f"{subject} has {n} values outside [{_num(kw.get('min_value'))}, {_num(kw.get('max_value'))}]"
    if kind == "expect_column_values_to_be_in_set":
        return f"{subject} has {n} values not in {sorted(kw['value_set'])} (e.g. {example_values(check.sample)})"
    if kind == "expect_column_values_to_be_unique":
        return f"{subject} has {n} duplicated values (e.g. {example_values(check.sample)})"
    if kind == "expect_column_values_to_be_in_type_list":
        return f"{subject} has type {check.observed}, expected {' or '.join(kw['type_list'])}"
    if kind == "expect_column_values_to_be_increasing":
        return f"{subject} has {n} values out of time order"
    if kind == "expect_table_row_count_to_be_between":
        return (
            f"{subject} has {check.observed} rows, fewer than the minimum {kw.get('min_value')} "
            "(data.min_rows; data.min_pooled_rows for a region pooled with its group)"
        )
    if kind == "expect_table_columns_to_match_ordered_list":
        return f"{subject} has columns {check.observed}, expected {kw.get('column_list')}"
    if kind == "expect_column_max_to_be_between":
        return (
            f"{subject}: the newest row ({check.observed}) is older than {kw.get('min_value')} "
            "(stale data; see data.freshness_days)"
        )
    if kind == "expect_column_mean_to_be_between":
        return (
            f"{subject}: mean (label balance) {_num(check.observed)} is outside "
            f"[{_num(kw.get('min_value'))}, {_num(kw.get('max_value'))}]"
        )
    if kind == "expect_column_stdev_to_be_between":
        return f"{subject}: every row has the same value (standard deviation {_num(check.observed)})"
    return f"{subject} failed with {n if n is not None else 'observed ' + str(check.observed)}"


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def example_values(values: list[Any]) -> str:
    """Up to three distinct offending values, for a message or the report."""
    shown = sorted({repr(v) for v in values})[:3]
    return ", ".join(shown) if shown else "none shown"
