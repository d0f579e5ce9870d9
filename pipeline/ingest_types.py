"""How ingest types one chunk of a file: declared column types, local times, and the problems a file collects.

:mod:`pipeline.ingest` reads a file chunk by chunk and hands each chunk here, with the file's
:class:`FileRead` (what reading it has gathered so far). Each declared column is typed: text,
numbers (whole ones as ints), booleans, and times as UTC instants. A time without an offset is
read by the dataset's ``naive_timestamps`` policy (refused, UTC, or its region's own zone, with
daylight-saving gaps and overlaps by ``dst_gaps``/``dst_overlaps``). A value that does not parse
is a problem of the file (``bad_rows: fail``, reported once at the file's end with its count and
first example) or sets its row aside (``bad_rows: quarantine``). Batch scoring types its inputs
with the same :func:`typed`: this is the one definition of a dataset's types.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.core.config import Dataset
from modelyard.pipeline.ingest_errors import (
    ColumnTypeError,
    IngestError,
    MalformedLineError,
    NaiveTimestampError,
    TimestampError,
    UndeclaredRegionError,
)
from modelyard.pipeline.readers import LINE_COLUMN

if TYPE_CHECKING:
    import pandas as pd

# An ISO-8601 time that names its offset: ...Z, ...+07:00, ...-0500
OFFSET_PATTERN = r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
UNKNOWN_REGION = "?"  # a malformed line too short to hold its region, or a null region
TRUE_TEXT = frozenset({"true", "t", "yes", "y", "1", "1.0"})
FALSE_TEXT = frozenset({"false", "f", "no", "n", "0", "0.0"})


@dataclass(frozen=True)
class BadRow:
    """A row set aside: its file, line, region value (when readable), why, and its text."""

    file: str
    line: int
    region: str
    reason: str
    text: str = ""


@dataclass
class Problem:
    """A reason to fail the read, tallied over a file's chunks: its count is the file's, its example the first."""

    error: type[IngestError]
    count: int
    example: Any
    message: Callable[[int, Any], str]

    def raise_(self) -> None:
        raise self.error(self.message(self.count, self.example))


@dataclass
class FileRead:
    """What reading one file gathers, chunk by chunk, before its rows are typed and its problems reported."""

    path: Path
    dataset: Dataset
    regions: Mapping[str, str] | None
    notes: list[str]
    read: Counter[tuple[str, str]] = field(default_factory=Counter)
    undeclared: Counter[tuple[str, str]] = field(default_factory=Counter)
    bad: list[BadRow] = field(default_factory=list)
    # Ranked like the checks of one chunk (column, step, region, kind): the first of the file wins.
    problems: dict[tuple[int, ...], Problem] = field(default_factory=dict)
    tallies: dict[tuple[int, ...], Problem] = field(default_factory=dict)  # notes, with their counts
    malformed: list[tuple[int, str]] = field(default_factory=list)  # under bad_rows: fail
    refused: Counter[tuple[str, str]] = field(default_factory=Counter)  # under undeclared_regions: fail
    width: int = 0  # fields in the header
    # How a row's number (its LINE_COLUMN) is named in a message: a CSV's line, or a data row from 1.
    numbering: str = "on line {}"

    def where(self, frame: pd.DataFrame, mask: pd.Series) -> str:
        """' on line 12' (``numbering``) of the first row of ``mask``; '' when the frame's rows are not numbered."""
        if LINE_COLUMN not in frame.columns or not mask.any():
            return ""
        return " " + self.numbering.format(int(frame[LINE_COLUMN][mask].iloc[0]))

    @property
    def quarantine(self) -> bool:
        return self.dataset.bad_rows == "quarantine"

    @property
    def failing(self) -> bool:
        """A problem fails this file: later chunks are only tallied, their rows not kept."""
        return bool(self.malformed or self.refused or self.problems)

    def problem(self, rank: tuple[int, ...], problem: Problem) -> None:
        _tally(self.problems, rank, problem)

    def note(self, rank: tuple[int, ...], count: int, message: Callable[[int, Any], str]) -> None:
        _tally(self.tallies, rank, Problem(IngestError, count, None, message))

    def finish(self) -> None:
        """Raise the file's first problem (in the order one whole-file pass meets them), else write its notes.

        Raises:
            IngestError: a malformed line, an undeclared region, a value or time that does not fit.
        """
        if self.malformed:
            raise_malformed(self)
        if self.refused:
            listed = ", ".join(f"{r!r} ({n})" for (_, r), n in self.refused.most_common())
            raise UndeclaredRegionError(
                f"{self.path}: {sum(self.refused.values())} rows of regions the config does not declare: {listed}; "
                f"declare them under regions:, or set undeclared_regions: report on dataset '{self.dataset.name}'"
            )
        if self.problems:
            self.problems[min(self.problems)].raise_()
        self.notes.extend(self.tallies[rank].message(self.tallies[rank].count, None) for rank in sorted(self.tallies))
        self.tallies.clear()


