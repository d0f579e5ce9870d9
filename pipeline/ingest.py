"""Read a declared dataset from CSV or Parquet (a path or a glob) into a frame typed by its declaration.

Every way a file can be unusable gets its own error with a one-line message naming
the file (and the column, and how many rows) and what to do; nothing surfaces as a bare
parser traceback. Source columns are renamed by the dataset's ``renames`` first. Values
that parse but are wrong (nulls, out of range, unknown regions) are left for the Great
Expectations suites in :mod:`pipeline.validation` to report with counts.
"""

from __future__ import annotations

import csv
import glob
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.core.config import Dataset
from modelyard.core.errors import ModelyardError

if TYPE_CHECKING:
    import pandas as pd

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
# An ISO-8601 time that names its offset: ...Z, ...+07:00, ...-0500
OFFSET_PATTERN = r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
TRUE_TEXT = frozenset({"true", "t", "yes", "y", "1", "1.0"})
FALSE_TEXT = frozenset({"false", "f", "no", "n", "0", "0.0"})


@dataclass(frozen=True)
class RawTable:
    """The rows of every file of a source, typed, and what ingest decided on the way (for the report)."""

    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)


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


def read_dataset(source: str | Path, dataset: Dataset, required: list[str] | None = None) -> RawTable:
    """Every file of ``source``, renamed and typed by ``dataset``, concatenated.

    Args:
        source: A CSV/Parquet path or a glob of them.
        dataset: The declaration: renames, column types, the naive-timestamp policy.
        required: Columns that must be present (default: the time and region columns).

    Returns:
        The rows (time column as UTC timestamps, int/float/bool columns as numbers, category and
        string columns as text) and notes for the report (e.g. naive times taken as UTC).

    Raises:
        IngestError: a subclass naming the file, the column and the count (see this module).
    """
    import pandas as pd

    notes: list[str] = []
    frames = [_read_one(path, dataset, required, notes) for path in input_files(source)]
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return RawTable(frame, notes)


def _read_one(path: Path, dataset: Dataset, required: list[str] | None, notes: list[str]) -> pd.DataFrame:
    frame = _read_table(path).rename(columns=dataset.renames)
    _no_duplicates(path, [str(c) for c in frame.columns], "after renames")
    needed = required or [dataset.time_column, dataset.region_column]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise MissingColumnError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)} "
            f"(dataset '{dataset.name}' needs {', '.join(needed)}; map source names with renames)"
        )
    return _typed(frame, path, dataset, notes)


def _no_duplicates(path: Path, names: list[str], where: str) -> None:
    twice = {name: n for name, n in Counter(names).items() if n > 1}
    if twice:
        listed = ", ".join(f"'{name}' ({n} times)" for name, n in twice.items())
        raise DuplicateColumnError(f"{path}: the header names column(s) {listed} {where}; give each column one name")


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise UnsupportedFormatError(
            f"{path}: '{suffix or 'no extension'}' is not a supported format (use .csv or .parquet)"
        )
    if path.stat().st_size == 0:
        raise EmptyFileError(f"{path}: the file is empty (expected a header and rows)")
    frame = _read_csv(path) if suffix in CSV_SUFFIXES else _read_parquet(path)
    if frame.empty:
        raise HeaderOnlyError(f"{path}: the file has a header but no rows")
    return frame


def _read_csv(path: Path) -> pd.DataFrame:
    import pandas as pd

    _no_duplicates(path, _csv_header(path), "in the CSV header")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=True)
    except pd.errors.EmptyDataError as exc:
        raise EmptyFileError(f"{path}: the file has no header and no rows") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UnsupportedFormatError(f"{path}: not readable as CSV ({_first_line(exc)})") from exc


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


def _typed(frame: pd.DataFrame, path: Path, dataset: Dataset, notes: list[str]) -> pd.DataFrame:
    frame = frame.copy()
    for name, column in dataset.columns.items():
        if name not in frame.columns:
            continue
        if column.type == "timestamp":
            frame[name] = _timestamps(frame[name], path, dataset, notes)
        elif column.type in ("float", "int"):
            frame[name] = _numbers(frame[name], path, whole=column.type == "int")
        elif column.type == "bool":
            frame[name] = _booleans(frame[name], path)
        else:
            frame[name] = frame[name].map(_text, na_action="ignore").astype(object).where(frame[name].notna())
    return frame


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
        raise ColumnTypeError(
            f"{path}: column '{values.name}' has {int(bad.sum())} values that are not booleans "
            f"(e.g. {values[bad].iloc[0]!r}); use true/false or 1/0"
        )
    return parsed.astype("int64") if parsed.notna().all() else parsed


def _numbers(values: pd.Series, path: Path, *, whole: bool) -> pd.Series:
    import pandas as pd

    parsed = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & parsed.isna()
    if bad.any():
        example = values[bad].iloc[0]
        raise ColumnTypeError(
            f"{path}: column '{values.name}' has {int(bad.sum())} values that are not numbers "
            f"(e.g. {example!r}); expected a number in every row"
        )
    parsed = parsed.astype("float64")
    if whole and parsed.notna().all() and (parsed == parsed.round()).all():
        return parsed.astype("int64")
    return parsed


def _timestamps(values: pd.Series, path: Path, dataset: Dataset, notes: list[str]) -> pd.Series:
    import pandas as pd

    name = values.name
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        _naive(path, dataset, name, values.notna(), values, notes)
        return values.dt.tz_localize("UTC")
    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
    bad = values.notna() & parsed.isna()
    if bad.any():
        raise TimestampError(
            f"{path}: column '{name}' has {int(bad.sum())} values that are not timestamps "
            f"(e.g. {values[bad].iloc[0]!r}); use ISO 8601 such as 2026-01-05T08:30:00Z"
        )
    text = values.astype(str).str.strip()
    _naive(path, dataset, name, values.notna() & ~text.str.contains(OFFSET_PATTERN, regex=True), values, notes)
    return parsed


def _naive(path: Path, dataset: Dataset, name: object, naive: pd.Series, values: pd.Series, notes: list[str]) -> None:
    count = int(naive.sum())
    if not count:
        return
    if dataset.naive_timestamps == "refuse":
        raise NaiveTimestampError(
            f"{path}: column '{name}' has {count} timestamps without a UTC offset (e.g. {values[naive].iloc[0]!r}); "
            f"write them with an offset (2026-01-05T08:30:00+07:00), or set naive_timestamps: utc "
            f"on dataset '{dataset.name}'"
        )
    notes.append(f"{path}: column '{name}': {count} timestamps without a UTC offset were taken as UTC")
