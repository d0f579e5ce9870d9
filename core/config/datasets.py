"""Datasets: declared source tables, each column with its type and the constraints the raw suite checks."""

from __future__ import annotations

import importlib.util
import re
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from modelyard.core.config.base import Section

ColumnType = Literal["float", "int", "bool", "category", "string", "timestamp"]


class Column(Section):
    """One declared column of a dataset: its type and the constraints the raw suite checks."""

    type: ColumnType
    min: float | None = None
    max: float | None = None
    allowed: list[str | int | float | bool] | None = None
    nullable: bool = False
    max_null_fraction: float | None = Field(None, ge=0, le=1)  # implies nullable
    unique: bool = False
    # What a server does with a raw value outside [min, max]: refuse it (422 naming the field) or clip it
    # to the bound and count it (modelyard_raw_values_clipped_total). The data stage's suite checks the bounds.
    out_of_range: Literal["refuse", "clip"] = "refuse"

    @model_validator(mode="after")
    def _bounds(self) -> Column:
        if (self.min is not None or self.max is not None) and self.type not in ("float", "int"):
            raise ValueError(f"min/max apply to float and int columns, not {self.type}")
        if self.min is not None and self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


Operator = Literal["==", "!=", "<", "<=", ">", ">=", "in", "is null", "is not null"]
ORDERING = ("<", "<=", ">", ">=")
NULL_TESTS = ("is null", "is not null")
# "<column> <operator> [value]": the shorthand of one condition, e.g. "status in [done, paid]".
_CONDITION = re.compile(
    r"^\s*(?P<column>[A-Za-z_][A-Za-z0-9_.]*)\s*(?P<op>==|!=|<=|>=|<|>|\bin\b|\bis\s+not\s+null\b|\bis\s+null\b)"
    r"\s*(?P<value>.*?)\s*$"
)


class Condition(Section):
    """One condition of a ``where:`` list: ``{column, op, value}``, or the shorthand ``"distance_km > 0"``.

    A row whose value is null satisfies only ``is null`` (as in SQL). ``in`` takes a list.
    """

    column: str
    op: Operator
    value: Any = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if not isinstance(data, str):
            return data
        match = _CONDITION.match(data)
        if not match:
            raise ValueError(
                f"'{data}' is not a condition; write '<column> <op> <value>' with op one of "
                "==, !=, <, <=, >, >=, in, is null, is not null"
            )
        op = " ".join(match["op"].split())
        text = match["value"]
        try:
            value = yaml.safe_load(text) if text else None
        except yaml.YAMLError as exc:
            raise ValueError(f"'{data}': the value '{text}' is not a YAML scalar or list") from exc
        return {"column": match["column"], "op": op, "value": value}

    @model_validator(mode="after")
    def _value_fits_op(self) -> Condition:
        if self.op in NULL_TESTS and self.value is not None:
            raise ValueError(f"'{self.op}' takes no value (got {self.value!r})")
        if self.op == "in" and not isinstance(self.value, list):
            raise ValueError(f"'in' takes a list, e.g. [a, b] (got {self.value!r})")
        if self.op not in NULL_TESTS and self.op != "in" and (self.value is None or isinstance(self.value, list)):
            raise ValueError(f"'{self.op}' takes one value (got {self.value!r})")
        return self

    def describe(self) -> str:
        """The condition as it would be written in the shorthand."""
        return f"{self.column} {self.op}" + ("" if self.value is None else f" {self.value!r}")


def check_conditions(conditions: list[Condition], dataset: Dataset, key: str) -> None:
    """Refuse conditions on undeclared columns or that cannot apply to a column's type.

    Args:
        conditions: The ``where:`` list.
        dataset: The dataset whose declared columns they read.
        key: The config key they are declared under, for the message (``families 'x' rows.where``).

    Raises:
        ValueError: names the key, the condition's index and what is wrong.
    """
    for index, condition in enumerate(conditions):
        where = f"{key}[{index}] ({condition.describe()})"
        column = dataset.columns.get(condition.column)
        if column is None:
            raise ValueError(
                f"{where}: column '{condition.column}' is not declared in dataset '{dataset.name}' "
                f"({', '.join(dataset.columns)})"
            )
        if condition.op in ORDERING and column.type in ("category", "string", "bool"):
            raise ValueError(f"{where}: '{condition.op}' does not apply to {column.type} column '{condition.column}'")
        values = condition.value if isinstance(condition.value, list) else [condition.value]
        if column.type in ("float", "int") and condition.value is not None:
            wrong = [v for v in values if isinstance(v, bool) or not isinstance(v, int | float)]
            if wrong:
                raise ValueError(f"{where}: {column.type} column '{condition.column}' takes numbers, not {wrong}")