def _tally(into: dict[tuple[int, ...], Problem], rank: tuple[int, ...], problem: Problem) -> None:
    if rank in into:
        into[rank].count += problem.count
    else:
        into[rank] = problem


def raise_malformed(read: FileRead) -> None:
    line, text = read.malformed[0]
    others = [n for n, _ in read.malformed[1:]]
    more = f" (and {len(others)} more: lines {_lines(others)})" if others else ""
    raise MalformedLineError(
        f"{read.path}: line {line} has {_fields(text)} fields, expected {read.width} ({text[:80]!r}){more}; "
        f"fix the file, or set bad_rows: quarantine with max_bad_fraction on dataset '{read.dataset.name}'"
    )


def _fields(text: str) -> int:
    return len(next(csv.reader([text]), []))


def _lines(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:5])
    return shown + (", ..." if len(numbers) > 5 else "")


def typed(frame: pd.DataFrame, read: FileRead) -> pd.DataFrame:
    """Type every declared column of ``frame`` (one chunk, read alone) and report its problems at once.

    Raises:
        IngestError: a value that does not parse (under ``bad_rows: fail``), a refused naive or DST time.
    """
    frame = type_chunk(frame, read)
    read.finish()
    return frame


def type_chunk(frame: pd.DataFrame, read: FileRead) -> pd.DataFrame:
    """Type every declared column; a value that does not parse is tallied as a problem or sets its row aside."""
    import pandas as pd

    dataset = read.dataset
    bad = pd.Series(False, index=frame.index)
    # Text first: the region column gives each naive time its zone.
    ordered = sorted(dataset.columns.items(), key=lambda item: item[1].type == "timestamp")
    for position, (name, column) in enumerate(ordered):
        if name not in frame.columns:
            continue
        try:
            if column.type == "timestamp":
                frame[name] = _timestamps(frame, name, read, position)
            elif column.type in ("float", "int"):
                frame[name] = _numbers(frame, name, read, whole=column.type == "int")
            elif column.type == "bool":
                frame[name] = _booleans(frame, name, read)
            else:
                frame[name] = texts(frame[name]).astype("str")
        except _BadValues as exc:
            frame[name] = exc.parsed
            if not read.quarantine:
                read.problem((position, 0), exc.problem)
                continue
            _set_aside(read, frame, exc.mask & ~bad, exc.reason)
            bad |= exc.mask
    if bad.any():
        frame = frame[~bad]
        for name, column in dataset.columns.items():  # whole numbers once their bad rows are gone
            if column.type == "int" and name in frame.columns:
                frame[name] = _whole(frame[name])
    return frame.reset_index(drop=True)


class _BadValues(Exception):
    """Internal: the problem a column's values make, with the offending rows for quarantine."""

    def __init__(self, problem: Problem, mask: pd.Series, parsed: pd.Series, reason: str) -> None:
        super().__init__(reason)
        self.problem, self.mask, self.parsed, self.reason = problem, mask, parsed, reason


def _set_aside(read: FileRead, frame: pd.DataFrame, mask: pd.Series, reason: str) -> None:
    region = texts(frame[read.dataset.region_column]).fillna(UNKNOWN_REGION)
    for index in frame.index[mask]:
        read.bad.append(BadRow(str(read.path), int(frame.at[index, LINE_COLUMN]), str(region[index]), reason))


def _whole(values: pd.Series) -> pd.Series:
    if values.notna().all() and (values == values.round()).all():
        return values.astype("int64")
    return values


def as_text(value: object) -> str:
    # A numeric id read from Parquet (7, 7.0) is the same category as the text "7" of a CSV.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def texts(values: pd.Series) -> pd.Series:
    """``values`` as text (nulls kept); a column of Python strings (a CSV's) is already text."""
    import pandas as pd

    if isinstance(values.dtype, pd.StringDtype) or (
        values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty")
    ):
        return values
    return values.map(as_text, na_action="ignore")


