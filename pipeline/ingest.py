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
(``bad_rows: quarantine``). CSV files are read in blocks by pyarrow's streaming reader; a
"line" is the file's row number counting the header as line 1 (the physical line unless a
quoted value spans lines); in a Parquet file it is the row's position from 1.
"""

from __future__ import annotations

import csv
import glob
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.core.config import Dataset
from modelyard.core.errors import ModelyardError

if TYPE_CHECKING:
    import pandas as pd

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
# An ISO-8601 time that names its offset: ...Z, ...+07:00, ...-0500
OFFSET_PATTERN = r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
# Hidden columns that travel with each row to the report: which file and line it came from.
FILE_COLUMN = "__modelyard_file"
LINE_COLUMN = "__modelyard_line"
UNKNOWN_REGION = "?"  # a malformed line too short to hold its region, or a null region
BLOCK_BYTES = 16 << 20
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
    """

    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    origin: pd.DataFrame | None = None
    read: Counter[tuple[str, str]] = field(default_factory=Counter)
    undeclared: Counter[tuple[str, str]] = field(default_factory=Counter)
    bad: list[BadRow] = field(default_factory=list)


class IngestError(ModelyardError, ValueError):
    """A raw input cannot be read; the one-line message names the file and the cause."""


class NoInputError(IngestError):
    """The path does not exist or the glob matches no file."""


class UnsupportedFormatError(IngestError):
    """The file is not CSV or Parquet (by extension or by content)."""


class EmptyFileError(IngestError):
    """The file has no bytes (or no header)."""


class HeaderOnlyError(IngestError):
    """The file has a header but no rows."""


class MissingColumnError(IngestError):
    """A column the family needs is absent."""


class ColumnTypeError(IngestError):
    """A column holds values of the wrong type (text in a numeric column)."""


class TimestampError(IngestError):
    """The time column holds values that are not timestamps."""


class NaiveTimestampError(TimestampError):
    """Timestamps without a UTC offset, and the dataset says ``naive_timestamps: refuse``."""


class DuplicateColumnError(IngestError):
    """The header names a column twice (a parser would silently drop or rename one)."""


class MalformedLineError(IngestError):
    """A CSV line has more or fewer fields than the header, and the dataset says ``bad_rows: fail``."""


class UndeclaredRegionError(IngestError):
    """Rows of regions the config does not declare, and the dataset says ``undeclared_regions: fail``."""


@dataclass
class _Read:
    """What reading one file gathers before the frame is typed."""

    path: Path
    dataset: Dataset
    regions: Mapping[str, str] | None
    notes: list[str]
    read: Counter[tuple[str, str]] = field(default_factory=Counter)
    undeclared: Counter[tuple[str, str]] = field(default_factory=Counter)
    bad: list[BadRow] = field(default_factory=list)

    @property
    def quarantine(self) -> bool:
        return self.dataset.bad_rows == "quarantine"


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
) -> RawTable:
    """Every file of ``source``, renamed and typed by ``dataset``, concatenated, every row accounted for.

    Args:
        source: A CSV/Parquet path or a glob of them.
        dataset: The declaration: renames, column types, the naive-timestamp, region and bad-row policies.
        required: Columns that must be present (default: the time and region columns).
        regions: The configured regions' names and IANA zones. Given, rows of other regions are
            dropped and counted (or refused), and ``naive_timestamps: region_local`` can read local
            times; None: every region value is kept.

    Returns:
        The rows (time column as UTC timestamps, int/float/bool columns as numbers, category and
        string columns as text), notes for the report and the counts of :class:`RawTable`.

    Raises:
        IngestError: a subclass naming the file, the column (or line) and the count (see this module).
    """
    import pandas as pd

    notes: list[str] = []
    reads = [_Read(path, dataset, regions, notes) for path in input_files(source)]
    frames = [_read_one(read, required) for read in reads]
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    hidden = [FILE_COLUMN, LINE_COLUMN]
    table = RawTable(frame.drop(columns=hidden), notes, origin=frame[hidden])
    for read in reads:
        table.read.update(read.read)
        table.undeclared.update(read.undeclared)
        table.bad.extend(read.bad)
    if table.undeclared:
        notes.append(undeclared_note(table.undeclared))
    return table


def undeclared_note(undeclared: Counter[tuple[str, str]]) -> str:
    """'rows of regions the config does not declare were dropped: EWR (101509), ...'."""
    per_region: Counter[str] = Counter()
    for (_, region), count in undeclared.items():
        per_region[region] += count
    listed = ", ".join(f"{region!r} ({count})" for region, count in per_region.most_common())
    return f"{sum(per_region.values())} rows of regions the config does not declare were dropped: {listed}"


