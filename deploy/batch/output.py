"""The predictions file: Parquet with the key, the prediction, the model version and the spec digest.

What was scored travels in the file's own footer (key-value metadata ``modelyard.batch``: the
pair, the model, the version, the spec digest and the input digest), so the file and its
provenance are published together, in one step, and a rerun reads the footer to know whether
the work is already done (idempotent per input digest and version).

Chunks are appended to a temporary file as they are scored (memory stays bounded); the whole
file is then published at once: locally renamed into place (same folder), on an object store
uploaded in one PUT, which S3, GCS and Azure make visible only once complete.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from modelyard.core import storage
from modelyard.deploy.batch.errors import BatchScoringError
from modelyard.deploy.batch.inputs import PARQUET_SUFFIXES

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

FOOTER_KEY = b"modelyard.batch"
FORMAT = 1
PREDICTION_COLUMN = "prediction"
VERSION_COLUMN = "model_version"
SPEC_COLUMN = "spec_digest"
ARROW_TYPES = {"int": "int64", "float": "float64", "bool": "bool", "category": "string", "string": "string"}


@dataclass(frozen=True)
class Provenance:
    """What a predictions file holds: which input, scored by which version of which model, with which spec."""

    family: str
    region: str
    model_name: str
    version: str
    spec_digest: str
    input_digest: str
    key: str
    rows: int = 0
    format: int = FORMAT

    def work(self) -> tuple[str, str, str, str, str, int]:
        """What makes two runs the same work: the pair, the model and version, the input digest, the format.

        The spec digest follows from the version (a version's artifacts do not change).
        """
        return (self.family, self.region, self.model_name, self.version, self.input_digest, self.format)


def key_type(declared: str | None) -> pa.DataType:
    """The Arrow type of the key column: as its dataset declares it (no key column: the row number)."""
    import pyarrow as pa

    return pa.type_for_alias(ARROW_TYPES.get(declared or "int", "string"))


def schema(key: str, key_arrow: pa.DataType) -> pa.Schema:
    """The file's columns: the key, the prediction, the model version and the spec digest."""
    import pyarrow as pa

    fields = [
        pa.field(key, key_arrow),
        pa.field(PREDICTION_COLUMN, pa.float64(), nullable=False),
        pa.field(VERSION_COLUMN, pa.int64(), nullable=False),
        pa.field(SPEC_COLUMN, pa.string(), nullable=False),
    ]
    return pa.schema(fields)


def chunk_table(target: pa.Schema, keys: Any, predictions: np.ndarray, version: str, digest: str) -> pa.Table:
    """One chunk's rows in the file's schema."""
    import numpy as np
    import pyarrow as pa

    rows = len(predictions)
    key_field = target.field(0)
    columns = [
        pa.array(keys, type=key_field.type, from_pandas=True),
        pa.array(np.asarray(predictions, dtype=np.float64)),
        pa.array(np.full(rows, int(version), dtype=np.int64)),
        pa.array([digest] * rows, type=pa.string()),
    ]
    return pa.Table.from_arrays(columns, schema=target)


def check_destination(out: Any) -> None:
    """Refuse an ``out`` that cannot take the predictions file before anything is scored.

    Raises:
        BatchScoringError: ``out`` is an existing folder, or not named as a Parquet file (the file is Parquet
            whatever its name, so ``x.csv`` would hold Parquet).
    """
    local = storage.local_file(out)
    name = pathlib.PurePosixPath(str(out))
    if local is not None and local.is_dir():
        raise BatchScoringError(
            f"output {out} is a folder; name the Parquet file to write in it, e.g. {local / 'predictions.parquet'}"
        )
    if name.suffix.lower() not in PARQUET_SUFFIXES:
        raise BatchScoringError(
            f"output {out}: predictions are written as Parquet, so name the file .parquet "
            f"(e.g. {name.with_suffix('.parquet')}); read it with pandas.read_parquet or DuckDB"
        )


def read_provenance(out: Any) -> Provenance | None:
    """The provenance in the footer of the predictions file at ``out``; None when there is none (or no file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if not out.exists():
            return None
        with out.open("rb") as handle:
            metadata = pq.read_metadata(handle).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return None  # not a predictions file of ours: scoring replaces it
    raw = metadata.get(FOOTER_KEY)
    if raw is None:
        return None
    try:
        return Provenance(**_known(json.loads(raw)))
    except (ValueError, TypeError):
        return None


def _known(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k in Provenance.__dataclass_fields__}


class StagedFile:
    """A temporary Parquet file beside (or, for an object store, on this host for) ``out``, published whole."""

    def __init__(self, out: Any, target: pa.Schema) -> None:
        import pyarrow.parquet as pq

        self.out = out
        local = storage.local_file(out)
        folder = local.parent if local is not None else pathlib.Path(tempfile.gettempdir())
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=f".{pathlib.Path(str(out)).name}.", suffix=".tmp")
        os.close(fd)
        self.path = pathlib.Path(name)
        self.writer = pq.ParquetWriter(str(self.path), target, compression="zstd")

    def append(self, table: pa.Table) -> None:
        self.writer.write_table(table)

    def publish(self, provenance: Provenance) -> None:
        """Write ``provenance`` in the footer and make the file visible at ``out`` all at once.

        Raises:
            BatchScoringError: the destination refused the file (names it and the cause).
        """
        self.writer.add_key_value_metadata({FOOTER_KEY: json.dumps(asdict(provenance)).encode()})
        self.writer.close()
        local = storage.local_file(self.out)
        try:
            if local is not None:
                os.replace(self.path, local)
            else:
                self.out.fs.put_file(str(self.path), self.out.path)
        except OSError as exc:
            raise BatchScoringError(f"cannot publish the predictions to {self.out}: {exc}") from exc
        finally:
            self.path.unlink(missing_ok=True)

    def discard(self) -> None:
        """Drop the temporary file (scoring failed: nothing is published)."""
        try:
            self.writer.close()
        finally:
            self.path.unlink(missing_ok=True)
