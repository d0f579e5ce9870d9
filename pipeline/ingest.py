"""Read a declared dataset from CSV or Parquet (a path or a glob) into a frame typed by its declaration.

Every way a file can be unusable gets its own error with a one-line message naming
the file (and the column, and how many rows) and what to do; nothing surfaces as a bare
parser traceback. Source columns are renamed by the dataset's ``renames`` first. Values
that parse but are wrong (nulls, out of range) are left for the Great Expectations suites in
:mod:`pipeline.validation` to report with counts.

Every row is accounted for: a :class:`RawTable` says, per file and region value, how many
rows were read, which were of regions the config does not declare (``undeclared_regions``)
and which were bad (a malformed line, a value that does not parse), each with its line
number. Bad rows fail the read (``bad_rows: fail``) or are set aside for the quarantine file
(``bad_rows: quarantine``). A "line" is as :mod:`pipeline.readers` numbers it.

Memory follows the rows kept, not the file: :mod:`pipeline.readers` reads a CSV in blocks
(pyarrow's streaming reader) and a Parquet file in batches, and each chunk is renamed, counted,
cut to the declared regions and typed before the next is read; only the typed rows of declared
regions are kept, and a build sets them down per region (:mod:`pipeline.spill`) so it holds one
region's rows at a time. A problem that fails the read is tallied over the whole file and reported once
at its end, so its message gives the file's count and first example whatever the chunk size
(``tests/bench/ingest.py`` and docs/benchmarks.md, "Ingest", have the figures).
"""

from __future__ import annotations

import csv
import glob
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.core.config import Dataset
from modelyard.pipeline.ingest_errors import (
    ColumnTypeError,
    DuplicateColumnError,
    EmptyFileError,
    HeaderOnlyError,
    IngestError,
    MalformedLineError,
    MissingColumnError,
    NaiveTimestampError,
    NoInputError,
    TimestampError,
    UndeclaredRegionError,
    UnsupportedFormatError,
)
from modelyard.pipeline.readers import LINE_COLUMN, no_duplicates, read_chunks
from modelyard.pipeline.spill import RegionSpill

if TYPE_CHECKING:
    import pandas as pd

__all__ = [  # the errors are raised here and in pipeline.readers; callers catch them from here
    "FILE_COLUMN",
    "LINE_COLUMN",
    "UNKNOWN_REGION",
    "BadRow",
    "ColumnTypeError",
    "DuplicateColumnError",
    "EmptyFileError",
    "HeaderOnlyError",
    "IngestError",
    "MalformedLineError",
    "MissingColumnError",
    "NaiveTimestampError",
    "NoInputError",
    "RawTable",
    "TimestampError",
    "UndeclaredRegionError",
    "UnsupportedFormatError",
    "input_files",
    "read_dataset",
    "region_rows",
    "undeclared_note",
]

# An ISO-8601 time that names its offset: ...Z, ...+07:00, ...-0500
OFFSET_PATTERN = r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
# A hidden column that travels with each row to the report: the file it came from (and LINE_COLUMN).
FILE_COLUMN = "__modelyard_file"
HIDDEN = [FILE_COLUMN, LINE_COLUMN]
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


@dataclass(frozen=True)
class RawTable:
    """The rows of every file of a source, typed, and what ingest decided on the way (for the report).

    Attributes:
        frame: The good rows of declared regions.
        origin: Each row's file and line (:data:`FILE_COLUMN`, :data:`LINE_COLUMN`), on the frame's index;
            None for rows the generator made.
        notes: What ingest decided (naive times read in a zone, DST gaps shifted, undeclared regions).
        read: Rows read per (file, region value), bad and undeclared ones included.
        undeclared: Rows per (file, region value) of regions the config does not declare (dropped).
        bad: Rows set aside under ``bad_rows: quarantine``.
        spill: Where the rows are when they were set down per region (``frame`` and ``origin`` are then
            empty): read one region with :func:`region_rows`.
    """

    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    origin: pd.DataFrame | None = None
    read: Counter[tuple[str, str]] = field(default_factory=Counter)
    undeclared: Counter[tuple[str, str]] = field(default_factory=Counter)
    bad: list[BadRow] = field(default_factory=list)
    spill: RegionSpill | None = field(default=None, repr=False)