def _booleans(frame: pd.DataFrame, name: str, read: FileRead) -> pd.Series:
    import pandas as pd

    values = frame[name]
    text = values.astype(str).str.strip().str.lower()
    parsed = pd.Series(float("nan"), index=values.index)
    parsed[text.isin(TRUE_TEXT)] = 1.0
    parsed[text.isin(FALSE_TEXT)] = 0.0
    bad = values.notna() & parsed.isna()
    if bad.any():
        raise _bad_values(ColumnTypeError, frame, name, bad, parsed, read, "a boolean", "use true/false or 1/0")
    return parsed.astype("int64") if parsed.notna().all() else parsed


def _numbers(frame: pd.DataFrame, name: str, read: FileRead, *, whole: bool) -> pd.Series:
    import pandas as pd

    values = frame[name]
    parsed = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & parsed.isna()
    if bad.any():
        raise _bad_values(
            ColumnTypeError, frame, name, bad, parsed.astype("float64"), read, "a number", "write a number in every row"
        )
    parsed = parsed.astype("float64")
    return _whole(parsed) if whole else parsed


def _timestamps(frame: pd.DataFrame, name: str, read: FileRead, position: int) -> pd.Series:
    """UTC instants of column ``name``; naive times by the dataset's policy, unparseable ones a problem."""
    import pandas as pd

    values, regions = frame[name], frame[read.dataset.region_column]
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return _naive(values, values.notna(), regions, read, position, frame)
    parsed = _parse_times(values, utc=True)
    bad = values.notna() & parsed.isna()
    text = values.astype(str).str.strip()
    naive = values.notna() & ~bad & ~text.str.contains(OFFSET_PATTERN, regex=True)
    if naive.any():
        local = _parse_times(values.where(naive), utc=False)
        parsed = parsed.where(~naive, _naive(local, naive, regions, read, position, frame))
    if bad.any():
        raise _bad_values(
            TimestampError, frame, name, bad, parsed, read, "a timestamp", "use ISO 8601 such as 2026-01-05T08:30:00Z"
        )
    return parsed


def counted(count: int, one: str, many: str) -> str:
    """'1 value' or '3 values'."""
    return f"{count} {one if count == 1 else many}"


def _bad_values(
    error: type[IngestError],
    frame: pd.DataFrame,
    name: str,
    bad: pd.Series,
    parsed: pd.Series,
    read: FileRead,
    kind: str,
    fix: str,
) -> _BadValues:
    """The problem of column ``name``'s ``bad`` rows: each is not ``kind`` ("a number"); ``fix`` says what to do.

    The example is the first bad value and where it is (``FileRead.where``: ' on line 12').
    """
    path, some = read.path, f"values that are not {kind.split(' ', 1)[1]}s"
    problem = Problem(
        error,
        int(bad.sum()),
        (frame[name][bad].iloc[0], read.where(frame, bad)),
        lambda count, example: (
            f"{path}: column '{name}' has {counted(count, f'value that is not {kind}', some)} "
            f"(e.g. {example[0]!r}{example[1]}); {fix}"
        ),
    )
    return _BadValues(problem, bad, parsed, f"column '{name}': not {kind}")


def _parse_times(values: pd.Series, *, utc: bool) -> pd.Series:
    """``values`` (text) as times: ISO 8601 at C speed, then any other layout pandas can read, value by value."""
    import pandas as pd

    parsed = pd.to_datetime(values, utc=utc, errors="coerce", format="ISO8601")
    again = values.notna() & parsed.isna()
    if again.any():
        parsed[again] = pd.to_datetime(values[again], utc=utc, errors="coerce", format="mixed")
    return parsed


def _naive(
    wall: pd.Series, naive: pd.Series, regions: pd.Series, read: FileRead, position: int, frame: pd.DataFrame
) -> pd.Series:
    """UTC instants of the naive wall times ``wall[naive]``, by the dataset's ``naive_timestamps``.

    ``frame``: the chunk, whose row numbers place a refusal's first naive time (``FileRead.where``).
    """
    import pandas as pd

    count, dataset, name, path = int(naive.sum()), read.dataset, wall.name, read.path
    if not count:
        return wall.dt.tz_localize("UTC")
    if dataset.naive_timestamps == "refuse":
        example = (wall[naive].iloc[0], regions[naive].iloc[0], read.where(frame, naive))
        read.problem((position, 1), Problem(NaiveTimestampError, count, example, _refused_naive(read, str(name))))
        return wall.dt.tz_localize("UTC")
    if dataset.naive_timestamps == "utc":
        read.note(
            (position, 0),
            count,
            lambda n, _: f"{path}: column '{name}': {n} timestamps without a UTC offset were taken as UTC",
        )
        return wall.dt.tz_localize("UTC")
    if read.regions is None:
        message = f"{path}: column '{name}': naive_timestamps: region_local needs the configured regions' zones"
        read.problem((position, 1), Problem(NaiveTimestampError, count, None, lambda n, e: message))
        return wall.dt.tz_localize("UTC")
    out = pd.Series(pd.NaT, index=wall.index, dtype="datetime64[ns, UTC]")
    region_text = texts(regions)
    for index, (region, zone) in enumerate(read.regions.items()):
        rows = naive & (region_text == region)
        if rows.any():
            out[rows] = _localize(wall[rows], zone, region, read, (position, index))
    read.note(
        (position, 2),
        count,
        lambda n, _: f"{path}: column '{name}': {n} timestamps without a UTC offset were read in their region's zone",
    )
    return out