def _read_one(read: _Read, required: list[str] | None) -> pd.DataFrame:
    path, dataset = read.path, read.dataset
    frame, malformed = _read_table(path)
    frame = frame.rename(columns=dataset.renames)
    _no_duplicates(path, [str(c) for c in frame.columns], "after renames")
    needed = required or [dataset.time_column, dataset.region_column]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise MissingColumnError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)} "
            f"(dataset '{dataset.name}' needs {', '.join(needed)}; map source names with renames)"
        )
    _malformed(read, malformed, [str(c) for c in frame.columns if c != LINE_COLUMN])
    frame[FILE_COLUMN] = str(path)
    region = frame[dataset.region_column].map(_text, na_action="ignore").fillna(UNKNOWN_REGION)
    read.read.update(Counter((str(path), str(r)) for r in region))
    frame = _declared_regions(read, frame, region)
    return _typed(frame, read)


def _malformed(read: _Read, malformed: list[tuple[int, str]], header: list[str]) -> None:
    """Count malformed lines by the region their fields name; fail, or keep them for quarantine."""
    if not malformed:
        return
    path, dataset = read.path, read.dataset
    if not read.quarantine:
        line, text = malformed[0]
        others = [n for n, _ in malformed[1:]]
        more = f" (and {len(others)} more: lines {_lines(others)})" if others else ""
        raise MalformedLineError(
            f"{path}: line {line} has {_fields(text)} fields, expected {len(header)} ({text[:80]!r}){more}; "
            f"fix the file, or set bad_rows: quarantine with max_bad_fraction on dataset '{dataset.name}'"
        )
    position = header.index(dataset.region_column)
    for line, text in malformed:
        fields = next(csv.reader([text]), [])
        region = fields[position] if position < len(fields) and fields[position] else UNKNOWN_REGION
        read.read[(str(path), region)] += 1
        reason = f"malformed line ({len(fields)} fields, expected {len(header)})"
        read.bad.append(BadRow(str(path), line, region, reason, text))


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
    counts = Counter((str(read.path), str(r)) for r in region[outside])
    if read.dataset.undeclared_regions == "fail":
        listed = ", ".join(f"{r!r} ({n})" for (_, r), n in counts.most_common())
        raise UndeclaredRegionError(
            f"{read.path}: {int(outside.sum())} rows of regions the config does not declare: {listed}; "
            f"declare them under regions:, or set undeclared_regions: report on dataset '{read.dataset.name}'"
        )
    read.undeclared.update(counts)
    return frame[~outside].reset_index(drop=True)


def _no_duplicates(path: Path, names: list[str], where: str) -> None:
    twice = {name: n for name, n in Counter(names).items() if n > 1}
    if twice:
        listed = ", ".join(f"'{name}' ({n} times)" for name, n in twice.items())
        raise DuplicateColumnError(f"{path}: the header names column(s) {listed} {where}; give each column one name")


def _read_table(path: Path) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """The file's rows as read (CSV: all text) with their line numbers, and its malformed lines."""
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise UnsupportedFormatError(
            f"{path}: '{suffix or 'no extension'}' is not a supported format (use .csv or .parquet)"
        )
    if path.stat().st_size == 0:
        raise EmptyFileError(f"{path}: the file is empty (expected a header and rows)")
    if suffix in CSV_SUFFIXES:
        frame, malformed = _read_csv(path)
    else:
        frame, malformed = _read_parquet(path), []
        frame[LINE_COLUMN] = range(1, len(frame) + 1)
    if frame.empty and not malformed:
        raise HeaderOnlyError(f"{path}: the file has a header but no rows")
    return frame, malformed