@dataclass
class _Problem:
    """A reason to fail the read, tallied over a file's chunks: its count is the file's, its example the first."""

    error: type[IngestError]
    count: int
    example: Any
    message: Callable[[int, Any], str]

    def raise_(self) -> None:
        raise self.error(self.message(self.count, self.example))


@dataclass
class _Read:
    """What reading one file gathers, chunk by chunk, before its rows are typed and its problems reported."""

    path: Path
    dataset: Dataset
    regions: Mapping[str, str] | None
    notes: list[str]
    read: Counter[tuple[str, str]] = field(default_factory=Counter)
    undeclared: Counter[tuple[str, str]] = field(default_factory=Counter)
    bad: list[BadRow] = field(default_factory=list)
    # Ranked like the checks of one chunk (column, step, region, kind): the first of the file wins.
    problems: dict[tuple[int, ...], _Problem] = field(default_factory=dict)
    tallies: dict[tuple[int, ...], _Problem] = field(default_factory=dict)  # notes, with their counts
    malformed: list[tuple[int, str]] = field(default_factory=list)  # under bad_rows: fail
    refused: Counter[tuple[str, str]] = field(default_factory=Counter)  # under undeclared_regions: fail
    width: int = 0  # fields in the header

    @property
    def quarantine(self) -> bool:
        return self.dataset.bad_rows == "quarantine"

    @property
    def failing(self) -> bool:
        """A problem fails this file: later chunks are only tallied, their rows not kept."""
        return bool(self.malformed or self.refused or self.problems)

    def problem(self, rank: tuple[int, ...], problem: _Problem) -> None:
        _tally(self.problems, rank, problem)

    def note(self, rank: tuple[int, ...], count: int, message: Callable[[int, Any], str]) -> None:
        _tally(self.tallies, rank, _Problem(IngestError, count, None, message))

    def finish(self) -> None:
        """Raise the file's first problem (in the order one whole-file pass meets them), else write its notes.

        Raises:
            IngestError: a malformed line, an undeclared region, a value or time that does not fit.
        """
        if self.malformed:
            _raise_malformed(self)
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


def _tally(into: dict[tuple[int, ...], _Problem], rank: tuple[int, ...], problem: _Problem) -> None:
    if rank in into:
        into[rank].count += problem.count
    else:
        into[rank] = problem


