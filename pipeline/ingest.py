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
cut to the declared regions and typed (:mod:`pipeline.ingest_types`) before the next is read;
only the typed rows of declared regions are kept, and a build sets them down per region
(:mod:`pipeline.spill`) so it holds one region's rows at a time. A problem that fails the read
is tallied over the whole file and reported once at its end, so its message gives the file's
count and first example whatever the chunk size (``tests/bench/ingest.py`` and docs/benchmarks.md,
"Ingest", have the figures).
"""

from __future__ import annotations

import csv
import glob
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.core import storage
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
from modelyard.pipeline.ingest_types import UNKNOWN_REGION, BadRow, FileRead, texts, type_chunk
from modelyard.pipeline.readers import LINE_COLUMN, no_duplicates, numbering, read_chunks
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

# A hidden column that travels with each row to the report: the file it came from (and LINE_COLUMN).
FILE_COLUMN = "__modelyard_file"
HIDDEN = [FILE_COLUMN, LINE_COLUMN]


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


def input_files(source: str | Path) -> list[Path]:
    """The files named by ``source``: one path, or every match of a glob, sorted (:func:`storage.local_files`).

    Raises:
        NoInputError: nothing matches.
    """
    text = str(source)
    files = storage.local_files(text)
    if not files:
        raise NoInputError(f"{text}: the glob matches no file" if glob.has_magic(text) else f"{text}: no such file")
    return files


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
    reads = [FileRead(path, dataset, regions, notes, numbering=numbering(path)) for path in input_files(source)]
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


def _read_one(read: FileRead, required: list[str] | None) -> Iterator[pd.DataFrame]:
    """The typed chunks of one file, as they are read (an empty one at the end when none had rows, for its columns).

    A file that fails raises at its end (:meth:`FileRead.finish`), after the chunks given so far:
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


def _check_columns(read: FileRead, columns: list[str], required: list[str] | None) -> None:
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


def _chunk(read: FileRead, frame: pd.DataFrame, malformed: list[tuple[int, str]]) -> pd.DataFrame | None:
    """One chunk renamed, counted, cut to the declared regions and typed; None while the file is failing."""
    dataset = read.dataset
    frame = frame.rename(columns=dataset.renames)
    _malformed(read, malformed, [str(c) for c in frame.columns if c != LINE_COLUMN])
    if read.malformed:
        return None
    frame[FILE_COLUMN] = _one_value(str(read.path), len(frame))
    region = texts(frame[dataset.region_column]).fillna(UNKNOWN_REGION)
    for value, count in region.value_counts(sort=False).items():
        read.read[(str(read.path), str(value))] += int(count)
    frame = _declared_regions(read, frame, region)
    if read.refused:
        return None
    return type_chunk(frame, read)


def _one_value(text: str, rows: int) -> pd.Categorical:
    """``text`` in each of ``rows`` rows, a byte a row (a file's path on every row it holds)."""
    import numpy as np
    import pandas as pd

    return pd.Categorical.from_codes(np.zeros(rows, dtype=np.int8), categories=[text])


def _malformed(read: FileRead, malformed: list[tuple[int, str]], header: list[str]) -> None:
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


def _declared_regions(read: FileRead, frame: pd.DataFrame, region: pd.Series) -> pd.DataFrame:
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