def _refused_naive(read: FileRead, name: str) -> Callable[[int, Any], str]:
    def message(count: int, example: Any) -> str:
        wall, region, where = example
        return (
            f"{read.path}: column '{name}' has {counted(count, 'timestamp', 'timestamps')} without a UTC offset "
            f"(e.g. {str(wall)!r}{where}); write them with the offset of their place "
            f"({_offset_hint(wall, region, read.regions)}), or set "
            "naive_timestamps: region_local (each region's own zone) or naive_timestamps: utc "
            f"on dataset '{read.dataset.name}'"
        )

    return message


def _localize(wall: pd.Series, zone: str, region: str, read: FileRead, rank: tuple[int, int]) -> pd.Series:
    """``wall`` read in ``zone``; DST gaps and overlaps follow the dataset's policies and are counted."""
    import numpy as np

    dataset = read.dataset
    wall = wall.astype("datetime64[ns]")
    first = np.ones(len(wall), dtype=bool)  # True: the DST reading, i.e. the first of two
    gaps = wall.dt.tz_localize(zone, ambiguous=first, nonexistent="NaT").isna() & wall.notna()
    overlaps = wall.dt.tz_localize(zone, ambiguous="NaT", nonexistent="shift_forward").isna() & wall.notna()
    for kind, mask, policy in ((0, gaps, dataset.dst_gaps), (1, overlaps, dataset.dst_overlaps)):
        if mask.any():
            _dst_tally(read, (*rank, kind), int(mask.sum()), str(wall[mask].iloc[0]), wall.name, zone, region, policy)
    ambiguous = first if dataset.dst_overlaps != "latest" else ~first
    return wall.dt.tz_localize(zone, ambiguous=ambiguous, nonexistent="shift_forward").dt.tz_convert("UTC")


def _dst_tally(
    read: FileRead, rank: tuple[int, ...], count: int, example: str, name: Any, zone: str, region: str, policy: str
) -> None:
    """A refused DST gap or overlap as a problem, a shifted or chosen one as a note; counted over the file."""
    path, dataset = read.path, read.dataset
    kind = "gap" if rank[-1] == 0 else "overlap"
    key = "dst_gaps" if kind == "gap" else "dst_overlaps"
    if policy == "refuse":

        def refused(n: int, e: Any) -> str:
            return (
                f"{path}: column '{name}': {n} local times of region '{region}' ({zone}) fall in a "
                f"daylight-saving {kind} (e.g. {e!r}); write them with an offset, or set "
                f"{key}: {'shift' if kind == 'gap' else 'earliest'} on dataset '{dataset.name}'"
            )

        read.problem((rank[0], 2, *rank[1:]), Problem(TimestampError, count, example, refused))
        return
    what = "moved forward past the gap" if kind == "gap" else f"read as the {policy} of the two"
    read.note(
        (rank[0], 1, *rank[1:]),
        count,
        lambda n, _: (
            f"{path}: region '{region}': {n} local times in a daylight-saving {kind} ({zone}) "
            f"were {what} ({key}: {policy})"
        ),
    )


def _offset_hint(example: Any, region: Any, zones: Mapping[str, str] | None) -> str:
    """The example written with its region's own offset, e.g. '2026-03-08T01:30:00-05:00 for region 'EWR''."""
    import pandas as pd

    zone = (zones or {}).get(as_text(region)) if region is not None else None
    if zone is None:
        return "e.g. 2026-01-05T08:30:00+07:00"
    wall = pd.Timestamp(example)
    local = wall.tz_localize(zone, ambiguous=True, nonexistent="shift_forward")
    return f"e.g. {local.isoformat()} for region '{as_text(region)}' ({zone})"