def input_files(source: str | Path) -> list[Path]:
    """The files named by ``source``: one path, or every match of a glob, sorted.

    Raises:
        NoInputError: nothing matches.
    """
    text = str(source)
    if glob.has_magic(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not files:
            raise NoInputError(f"{text}: the glob matches no file")
        return files
    path = Path(text)
    if not path.is_file():
        raise NoInputError(f"{path}: no such file")
    return [path]


def read_dataset(
    source: str | Path,
    dataset: Dataset,
    required: list[str] | None = None,
    regions: Mapping[str, str] | None = None,
    spill: RegionSpill | None = None,
) -> RawTable:
    """Every file of ``source``, renamed and typed by ``dataset``, concatenated, every row accounted for.

    Files are read chunk by chunk (see the module's docstring): peak memory is one chunk's plus
    the typed rows of the declared regions, which the returned frame holds.

    Args:
        source: A CSV/Parquet path or a glob of them.
        dataset: The declaration: renames, column types, the naive-timestamp, region and bad-row policies.
        required: Columns that must be present (default: the time and region columns).
        regions: The configured regions' names and IANA zones. Given, rows of other regions are
            dropped and counted (or refused), and ``naive_timestamps: region_local`` can read local
            times; None: every region value is kept.
        spill: Where to set the typed rows down per region instead of holding them: the returned
            table's frame is then empty and :func:`region_rows` loads one region's rows from it.

    Returns:
        The rows (time column as UTC timestamps, int/float/bool columns as numbers, category and
        string columns as text), notes for the report and the counts of :class:`RawTable`.

    Raises:
        IngestError: a subclass naming the file, the column (or line) and the count (see this module).
    """

    notes: list[str] = []
    reads = [_Read(path, dataset, regions, notes) for path in input_files(source)]
    chunks = (chunk for read in reads for chunk in _read_one(read, required))
    if spill is None:
        frame = _concat(list(chunks))
    else:
        for chunk in chunks:
            spill.add(chunk)
        frame = spill.template if spill.template is not None else _concat([])
    table = RawTable(frame.drop(columns=HIDDEN), notes, origin=frame[HIDDEN], spill=spill)
    for read in reads:
        table.read.update(read.read)
        table.undeclared.update(read.undeclared)
        table.bad.extend(read.bad)
    if table.undeclared:
        notes.append(undeclared_note(table.undeclared))
    return table


def region_rows(table: RawTable, region_column: str, region: str) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The rows of ``region`` in ``table`` and their origin (file, line), from its spill or its frame."""
    if table.spill is not None:
        frame = table.spill.load(region)
        return frame.drop(columns=HIDDEN), frame[HIDDEN]
    mine = (table.frame[region_column] == region).to_numpy()
    origin = table.origin[mine].reset_index(drop=True) if table.origin is not None else None
    return table.frame[mine].reset_index(drop=True), origin


def _concat(chunks: list[pd.DataFrame]) -> pd.DataFrame:
    """The chunks as one frame, a column at a time, each chunk's column freed once copied (not twice the rows)."""
    import pandas as pd

    if not chunks:
        return pd.DataFrame(columns=HIDDEN)
    if len(chunks) == 1:
        return chunks[0]
    columns = [pd.concat([chunk.pop(name) for chunk in chunks], ignore_index=True) for name in list(chunks[0].columns)]
    chunks.clear()
    return pd.concat(columns, axis=1)


def undeclared_note(undeclared: Counter[tuple[str, str]]) -> str:
    """'rows of regions the config does not declare were dropped: EWR (101509), ...'."""
    per_region: Counter[str] = Counter()
    for (_, region), count in undeclared.items():
        per_region[region] += count
    listed = ", ".join(f"{region!r} ({count})" for region, count in per_region.most_common())
    return f"{sum(per_region.values())} rows of regions the config does not declare were dropped: {listed}"


def _read_one(read: _Read, required: list[str] | None) -> Iterator[pd.DataFrame]:
    """The typed chunks of one file, as they are read (an empty one at the end when none had rows, for its columns).

    A file that fails raises at its end (:meth:`_Read.finish`), after the chunks given so far:
    whoever keeps them drops them with the error.
    """
    given = False
    empty: pd.DataFrame | None = None
    rows = malformed = 0
    for frame, bad_lines in read_chunks(read.path, _numeric_sources(read.dataset)):
        rows, malformed = rows + len(frame), malformed + len(bad_lines)
        if not (rows or malformed):
            continue  # a header-only file is refused before its columns are looked at
        if not read.width:
            _check_columns(read, [str(c) for c in frame.columns if c != LINE_COLUMN], required)
        typed = _chunk(read, frame, bad_lines)
        if read.failing or typed is None:
            continue  # the file fails at its end: give nothing meanwhile
        if len(typed):
            given = True
            yield typed
        else:
            empty = typed
    if not rows and not malformed:
        raise HeaderOnlyError(f"{read.path}: the file has a header but no rows")
    read.finish()
    if not given and empty is not None:
        yield empty


def _numeric_sources(dataset: Dataset) -> set[str]:
    """Source names (before renames) of the declared float and int columns."""
    numeric = {name for name, column in dataset.columns.items() if column.type in ("float", "int")}
    renamed = {source for source, name in dataset.renames.items() if name in numeric}
    return renamed | (numeric - set(dataset.renames.values()))


def _check_columns(read: _Read, columns: list[str], required: list[str] | None) -> None:
    """Duplicates after renames, and the columns the family and the dataset need."""
    path, dataset = read.path, read.dataset
    renamed = [dataset.renames.get(c, c) for c in columns]
    no_duplicates(path, renamed, "after renames")
    needed = required or [dataset.time_column, dataset.region_column]
    missing = [c for c in needed if c not in renamed]
    if missing:
        raise MissingColumnError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)} "
            f"(dataset '{dataset.name}' needs {', '.join(needed)}; map source names with renames)"
        )


def _chunk(read: _Read, frame: pd.DataFrame, malformed: list[tuple[int, str]]) -> pd.DataFrame | None:
    """One chunk renamed, counted, cut to the declared regions and typed; None while the file is failing."""
    dataset = read.dataset
    frame = frame.rename(columns=dataset.renames)
    _malformed(read, malformed, [str(c) for c in frame.columns if c != LINE_COLUMN])
    if read.malformed:
        return None
    frame[FILE_COLUMN] = _one_value(str(read.path), len(frame))
    region = _texts(frame[dataset.region_column]).fillna(UNKNOWN_REGION)
    for value, count in region.value_counts(sort=False).items():
        read.read[(str(read.path), str(value))] += int(count)
    frame = _declared_regions(read, frame, region)
    if read.refused:
        return None
    return _type_chunk(frame, read)


