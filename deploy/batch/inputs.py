"""The table to score: its files, its digest, and its rows read in bounded chunks, typed as the dataset reads them.

A source is a CSV/Parquet path or glob, local or on an object store (``s3://...``). Files are
read in order (sorted), in chunks of at most ``chunk_rows`` rows: CSV by pyarrow's streaming
reader (every value as text first, as the data stage reads it), Parquet by row batches; only
the columns the version reads (and the key and region columns) are kept, so memory is bounded
by the chunk, not the file.

A chunk is typed exactly like the data stage types a dataset (``pipeline.ingest``: the
dataset's ``renames``, its naive-timestamp and daylight-saving policies, booleans written as
``yes``/``no``), with the column types of the scoring version's own feature spec. A value that
does not parse is an error naming the file and column (batch scoring sets no row aside: every
input row gets its prediction, or the run fails).
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from modelyard.core import storage
from modelyard.deploy.batch.errors import BatchInputError, MissingInputError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from modelyard.core.config import Dataset
    from modelyard.core.featurespec import FeatureDef, FittedSpec
    from modelyard.pipeline.ingest_types import FileRead

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_BLOCK_BYTES = 4 << 20
DIGEST_BLOCK_BYTES = 8 << 20
ROW_COLUMN = "input_row"  # the key when the input has no key column: the row's position in the input, from 0


@dataclass(frozen=True)
class Layout:
    """Which columns of the input a version reads, and how they are typed.

    Attributes:
        dataset: the dataset declaration used to type the chunks (the version's column types).
        region: the pair's region; rows of other regions are skipped when the input has a region column.
        zone: the region's IANA zone (for ``naive_timestamps: region_local``).
        raw: the raw columns the version reads (its spec's raw inputs, or its feature names).
        requested: window aggregates the version takes by feature name that the input carries (numbers).
        key: the key column (the dataset's ``key_column``) when the input has it, else None.
        computed: window aggregates the input does not carry: computed from its rows (``windows.py``).
    """

    dataset: Dataset
    region: str
    zone: str
    raw: tuple[str, ...]
    requested: tuple[str, ...]
    key: str | None
    computed: tuple[FeatureDef, ...] = ()

    @property
    def computed_from(self) -> dict[str, list[str]]:
        """Each computed aggregate's input columns: the time column, its key, and a mean's column."""
        return {
            feature.name: [self.dataset.time_column, str(feature.key), *([feature.column] if feature.column else [])]
            for feature in self.computed
        }

    @property
    def declared(self) -> list[str]:
        """Every declared column a chunk needs, key and region included."""
        sources = [name for names in self.computed_from.values() for name in names]
        names = [*self.raw, *self.requested, *sources, *([self.key] if self.key else [])]
        return list(dict.fromkeys(names))


@dataclass(frozen=True)
class Chunk:
    """One bounded slice of the input, typed, of the pair's region only."""

    file: str
    frame: pd.DataFrame
    rows: np.ndarray  # each kept row's position in the whole input (files in order), from 0


def input_files(source: str, options: Mapping[str, Any] | None = None) -> list[Any]:
    """The files ``source`` names: one path or URL, or every match of a glob, sorted.

    Raises:
        MissingInputError: nothing matches.
        BatchInputError: a file is not CSV or Parquet.
    """
    if storage.is_local(source):
        text = source[len("file://") :] if source.startswith("file://") else source
        found: list[Any] = storage.local_files(text)
    else:
        found = _remote_files(source, options or {})
    if not found:
        what = "the glob matches no file" if glob.has_magic(source) else "no such file"
        raise MissingInputError(f"input {source}: {what}; give a CSV/Parquet path or glob (quote the glob in a shell)")
    for path in found:
        if _suffix(path) not in CSV_SUFFIXES + PARQUET_SUFFIXES:
            raise BatchInputError(f"{path}: '{_suffix(path) or 'no extension'}' is not .csv or .parquet")
    return found


def _remote_files(source: str, options: Mapping[str, Any]) -> list[Any]:
    path = storage.storage_path(source, options)
    if not glob.has_magic(source) or path.is_file():  # an object named as written is that object
        return [path] if path.exists() else []
    protocol = storage.protocol_of(source)
    matches = sorted(str(p) for p in path.fs.glob(path.path))
    return [storage.storage_path(f"{protocol}://{match}", options) for match in matches]


def _suffix(path: Any) -> str:
    return Path(str(path)).suffix.lower()


def input_digest(files: Sequence[Any]) -> str:
    """The sha256 (first 16 hex) of the files' contents, in order: the same bytes give the same digest."""
    digest = hashlib.sha256()
    for path in files:
        with path.open("rb") as handle:
            digest.update(b"\x00file\x00")
            while block := handle.read(DIGEST_BLOCK_BYTES):
                digest.update(block)
    return digest.hexdigest()[:16]


def header(path: Any) -> list[str]:
    """The column names of a CSV or Parquet file.

    Raises:
        BatchInputError: the file is empty or not readable as its format.
    """
    if _suffix(path) in PARQUET_SUFFIXES:
        with path.open("rb") as handle:
            return list(_parquet(path, handle).schema_arrow.names)
    with path.open("rb") as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
        try:
            names = next(csv.reader(text), [])
        except (UnicodeDecodeError, csv.Error) as exc:
            raise BatchInputError(f"{path}: not readable as CSV ({exc})") from exc
    if not any(name.strip() for name in names):
        raise BatchInputError(f"{path}: the file is empty (expected a header and rows)")
    return names


def _parquet(path: Any, handle: Any) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(handle)
    except (pa.ArrowInvalid, OSError) as exc:
        raise BatchInputError(f"{path}: not a valid Parquet file ({_first_line(exc)})") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_columns(path: Any, names: list[str], layout: Layout, what: str) -> None:
    """Refuse a file that lacks a column the version reads, naming the file, the columns and what to do.

    Args:
        path: the file.
        names: its columns, after the dataset's ``renames``.
        layout: what the version reads.
        what: the version, for the message (``model 'x' v3``).

    Raises:
        BatchInputError: the missing raw column(s), window aggregate(s) and the columns an aggregate is computed from.
    """
    reads = [*layout.raw, *layout.requested]
    for sources in layout.computed_from.values():
        reads += [name for name in sources if name not in reads]
    missing = [name for name in reads if name not in names]
    if not missing:
        return
    aggregates = [name for name in missing if name in layout.requested]
    hint = (
        f"; window aggregates ({', '.join(aggregates)}) are columns named like the feature: give them in every "
        "file, or in none and they are computed from the input's rows"
        if aggregates
        else ""
    )
    for aggregate, sources in layout.computed_from.items():
        if any(name in missing for name in sources):
            hint += f"; window aggregate '{aggregate}' is computed from {', '.join(sources)} (or give it as a column)"
    raise BatchInputError(
        f"{path}: missing column(s) {', '.join(repr(m) for m in missing)}, which {what}'s feature spec reads "
        f"(it reads: {', '.join(reads)}); add them to the file, or map source names "
        f"with renames on dataset '{layout.dataset.name}'{hint}"
    )


def source_columns(names: list[str], layout: Layout) -> list[str]:
    """The file's own names of the columns a chunk needs (before the dataset's ``renames``)."""
    renames = layout.dataset.renames
    wanted = {*layout.declared, layout.dataset.region_column}
    return [name for name in names if renames.get(name, name) in wanted]


def raw_batches(path: Any, columns: list[str], chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """The file's ``columns`` in record batches of at most ``chunk_rows`` rows (CSV: every value as text).

    Raises:
        BatchInputError: the file cannot be parsed (names the file and the parser's reason).
    """
    import pyarrow as pa

    batches = (
        _parquet_batches(path, columns, chunk_rows)
        if _suffix(path) in PARQUET_SUFFIXES
        else _csv_batches(path, columns)
    )
    try:
        for batch in batches:
            for start in range(0, batch.num_rows, chunk_rows):
                yield batch.slice(start, chunk_rows)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise BatchInputError(f"{path}: cannot be read ({_first_line(exc)}); fix the file") from exc


def _parquet_batches(path: Any, columns: list[str], chunk_rows: int) -> Iterator[pa.RecordBatch]:
    with path.open("rb") as handle:
        yield from _parquet(path, handle).iter_batches(batch_size=chunk_rows, columns=columns)


def _csv_batches(path: Any, columns: list[str]) -> Iterator[pa.RecordBatch]:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with path.open("rb") as handle:
        reader = pacsv.open_csv(
            handle,
            read_options=pacsv.ReadOptions(use_threads=False, block_size=CSV_BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(columns, pa.string()),
                include_columns=columns,
                strings_can_be_null=True,
                null_values=sorted(pd._libs.parsers.STR_NA_VALUES),
            ),
        )
        yield from reader


def typed_chunk(path: Any, batch: pa.RecordBatch, first_row: int, layout: Layout, file_row: int = 0) -> Chunk:
    """A raw batch renamed, cut to the pair's region and typed as the data stage types the dataset.

    ``first_row``: the batch's first row's position in the whole input (the ``input_row`` key);
    ``file_row``: in its file, from 0. A refused value is named by its row in its file, from 1.

    Raises:
        BatchInputError: a value does not parse, or a column the version needs is empty where it may not be.
    """
    import numpy as np

    from modelyard.pipeline.ingest_errors import IngestError
    from modelyard.pipeline.ingest_types import FileRead, texts, typed
    from modelyard.pipeline.readers import LINE_COLUMN

    dataset = layout.dataset
    frame = batch.to_pandas().rename(columns=dataset.renames)
    if _suffix(path) in CSV_SUFFIXES:
        frame = frame.astype(object)  # text and None, as the data stage reads a CSV
    rows = np.arange(first_row, first_row + len(frame), dtype=np.int64)
    frame[LINE_COLUMN] = np.arange(file_row + 1, file_row + 1 + len(frame), dtype=np.int64)
    region_column = dataset.region_column
    if region_column in frame.columns:
        keep = (texts(frame[region_column]) == layout.region).to_numpy()  # text as the data stage reads it
        frame, rows = frame[keep].reset_index(drop=True), rows[keep]
    else:  # a file of one region: its rows are the pair's
        frame[region_column] = layout.region
    try:
        # The data stage's own typing: the one definition of a dataset's types.
        read = FileRead(cast(Path, path), dataset, {layout.region: layout.zone}, [], numbering=_numbering(path))
        frame = typed(frame, read)
    except IngestError as exc:
        raise BatchInputError(str(exc)) from exc
    _check_requested(read, frame, layout)
    _check_nulls(read, frame, layout)
    return Chunk(str(path), frame, rows)


def _numbering(path: Any) -> str:
    """A batch input's rows are named by their row in the file (pyarrow's CSV reader does not count lines)."""
    return "in row {}" if _suffix(path) not in CSV_SUFFIXES else "in row {} after the header"


def _check_requested(read: FileRead, frame: pd.DataFrame, layout: Layout) -> None:
    import pandas as pd

    from modelyard.pipeline.ingest_types import counted

    for name in layout.requested:
        parsed = pd.to_numeric(frame[name], errors="coerce")
        bad = frame[name].notna() & parsed.isna()
        if bad.any():
            raise BatchInputError(
                f"{read.path}: column '{name}' (a window aggregate) has "
                f"{counted(int(bad.sum()), 'value that is not a number', 'values that are not numbers')} "
                f"(e.g. {frame[name][bad].iloc[0]!r}{read.where(frame, bad)}); write a number in every row"
            )
        frame[name] = parsed.astype("float64")


def _check_nulls(read: FileRead, frame: pd.DataFrame, layout: Layout) -> None:
    from modelyard.pipeline.ingest_types import counted

    columns = layout.dataset.columns
    for name in layout.raw:
        column = columns.get(name)
        may_be_null = column is None or column.nullable or column.max_null_fraction is not None
        if column is not None and column.type == "category":
            may_be_null = True  # an unknown category: the spec gives it the unknown code, as the server does
        empty = frame[name].isna()
        if not may_be_null and empty.any():
            raise BatchInputError(
                f"{read.path}: column '{name}' is empty in {counted(int(empty.sum()), 'row', 'rows')} of region "
                f"'{layout.region}' (first{read.where(frame, empty)}); dataset '{layout.dataset.name}' declares it "
                "not nullable: fill it, or drop those rows"
            )


def spec_columns(chunk: Chunk, fitted: FittedSpec | None, layout: Layout) -> dict[str, np.ndarray]:
    """The chunk's columns as the feature spec reads them (time as naive UTC ``datetime64``)."""
    frame, time_column = chunk.frame, fitted.spec.time_column if fitted is not None else None
    out: dict[str, np.ndarray] = {}
    for name in [*layout.raw, *layout.requested, *(feature.name for feature in layout.computed)]:
        values = frame[name]
        if name == time_column:
            out[name] = values.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
        else:
            out[name] = values.to_numpy()
    return out