class Expectation(Section):
    """Any further Great Expectations 1.x expectation, by class name, with its arguments."""

    expectation: str = Field(pattern=r"^Expect[A-Za-z0-9]+$")
    kwargs: dict[str, Any] = {}

    @model_validator(mode="after")
    def _known_to_gx(self) -> Expectation:
        if importlib.util.find_spec("great_expectations") is None:
            return self  # a serving install has no GX and never runs suites
        import great_expectations.expectations as gxe

        cls = getattr(gxe, self.expectation, None)
        if cls is None:
            raise ValueError(f"'{self.expectation}' is not a class of great_expectations.expectations")
        try:
            cls(**self.kwargs)
        except Exception as exc:  # GX raises its own pydantic errors
            reason = " ".join(str(exc).split())
            raise ValueError(f"{self.expectation}: invalid kwargs {self.kwargs} ({reason})") from exc
        return self


class DatasetSource(Section):
    """Where a dataset's rows come from: the built-in generator, or a CSV/Parquet path or glob."""

    kind: Literal["synthetic", "file"] = "synthetic"
    path: str | None = None  # CSV/Parquet path or glob when kind: file

    @model_validator(mode="after")
    def _path_for_files(self) -> DatasetSource:
        if self.kind == "file" and not self.path:
            raise ValueError("kind 'file' needs 'path' (a CSV/Parquet path or glob)")
        return self


class Dataset(Section):
    """A declared table: where it comes from and every column with its type and constraints."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    source: DatasetSource = DatasetSource()
    time_column: str
    region_column: str
    key_column: str | None = None  # unique; a stable order for rows at the same time
    renames: dict[str, str] = {}  # source column name -> declared name
    columns: dict[str, Column] = Field(min_length=2)
    # Times without an offset: refused, taken as UTC, or read in the row's region's own IANA zone.
    naive_timestamps: Literal["refuse", "utc", "region_local"] = "refuse"
    # region_local: a wall time that does not exist (spring forward) moves forward to the first real
    # instant (shift) or fails; one that occurs twice (fall back) takes the first or second, or fails.
    dst_gaps: Literal["shift", "refuse"] = "shift"
    dst_overlaps: Literal["earliest", "latest", "refuse"] = "earliest"
    # Rows whose region is not a configured region: counted and named (report) or an error (fail).
    undeclared_regions: Literal["report", "fail"] = "report"
    # Malformed lines and values that do not parse: an error naming the line (fail), or set aside in
    # a quarantine file beside the report while a region's share of them is at most max_bad_fraction.
    bad_rows: Literal["fail", "quarantine"] = "fail"
    max_bad_fraction: float | None = Field(None, ge=0, le=1)
    where: list[Condition] = []  # rows every family of the dataset learns from (all must hold)
    expectations: list[Expectation] = []
    # Outcomes of served requests: a row that holds the request id the server returned (or the
    # X-Request-Id the client sent) is the outcome of that prediction; the data stage hands such
    # rows (id, record index, target) to the monitoring stage for live quality.
    request_id_column: str | None = None
    request_record_column: str | None = None  # the row's index among the request's records (unset: 0)

    @model_validator(mode="after")
    def _roles_declared(self) -> Dataset:
        for role in ("time_column", "region_column", "key_column", "request_id_column", "request_record_column"):
            name = getattr(self, role)
            if name is not None and name not in self.columns:
                raise ValueError(f"{role} '{name}' is not a declared column ({', '.join(self.columns)})")
        if self.columns[self.time_column].type != "timestamp":
            raise ValueError(f"time_column '{self.time_column}' must be declared with type timestamp")
        if self.request_record_column and self.columns[self.request_record_column].type != "int":
            raise ValueError(f"request_record_column '{self.request_record_column}' must be declared with type int")
        if self.request_record_column and not self.request_id_column:
            raise ValueError("request_record_column needs request_id_column (the request the record belongs to)")
        unknown = sorted(set(self.renames.values()) - set(self.columns))
        if unknown:
            raise ValueError(f"renames name undeclared columns {unknown}")
        if (self.bad_rows == "quarantine") != (self.max_bad_fraction is not None):
            raise ValueError("bad_rows: quarantine and max_bad_fraction go together (declare both or neither)")
        check_conditions(self.where, self, "where")
        return self

    @property
    def required_columns(self) -> list[str]:
        """Columns every file must hold: time, region and every declared column that may not be null."""
        strict = [n for n, c in self.columns.items() if not c.nullable and c.max_null_fraction is None]
        return list(dict.fromkeys([self.time_column, self.region_column, *strict]))

    @property
    def column_types(self) -> dict[str, str]:
        """Every declared column's type, by name."""
        return {name: column.type for name, column in self.columns.items()}

    @property
    def column_bounds(self) -> dict[str, tuple[float | None, float | None, str]]:
        """The declared ``(min, max, out_of_range)`` of every bounded numeric column, by name."""
        return {
            name: (column.min, column.max, column.out_of_range)
            for name, column in self.columns.items()
            if column.min is not None or column.max is not None
        }