def _one_value(text: str, rows: int) -> pd.Categorical:
    """``text`` in each of ``rows`` rows, a byte a row (a file's path on every row it holds)."""
    import numpy as np
    import pandas as pd

    return pd.Categorical.from_codes(np.zeros(rows, dtype=np.int8), categories=[text])


def _malformed(read: _Read, malformed: list[tuple[int, str]], header: list[str]) -> None:
    """Count malformed lines by the region their fields name; keep them for the error, or for quarantine."""
    read.width = len(header)
    if not malformed:
        return
    if not read.quarantine:
        read.malformed.extend(malformed)
        return
    path, dataset = read.path, read.dataset
    position = header.index(dataset.region_column)
    for line, text in malformed:
        fields = next(csv.reader([text]), [])
        region = fields[position] if position < len(fields) and fields[position] else UNKNOWN_REGION
        read.read[(str(path), region)] += 1
        reason = f"malformed line ({len(fields)} fields, expected {len(header)})"
        read.bad.append(BadRow(str(path), line, region, reason, text))


def _raise_malformed(read: _Read) -> None:
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


def _declared_regions(read: _Read, frame: pd.DataFrame, region: pd.Series) -> pd.DataFrame:
    if read.regions is None:
        return frame
    outside = ~region.isin(list(read.regions))
    if not outside.any():
        return frame
    counts = Counter({(str(read.path), str(r)): int(n) for r, n in region[outside].value_counts(sort=False).items()})
    if read.dataset.undeclared_regions == "fail":
        read.refused.update(counts)
        return frame.iloc[:0]
    read.undeclared.update(counts)
    return frame[~outside].reset_index(drop=True)


def _typed(frame: pd.DataFrame, read: _Read) -> pd.DataFrame:
    """Type every declared column of ``frame`` (one chunk, read alone) and report its problems at once.

    Raises:
        IngestError: a value that does not parse (under ``bad_rows: fail``), a refused naive or DST time.
    """
    typed = _type_chunk(frame, read)
    read.finish()
    return typed


def _type_chunk(frame: pd.DataFrame, read: _Read) -> pd.DataFrame:
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
                frame[name] = _timestamps(frame[name], frame[dataset.region_column], read, position)
            elif column.type in ("float", "int"):
                frame[name] = _numbers(frame[name], read.path, whole=column.type == "int")
            elif column.type == "bool":
                frame[name] = _booleans(frame[name], read.path)
            else:
                frame[name] = _texts(frame[name]).astype("str")
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

    def __init__(self, problem: _Problem, mask: pd.Series, parsed: pd.Series, reason: str) -> None:
        super().__init__(reason)
        self.problem, self.mask, self.parsed, self.reason = problem, mask, parsed, reason


def _set_aside(read: _Read, frame: pd.DataFrame, mask: pd.Series, reason: str) -> None:
    region = _texts(frame[read.dataset.region_column]).fillna(UNKNOWN_REGION)
    for index in frame.index[mask]:
        read.bad.append(BadRow(str(read.path), int(frame.at[index, LINE_COLUMN]), str(region[index]), reason))


def _whole(values: pd.Series) -> pd.Series:
    if values.notna().all() and (values == values.round()).all():
        return values.astype("int64")
    return values


def _text(value: object) -> str:
    # A numeric id read from Parquet (7, 7.0) is the same category as the text "7" of a CSV.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _texts(values: pd.Series) -> pd.Series:
    """``values`` as text (nulls kept); a column of Python strings (a CSV's) is already text."""
    import pandas as pd

    if isinstance(values.dtype, pd.StringDtype) or (
        values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty")
    ):
        return values
    return values.map(_text, na_action="ignore")


def _booleans(values: pd.Series, path: Path) -> pd.Series:
    import pandas as pd

    text = values.astype(str).str.strip().str.lower()
    parsed = pd.Series(float("nan"), index=values.index)
    parsed[text.isin(TRUE_TEXT)] = 1.0
    parsed[text.isin(FALSE_TEXT)] = 0.0
    bad = values.notna() & parsed.isna()
    if bad.any():
        raise _bad_values(ColumnTypeError, values, bad, parsed, path, "a boolean", "use true/false or 1/0")
    return parsed.astype("int64") if parsed.notna().all() else parsed