def _read_csv(path: Path) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """Every row as text, read in blocks; lines with the wrong number of fields are set aside with their number."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv

    header = _csv_header(path)
    if not any(name.strip() for name in header):
        raise EmptyFileError(f"{path}: the file has no header and no rows")
    _no_duplicates(path, header, "in the CSV header")
    malformed: list[tuple[int, str]] = []

    def set_aside(row: Any) -> str:
        malformed.append((int(row.number or 0), str(row.text)))
        return "skip"

    text = dict.fromkeys(header, pa.string())
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=False, block_size=BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=set_aside),
            convert_options=pacsv.ConvertOptions(
                column_types=text, strings_can_be_null=True, null_values=sorted(pd._libs.parsers.STR_NA_VALUES)
            ),
        )
        table = pa.Table.from_batches(list(reader), schema=reader.schema)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise UnsupportedFormatError(f"{path}: not readable as CSV ({_first_line(exc)})") from exc
    frame = table.to_pandas().astype(object)
    bad = {line for line, _ in malformed}
    lines = [n for n in range(2, len(frame) + len(bad) + 2) if n not in bad]
    frame[LINE_COLUMN] = lines[: len(frame)]
    return frame, malformed


def _csv_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return next(csv.reader(handle), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UnsupportedFormatError(f"{path}: not readable as CSV ({_first_line(exc)})") from exc


def _read_parquet(path: Path) -> pd.DataFrame:
    import pandas as pd
    import pyarrow as pa

    try:
        return pd.read_parquet(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UnsupportedFormatError(f"{path}: not a valid Parquet file ({_first_line(exc)})") from exc


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _typed(frame: pd.DataFrame, read: _Read) -> pd.DataFrame:
    """Type every declared column; a value that does not parse fails the read or sets its row aside."""
    import pandas as pd

    frame = frame.copy()
    dataset = read.dataset
    bad = pd.Series(False, index=frame.index)
    # Text first: the region column gives each naive time its zone.
    ordered = sorted(dataset.columns.items(), key=lambda item: item[1].type == "timestamp")
    for name, column in ordered:
        if name not in frame.columns:
            continue
        try:
            if column.type == "timestamp":
                frame[name] = _timestamps(frame[name], frame[dataset.region_column], read)
            elif column.type in ("float", "int"):
                frame[name] = _numbers(frame[name], read.path, whole=column.type == "int")
            elif column.type == "bool":
                frame[name] = _booleans(frame[name], read.path)
            else:
                frame[name] = frame[name].map(_text, na_action="ignore").astype(object).where(frame[name].notna())
        except _BadValues as exc:
            if not read.quarantine:
                raise exc.error from None
            _set_aside(read, frame, exc.mask & ~bad, exc.reason)
            bad |= exc.mask
            frame[name] = exc.parsed
    if bad.any():
        frame = frame[~bad]
        for name, column in dataset.columns.items():  # whole numbers once their bad rows are gone
            if column.type == "int" and name in frame.columns:
                frame[name] = _whole(frame[name])
    return frame.reset_index(drop=True)


class _BadValues(Exception):
    """Internal: the typed error a column would raise, with the offending rows for quarantine."""

    def __init__(self, error: IngestError, mask: pd.Series, parsed: pd.Series, reason: str) -> None:
        super().__init__(str(error))
        self.error, self.mask, self.parsed, self.reason = error, mask, parsed, reason


def _set_aside(read: _Read, frame: pd.DataFrame, mask: pd.Series, reason: str) -> None:
    region = frame[read.dataset.region_column].map(_text, na_action="ignore").fillna(UNKNOWN_REGION)
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


def _booleans(values: pd.Series, path: Path) -> pd.Series:
    import pandas as pd

    text = values.astype(str).str.strip().str.lower()
    parsed = pd.Series(float("nan"), index=values.index)
    parsed[text.isin(TRUE_TEXT)] = 1.0
    parsed[text.isin(FALSE_TEXT)] = 0.0
    bad = values.notna() & parsed.isna()
    if bad.any():
        error = ColumnTypeError(
            f"{path}: column '{values.name}' has {int(bad.sum())} values that are not booleans "
            f"(e.g. {values[bad].iloc[0]!r}); use true/false or 1/0"
        )
        raise _BadValues(error, bad, parsed, f"column '{values.name}': not a boolean")
    return parsed.astype("int64") if parsed.notna().all() else parsed


def _numbers(values: pd.Series, path: Path, *, whole: bool) -> pd.Series:
    import pandas as pd

    parsed = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & parsed.isna()
    if bad.any():
        example = values[bad].iloc[0]
        error = ColumnTypeError(
            f"{path}: column '{values.name}' has {int(bad.sum())} values that are not numbers "
            f"(e.g. {example!r}); expected a number in every row"
        )
        raise _BadValues(error, bad, parsed.astype("float64"), f"column '{values.name}': not a number")
    parsed = parsed.astype("float64")
    return _whole(parsed) if whole else parsed


def _timestamps(values: pd.Series, regions: pd.Series, read: _Read) -> pd.Series:
    import pandas as pd

    name, path = values.name, read.path
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return _naive(values, values.notna(), regions, read)
    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
    bad = values.notna() & parsed.isna()
    if bad.any():
        error = TimestampError(
            f"{path}: column '{name}' has {int(bad.sum())} values that are not timestamps "
            f"(e.g. {values[bad].iloc[0]!r}); use ISO 8601 such as 2026-01-05T08:30:00Z"
        )
        raise _BadValues(error, bad, parsed, f"column '{name}': not a timestamp")
    text = values.astype(str).str.strip()
    naive = values.notna() & ~text.str.contains(OFFSET_PATTERN, regex=True)
    if not naive.any():
        return parsed
    local = pd.to_datetime(values.where(naive), errors="coerce", format="mixed")
    return parsed.where(~naive, _naive(local, naive, regions, read))


def _naive(wall: pd.Series, naive: pd.Series, regions: pd.Series, read: _Read) -> pd.Series:
    """UTC instants of the naive wall times ``wall[naive]``, by the dataset's ``naive_timestamps``."""
    import pandas as pd

    count, dataset, name = int(naive.sum()), read.dataset, wall.name
    if not count:
        return wall.dt.tz_localize("UTC")
    if dataset.naive_timestamps == "refuse":
        raise NaiveTimestampError(
            f"{read.path}: column '{name}' has {count} timestamps without a UTC offset "
            f"(e.g. {str(wall[naive].iloc[0])!r}); write them with the offset of their place "
            f"({_offset_hint(wall[naive].iloc[0], regions[naive].iloc[0], read.regions)}), or set "
            "naive_timestamps: region_local (each region's own zone) or naive_timestamps: utc "
            f"on dataset '{dataset.name}'"
        )
    if dataset.naive_timestamps == "utc":
        read.notes.append(f"{read.path}: column '{name}': {count} timestamps without a UTC offset were taken as UTC")
        return wall.dt.tz_localize("UTC")
    if read.regions is None:
        raise NaiveTimestampError(
            f"{read.path}: column '{name}': naive_timestamps: region_local needs the configured regions' zones"
        )
    out = pd.Series(pd.NaT, index=wall.index, dtype="datetime64[ns, UTC]")
    region_text = regions.map(_text, na_action="ignore")
    for region, zone in read.regions.items():
        rows = naive & (region_text == region)
        if rows.any():
            out[rows] = _localize(wall[rows], zone, region, read)
    read.notes.append(
        f"{read.path}: column '{name}': {count} timestamps without a UTC offset were read in their region's zone"
    )
    return out


