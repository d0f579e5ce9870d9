"""The errors of reading a declared dataset: one class per way a file can be unusable, each with a one-line message."""

from __future__ import annotations

from modelyard.core.errors import ModelyardError


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
