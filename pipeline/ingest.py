"""Read raw bookings from CSV or Parquet (a path or a glob) into a typed frame.

Every way a file can be unusable gets its own error with a one-line message naming
the file (and the column) and what to do; nothing surfaces as a bare parser traceback.
Values that parse but are wrong (nulls, out of range, unknown regions) are left for the
Great Expectations suites in :mod:`pipeline.validation` to report with counts.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.pipeline.config import Family
from modelyard.pipeline.errors import ModelyardError
from modelyard.pipeline.features import TIME_COLUMN, required_raw_columns

if TYPE_CHECKING:
    import pandas as pd

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
TEXT_COLUMNS = ("booking_id", "region", "pickup_area", "driver_id")
FLOAT_COLUMNS = ("pickup_distance_km", "driver_rating", "driver_acceptance_rate", "surge_multiplier", "pickup_eta_min")
INT_COLUMNS = ("driver_tenure_days", "accepted")
MINIMUM_COLUMNS = (TIME_COLUMN, "region")


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
    """``event_time`` holds values that are not timestamps."""


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


def read_bookings(source: str | Path, family: Family | None = None) -> pd.DataFrame:
    """Raw bookings from every file of ``source``, typed and concatenated.

    Args:
        source: A CSV/Parquet path or a glob of them.
        family: When given, the columns this family needs must all be present.

    Returns:
        One frame: ``event_time`` as UTC timestamps, numeric columns as numbers
        (int64 where whole and complete), text columns as strings.

    Raises:
        IngestError: a subclass naming the file and the cause (see this module).
    """
    import pandas as pd

    frames = [_read_one(path, family) for path in input_files(source)]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _read_one(path: Path, family: Family | None) -> pd.DataFrame:
    frame = _read_table(path)
    required = required_raw_columns(family) if family else list(MINIMUM_COLUMNS)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        who = f" (family '{family.name}' needs {', '.join(required)})" if family else ""
        raise MissingColumnError(f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}{who}")
    return _typed(frame, path)


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise UnsupportedFormatError(
            f"{path}: '{suffix or 'no extension'}' is not a supported format (use .csv or .parquet)"
        )
    if path.stat().st_size == 0:
        raise EmptyFileError(f"{path}: the file is empty (expected a header and rows of bookings)")
    frame = _read_csv(path) if suffix in CSV_SUFFIXES else _read_parquet(path)
    if frame.empty:
        raise HeaderOnlyError(f"{path}: the file has a header but no rows")
    return frame


def _read_csv(path: Path) -> pd.DataFrame:
    import pandas as pd

    try:
        return pd.read_csv(path, dtype=str, keep_default_na=True)
    except pd.errors.EmptyDataError as exc:
        raise EmptyFileError(f"{path}: the file has no header and no rows") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
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


def _typed(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    frame = frame.copy()
    frame[TIME_COLUMN] = _timestamps(frame[TIME_COLUMN], path)
    for column in TEXT_COLUMNS:
        if column in frame.columns:
            frame[column] = frame[column].astype("str").where(frame[column].notna())
    for column in FLOAT_COLUMNS + INT_COLUMNS:
        if column in frame.columns:
            frame[column] = _numbers(frame[column], path, whole=column in INT_COLUMNS)
    return frame


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


def _timestamps(values: pd.Series, path: Path) -> pd.Series:
    import pandas as pd

    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values.dt.tz_localize("UTC")  # naive timestamps are taken as UTC
    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
    bad = values.notna() & parsed.isna()
    if bad.any():
        raise TimestampError(
            f"{path}: column '{TIME_COLUMN}' has {int(bad.sum())} values that are not timestamps "
            f"(e.g. {values[bad].iloc[0]!r}); use ISO 8601 such as 2026-01-05T08:30:00Z"
        )
    return parsed