def _localize(wall: pd.Series, zone: str, region: str, read: _Read) -> pd.Series:
    """``wall`` read in ``zone``; DST gaps and overlaps follow the dataset's policies and are counted."""
    import numpy as np

    dataset, name = read.dataset, wall.name
    wall = wall.astype("datetime64[ns]")
    first = np.ones(len(wall), dtype=bool)  # True: the DST reading, i.e. the first of two
    gaps = wall.dt.tz_localize(zone, ambiguous=first, nonexistent="NaT").isna() & wall.notna()
    overlaps = wall.dt.tz_localize(zone, ambiguous="NaT", nonexistent="shift_forward").isna() & wall.notna()
    for kind, mask, policy in (("gap", gaps, dataset.dst_gaps), ("overlap", overlaps, dataset.dst_overlaps)):
        if not mask.any():
            continue
        key = "dst_gaps" if kind == "gap" else "dst_overlaps"
        if policy == "refuse":
            raise TimestampError(
                f"{read.path}: column '{name}': {int(mask.sum())} local times of region '{region}' ({zone}) fall in a "
                f"daylight-saving {kind} (e.g. {str(wall[mask].iloc[0])!r}); write them with an offset, or set "
                f"{key}: {'shift' if kind == 'gap' else 'earliest'} on dataset '{dataset.name}'"
            )
        what = "moved forward past the gap" if kind == "gap" else f"read as the {policy} of the two"
        read.notes.append(
            f"{read.path}: region '{region}': {int(mask.sum())} local times in a daylight-saving {kind} ({zone}) "
            f"were {what} ({key}: {policy})"
        )
    ambiguous = first if dataset.dst_overlaps != "latest" else ~first
    return wall.dt.tz_localize(zone, ambiguous=ambiguous, nonexistent="shift_forward").dt.tz_convert("UTC")


def _offset_hint(example: Any, region: Any, zones: Mapping[str, str] | None) -> str:
    """The example written with its region's own offset, e.g. '2026-03-08T01:30:00-05:00 for region 'EWR''."""
    import pandas as pd

    zone = (zones or {}).get(_text(region)) if region is not None else None
    if zone is None:
        return "e.g. 2026-01-05T08:30:00+07:00"
    wall = pd.Timestamp(example)
    local = wall.tz_localize(zone, ambiguous=True, nonexistent="shift_forward")
    return f"e.g. {local.isoformat()} for region '{_text(region)}' ({zone})"