def _numbers(values: pd.Series, path: Path, *, whole: bool) -> pd.Series:
    import pandas as pd

    parsed = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & parsed.isna()
    if bad.any():
        raise _bad_values(
            ColumnTypeError, values, bad, parsed.astype("float64"), path, "a number", "expected a number in every row"
        )
    parsed = parsed.astype("float64")
    return _whole(parsed) if whole else parsed


def _timestamps(values: pd.Series, regions: pd.Series, read: _Read, position: int) -> pd.Series:
    """UTC instants of ``values``; naive times by the dataset's policy, unparseable ones a problem."""
    import pandas as pd

    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return _naive(values, values.notna(), regions, read, position)
    parsed = _parse_times(values, utc=True)
    bad = values.notna() & parsed.isna()
    text = values.astype(str).str.strip()
    naive = values.notna() & ~bad & ~text.str.contains(OFFSET_PATTERN, regex=True)
    if naive.any():
        local = _parse_times(values.where(naive), utc=False)
        parsed = parsed.where(~naive, _naive(local, naive, regions, read, position))
    if bad.any():
        raise _bad_values(
            TimestampError, values, bad, parsed, read.path, "a timestamp", "use ISO 8601 such as 2026-01-05T08:30:00Z"
        )
    return parsed


def _bad_values(
    error: type[IngestError], values: pd.Series, bad: pd.Series, parsed: pd.Series, path: Any, kind: str, fix: str
) -> _BadValues:
    """The problem of column ``values``'s ``bad`` rows: each is not ``kind`` ("a number"); ``fix`` says what to do."""
    name = values.name
    problem = _Problem(
        error,
        int(bad.sum()),
        values[bad].iloc[0],
        lambda count, example: (
            f"{path}: column '{name}' has {count} values that are not {kind.split(' ', 1)[1]}s "
            f"(e.g. {example!r}); {fix}"
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


def _naive(wall: pd.Series, naive: pd.Series, regions: pd.Series, read: _Read, position: int) -> pd.Series:
    """UTC instants of the naive wall times ``wall[naive]``, by the dataset's ``naive_timestamps``."""
    import pandas as pd

    count, dataset, name, path = int(naive.sum()), read.dataset, wall.name, read.path
    if not count:
        return wall.dt.tz_localize("UTC")
    if dataset.naive_timestamps == "refuse":
        example = (wall[naive].iloc[0], regions[naive].iloc[0])
        read.problem((position, 1), _Problem(NaiveTimestampError, count, example, _refused_naive(read, str(name))))
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
        read.problem((position, 1), _Problem(NaiveTimestampError, count, None, lambda n, e: message))
        return wall.dt.tz_localize("UTC")
    out = pd.Series(pd.NaT, index=wall.index, dtype="datetime64[ns, UTC]")
    region_text = _texts(regions)
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


def _refused_naive(read: _Read, name: str) -> Callable[[int, Any], str]:
    def message(count: int, example: Any) -> str:
        wall, region = example
        return (
            f"{read.path}: column '{name}' has {count} timestamps without a UTC offset "
            f"(e.g. {str(wall)!r}); write them with the offset of their place "
            f"({_offset_hint(wall, region, read.regions)}), or set "
            "naive_timestamps: region_local (each region's own zone) or naive_timestamps: utc "
            f"on dataset '{read.dataset.name}'"
        )

    return message


def _localize(wall: pd.Series, zone: str, region: str, read: _Read, rank: tuple[int, int]) -> pd.Series:
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
    read: _Read, rank: tuple[int, ...], count: int, example: str, name: Any, zone: str, region: str, policy: str
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

        read.problem((rank[0], 2, *rank[1:]), _Problem(TimestampError, count, example, refused))
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

    zone = (zones or {}).get(_text(region)) if region is not None else None
    if zone is None:
        return "e.g. 2026-01-05T08:30:00+07:00"
    wall = pd.Timestamp(example)
    local = wall.tz_localize(zone, ambiguous=True, nonexistent="shift_forward")
    return f"e.g. {local.isoformat()} for region '{_text(region)}' ({zone})"
