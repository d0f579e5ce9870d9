"""CSV and Parquet files read a chunk at a time, each row with its line number, malformed lines set aside.

A CSV is read in blocks of :data:`BLOCK_BYTES` by pyarrow's streaming reader, every value as
text (plain numbers of the declared number columns are cast in Arrow); a Parquet file in
batches of :data:`PARQUET_BATCH_ROWS` as pandas reads it. A "line" is the file's row number
counting the header as line 1 (the physical line unless a quoted value spans lines); in a
Parquet file it is the row's position from 1. :mod:`pipeline.ingest` renames, counts and types
each chunk before the next is read.
"""

from __future__ import annotations

import csv
from collections import Counter, deque
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.pipeline.ingest_errors import DuplicateColumnError, EmptyFileError, UnsupportedFormatError

if TYPE_CHECKING:
    import pandas as pd

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
LINE_COLUMN = "__modelyard_line"  # a hidden column: the row's line in its file
# A plain decimal number: pyarrow and pandas read it alike, so a CSV column of them is cast in Arrow.
DECIMAL_PATTERN = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
BLOCK_BYTES = 8 << 20  # a CSV chunk: its text and its typed rows are what a chunk costs
PARQUET_BATCH_ROWS = 100_000


def no_duplicates(path: Path, names: list[str], where: str) -> None:
    twice = {name: n for name, n in Counter(names).items() if n > 1}
    if twice:
        listed = ", ".join(f"'{name}' ({n} times)" for name, n in twice.items())
        raise DuplicateColumnError(f"{path}: the header names column(s) {listed} {where}; give each column one name")


Chunk = tuple["pd.DataFrame", list[tuple[int, str]]]


def numbering(path: Path) -> str:
    """How a row's number (:data:`LINE_COLUMN`) reads in a message: a CSV's line, a Parquet file's row from 1."""
    return "in row {}" if path.suffix.lower() in PARQUET_SUFFIXES else "on line {}"


def read_chunks(path: Path, numeric: Collection[str] = ()) -> Iterator[Chunk]:
    """The file's rows as read (CSV: text, plain numbers of ``numeric`` columns as floats) with their line
    numbers, chunk by chunk, and its malformed lines."""
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise UnsupportedFormatError(
            f"{path}: '{suffix or 'no extension'}' is not a supported format (use .csv or .parquet)"
        )
    if path.stat().st_size == 0:
        raise EmptyFileError(f"{path}: the file is empty (expected a header and rows)")
    return _csv_chunks(path, numeric) if suffix in CSV_SUFFIXES else _parquet_chunks(path)


def _csv_chunks(path: Path, numeric: Collection[str]) -> Iterator[Chunk]:
    """Every row as text, a block at a time; lines with the wrong number of fields are set aside with their number.

    Yields at least one chunk (an empty one with the header's columns when no line parses).
    """
    import pyarrow as pa

    header = _csv_header(path)
    if not any(name.strip() for name in header):
        raise EmptyFileError(f"{path}: the file has no header and no rows")
    no_duplicates(path, header, "in the CSV header")
    # pyarrow parses the next block ahead, on its own thread, while a chunk is being handled: its
    # malformed lines arrive at any time, so each chunk takes those reported so far (popped, never
    # cleared: a clear after the yield lost the lines reported meanwhile, and shifted the numbering).
    malformed: deque[tuple[int, str]] = deque()
    lines = _LineNumbers()
    yielded = False
    try:
        reader = _csv_reader(path, header, malformed)
        for batch in reader:
            frame = _as_frame(batch, numeric)
            bad = _drain(malformed)
            frame[LINE_COLUMN] = lines.take(len(frame), bad)
            yield frame, bad
            yielded = True
        bad = _drain(malformed)
        if not yielded or bad:  # no line parsed, or lines reported after the last batch
            frame = reader.schema.empty_table().to_pandas()
            frame[LINE_COLUMN] = lines.take(0, bad)
            yield frame, bad
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise UnsupportedFormatError(f"{path}: not readable as CSV ({_first_line(exc)})") from exc


def _as_frame(batch: Any, numeric: Collection[str]) -> pd.DataFrame:
    """A CSV batch as Arrow-backed text columns, except the ``numeric`` columns that hold only plain numbers.

    Those are cast in Arrow to the values pandas would parse from the same text; neither makes a
    Python string per value (which cost most of a chunk's memory and time).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = list(batch.columns)
    cast: set[str] = set()
    for index, name in enumerate(batch.schema.names):
        if name in numeric and pc.all(pc.match_substring_regex(columns[index], DECIMAL_PATTERN)).as_py() is not False:
            try:
                columns[index] = pc.cast(columns[index], pa.float64())
                cast.add(name)
            except pa.ArrowInvalid:
                pass  # left as text: pandas finds and names the values that are not numbers
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names).to_pandas()


def _drain(reported: deque[tuple[int, str]]) -> list[tuple[int, str]]:
    """What the parser has reported so far, taken out (its thread may append meanwhile: popleft is atomic)."""
    taken = []
    while reported:
        taken.append(reported.popleft())
    return taken


def _csv_reader(path: Path, header: list[str], malformed: deque[tuple[int, str]]) -> Any:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv

    def set_aside(row: Any) -> str:
        malformed.append((int(row.number or 0), str(row.text)))
        return "skip"

    return pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(use_threads=False, block_size=BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=set_aside),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()),
            strings_can_be_null=True,
            null_values=sorted(pd._libs.parsers.STR_NA_VALUES),
        ),
    )


@dataclass
class _LineNumbers:
    """The line of each good row: the next numbers from 2 (the header is line 1) that no malformed line took."""

    cursor: int = 2
    taken: list[int] = field(default_factory=list)

    def take(self, rows: int, malformed: list[tuple[int, str]]) -> Any:
        import numpy as np

        self.taken = sorted({*self.taken, *(n for n, _ in malformed)})
        candidates = np.arange(self.cursor, self.cursor + rows + len(self.taken), dtype=np.int64)
        numbers = candidates[~np.isin(candidates, self.taken)][:rows]
        if rows:
            self.cursor = int(numbers[-1]) + 1
        self.taken = [n for n in self.taken if n >= self.cursor]
        return numbers


def _csv_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return next(csv.reader(handle), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UnsupportedFormatError(f"{path}: not readable as CSV ({_first_line(exc)})") from exc


def _parquet_chunks(path: Path) -> Iterator[Chunk]:
    """The file's rows, a batch of :data:`PARQUET_BATCH_ROWS` at a time, as pandas reads them, numbered from 1."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        first = 1
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=_parquet_columns(parquet)):
            frame = pa.Table.from_batches([batch]).to_pandas()
            frame[LINE_COLUMN] = np.arange(first, first + len(frame), dtype=np.int64)
            first += len(frame)
            yield frame, []
    except (pa.ArrowInvalid, OSError) as exc:
        raise UnsupportedFormatError(f"{path}: not a valid Parquet file ({_first_line(exc)})") from exc


def _parquet_columns(parquet: Any) -> list[str]:
    # pandas stores an index as '__index_level_N__' columns; pandas.read_parquet makes them the index.
    return [name for name in parquet.schema_arrow.names if not name.startswith("__index_level_")]


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
