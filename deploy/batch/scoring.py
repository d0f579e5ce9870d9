"""Score one pair's rows of a table with one registered version, chunk by chunk, and publish the predictions.

For (family, region): resolve the version (alias or number), digest the input, and stop there
when the destination already holds the predictions of this input by this version (idempotent).
Otherwise load the version as the server does, then per chunk of at most ``chunk_rows`` rows:
read and type it (``inputs``), featurise it with the version's own fitted spec (its time features in
the region's own zone and calendar when the version was fitted for another region's, a pooled model:
the server's ``ServedModel.calendar_for``, ADR 0015), predict (the
classifier's positive-class probability or the regressor's value, as the server answers), and
append key, prediction, version and spec digest to a staged file, published whole at the end
(``output``). Rows of other regions are skipped when the input has a region column.

A window aggregate the version takes (``area_demand_index``) is read from the input's column of
that name when the input has one; else it is computed from the input's rows as the data stage
computes it (``windows``), in a first pass over the pair's rows.

The key column is the dataset's ``key_column`` when every input file has it, else
``input_row``: the row's position in the input (files in sorted order, from 0).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.core.featurespec import WINDOW_KINDS
from modelyard.deploy.batch import inputs, output
from modelyard.deploy.batch.errors import BatchInputError, BatchScoringError
from modelyard.deploy.batch.model import ScoringVersion, load_for_scoring, resolve_version, spec_digest
from modelyard.deploy.batch.windows import WindowTotals
from modelyard.deploy.serving.trust import TrustPolicy

if TYPE_CHECKING:
    import numpy as np
    from mlflow import MlflowClient

    from modelyard.core.config import Config, PairView
    from modelyard.core.featurespec import Calendar, FittedSpec
    from modelyard.deploy.serving.runtime import ServedModel

DEFAULT_CHUNK_ROWS = 100_000
PREDICTIONS_FILE = "predictions.parquet"


@dataclass(frozen=True)
class ScoreRequest:
    """What to score and with which version, resolved once and passed to every pair.

    Attributes:
        input: a CSV/Parquet path, glob or URL; ``{family}`` and ``{region}`` are replaced per pair.
        out: where the pair's predictions go (``{family}``/``{region}`` replaced); None: under the
            storage root, ``predictions/<family>/<region>/predictions.parquet``.
        alias: the registry alias that scores (None: ``champion``).
        version: a version number instead of an alias.
        chunk_rows: rows read, featurised and predicted at a time.
        force: score even when the destination already holds this input's predictions by this version.
        trust: what a version's artifacts may run (the server's rules).
    """

    input: str
    out: str | None = None
    alias: str | None = None
    version: int | None = None
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    force: bool = False
    trust: TrustPolicy = field(default_factory=TrustPolicy)

    def __post_init__(self) -> None:
        if self.alias is not None and self.version is not None:
            raise BatchScoringError("give an alias or a version, not both")
        if self.chunk_rows < 1:
            raise BatchScoringError(f"chunk_rows must be at least 1, got {self.chunk_rows}")


@dataclass(frozen=True)
class ScoreResult:
    """What scoring one pair did: ``scored`` (published), ``unchanged`` (already there) or ``no rows``."""

    family: str
    region: str
    status: str
    out: str
    provenance: output.Provenance
    chunks: int = 0
    seconds: float = 0.0
    files: int = 0

    @property
    def rows_per_second(self) -> float:
        return self.provenance.rows / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One line: what was scored with what, or why nothing was."""
        p = self.provenance
        scored_by = f"{p.model_name} v{p.version}"
        if self.status == "unchanged":
            return (
                f"{self.out} already holds the predictions of input {p.input_digest} by {scored_by}: "
                "nothing to do (--force rescores)"
            )
        if self.status == "no rows":
            return f"no row of region '{self.region}' in the input ({self.files} files, digest {p.input_digest})"
        chunks = f"{self.chunks} chunk{'' if self.chunks == 1 else 's'}"
        return (
            f"{p.rows} rows ({chunks}) scored by {scored_by} (spec {p.spec_digest}) in "
            f"{self.seconds:.1f} s, {self.rows_per_second:,.0f} rows/s -> {self.out}"
        )

    def asset_extra(self) -> dict[str, Any]:
        """The ``extra`` of the predictions Asset event (``core.contracts.assets.PredictionsExtra``)."""
        from modelyard.core.contracts.assets import PredictionsExtra

        p = self.provenance
        extra = PredictionsExtra(
            family=self.family,
            region=self.region,
            model_name=p.model_name,
            version=p.version,
            spec_digest=p.spec_digest,
            input_digest=p.input_digest,
            rows=p.rows,
            path=self.out,
        )
        return dict(extra)


def output_path(config: Config, out: str | None, family: str, region: str) -> Any:
    """Where the pair's predictions go: ``out`` with ``{family}``/``{region}`` replaced, else under the storage root."""
    from modelyard.core import storage

    if out is None:
        return config.storage.root / "predictions" / family / region / PREDICTIONS_FILE
    return storage.storage_path(for_pair(out, family, region), config.storage.options)


def for_pair(template: str, family: str, region: str) -> str:
    """``template`` with ``{family}`` and ``{region}`` replaced by the pair's."""
    return template.replace("{family}", family).replace("{region}", region)


def score_pair(config: Config, family: str, region: str, request: ScoreRequest, client: MlflowClient) -> ScoreResult:
    """Score the pair's rows of ``request.input`` and publish them (see the module's docstring).

    Raises:
        BatchInputError: no input, an unreadable file, a missing raw column, a value that does not parse.
        ScoringModelError: the version does not exist or cannot be loaded.
        BatchScoringError: scoring or publishing failed (names the file or the destination).
    """
    pair = config.pair_view(family, region)
    files = inputs.input_files(for_pair(request.input, family, region), config.storage.options)
    out = output_path(config, request.out, family, region)
    output.check_destination(out)
    chosen = resolve_version(client, config, family, region, request.alias, request.version)
    started = time.perf_counter()
    digest = inputs.input_digest(files)
    done = output.read_provenance(out)
    if done is not None and not request.force and _same_work(done, pair, chosen, digest):
        return ScoreResult(family, region, "unchanged", str(out), done, files=len(files))
    with tempfile.TemporaryDirectory(prefix="modelyard-batch-") as cache:
        served = load_for_scoring(chosen, Path(cache), request.trust, request.chunk_rows)
        try:
            result = _score(pair, files, out, chosen, digest, served, request.chunk_rows)
        finally:
            served.release()
    return dataclasses.replace(result, seconds=time.perf_counter() - started)


def _same_work(done: output.Provenance, pair: PairView, chosen: ScoringVersion, digest: str) -> bool:
    return done.work() == (pair.family.name, pair.region.name, chosen.model_name, chosen.version, digest, output.FORMAT)


def _score(
    pair: PairView,
    files: list[Any],
    out: Any,
    chosen: ScoringVersion,
    digest: str,
    served: ServedModel,
    chunk_rows: int,
) -> ScoreResult:
    fitted = served.raw.fitted if served.raw is not None else None
    tables = [(path, inputs.header(path)) for path in files]  # each file's header, read once
    headers = [_renamed(names, pair) for _, names in tables]
    layout = layout_for(pair, fitted, list(served.schema.names), headers)
    for (path, _), names in zip(tables, headers, strict=True):
        inputs.check_columns(path, names, layout, chosen.describe())
    provenance = output.Provenance(
        family=pair.family.name,
        region=pair.region.name,
        model_name=chosen.model_name,
        version=chosen.version,
        spec_digest=spec_digest(fitted, list(served.schema.names)),
        input_digest=digest,
        key=layout.key or inputs.ROW_COLUMN,
    )
    key_kind = pair.dataset.columns[layout.key].type if layout.key else None
    staged = output.StagedFile(out, output.schema(provenance.key, output.key_type(key_kind)))
    calendar = served.calendar_for(pair.region.name, lambda: pair.calendar)  # a pooled model: the region's
    try:
        rows, chunks = _score_files(tables, layout, fitted, served, staged, provenance, chunk_rows, calendar)
    except BaseException:
        staged.discard()
        raise
    scored = dataclasses.replace(provenance, rows=rows)
    if not rows:
        staged.discard()
        return ScoreResult(pair.family.name, pair.region.name, "no rows", str(out), scored, files=len(files))
    staged.publish(scored)
    return ScoreResult(pair.family.name, pair.region.name, "scored", str(out), scored, chunks, files=len(files))


def _renamed(names: list[str], pair: PairView) -> list[str]:
    return [pair.dataset.renames.get(name, name) for name in names]


def layout_for(
    pair: PairView, fitted: FittedSpec | None, feature_names: list[str], headers: list[list[str]]
) -> inputs.Layout:
    """What the version reads of the input, typed with its own spec's column types.

    A version without a feature spec reads its feature columns by name, as numbers.
    """
    from modelyard.core.config.datasets import Column

    dataset = pair.dataset
    raw = tuple(fitted.raw_inputs) if fitted is not None else tuple(feature_names)
    kinds = dict(fitted.spec.columns) if fitted is not None else {}
    columns = dict(dataset.columns)
    for name in raw:
        kind = kinds.get(name, "float")
        if name not in columns or columns[name].type != kind:
            columns[name] = Column(type=kind, nullable=True)  # the spec's own declaration
    reading = dataset.model_copy(
        update={
            "columns": columns,
            "time_column": fitted.spec.time_column if fitted is not None else dataset.time_column,
            "bad_rows": "fail",  # every row is scored or the run fails: none is set aside
            "max_bad_fraction": None,
        }
    )
    key = dataset.key_column
    has_key = key is not None and all(key in names for names in headers)
    windows = [f for f in fitted.spec.features if f.kind in WINDOW_KINDS] if fitted is not None else []
    carried = [f for f in windows if any(f.name in names for names in headers)]  # a value given still wins
    return inputs.Layout(
        dataset=reading,
        region=pair.region.name,
        zone=pair.timezone,
        raw=raw,
        requested=tuple(f.name for f in carried),
        key=key if has_key else None,
        computed=tuple(f for f in windows if f not in carried),
    )


def _score_files(
    tables: list[tuple[Any, list[str]]],
    layout: inputs.Layout,
    fitted: FittedSpec | None,
    served: ServedModel,
    staged: output.StagedFile,
    provenance: output.Provenance,
    chunk_rows: int,
    calendar: Calendar | None,
) -> tuple[int, int]:
    totals = _window_totals(tables, layout, fitted, chunk_rows)
    rows, chunks = 0, 0
    for chunk in _chunks(tables, layout, chunk_rows):
        for feature, total in totals.items():
            chunk.frame[feature] = total.values(chunk.frame)
        predictions = predict_chunk(served, fitted, chunk, layout, calendar)
        keys = chunk.frame[layout.key] if layout.key else chunk.rows
        staged.append(
            output.chunk_table(staged.writer.schema, keys, predictions, provenance.version, provenance.spec_digest)
        )
        rows, chunks = rows + len(predictions), chunks + 1
    return rows, chunks


def _chunks(tables: list[tuple[Any, list[str]]], layout: inputs.Layout, chunk_rows: int) -> Iterator[inputs.Chunk]:
    """The pair's rows of every (file, header), typed, in chunks of at most ``chunk_rows`` (empty chunks left out)."""
    offset = 0
    for path, names in tables:
        columns = inputs.source_columns(names, layout)
        in_file = 0
        for batch in inputs.raw_batches(path, columns, chunk_rows):
            chunk = inputs.typed_chunk(path, batch, offset, layout, file_row=in_file)
            offset, in_file = offset + batch.num_rows, in_file + batch.num_rows
            if not chunk.frame.empty:
                yield chunk


def _window_totals(
    tables: list[tuple[Any, list[str]]], layout: inputs.Layout, fitted: FittedSpec | None, chunk_rows: int
) -> dict[str, WindowTotals]:
    """The window aggregates the input does not carry, added up over a first pass of its rows (``windows.py``)."""
    if not layout.computed or fitted is None:
        return {}
    totals = {
        feature.name: WindowTotals(fitted.spec.family, feature, layout.dataset.time_column, layout.zone)
        for feature in layout.computed
    }
    sources = dataclasses.replace(layout, raw=(), requested=(), key=None)  # read and type only what windows need
    for chunk in _chunks(tables, sources, chunk_rows):
        for total in totals.values():
            total.add(chunk.frame)
    return totals


def predict_chunk(
    served: ServedModel,
    fitted: FittedSpec | None,
    chunk: inputs.Chunk,
    layout: inputs.Layout,
    calendar: Calendar | None = None,
) -> np.ndarray:
    """The served model's answer for a chunk: featurised by the version's spec, float32, as the server predicts.

    ``calendar``: the region's, when the version was fitted for another region's (a pooled model, as
    ``ServedModel.calendar_for`` says); default: the version's own.

    Raises:
        BatchInputError: the spec cannot compute a feature from the chunk (names the file and the feature).
        BatchScoringError: the model failed, or answered more than one value a row.
    """
    import numpy as np

    from modelyard.core.featurespec import FeatureSpecError
    from modelyard.deploy.serving.errors import InferenceFailed

    try:
        if fitted is not None:
            matrix = fitted.transform(inputs.spec_columns(chunk, fitted, layout), calendar)
        else:
            matrix = np.column_stack([chunk.frame[name].to_numpy(dtype=np.float64) for name in layout.raw])
    except FeatureSpecError as exc:
        raise BatchInputError(f"{chunk.file}: {exc}") from exc
    try:
        predictions = served.predict(np.ascontiguousarray(matrix, dtype=np.float32))  # as RawFeatures.prepare
    except InferenceFailed as exc:
        raise BatchScoringError(f"{chunk.file}: {exc.message}") from exc
    if predictions.ndim != 1:
        raise BatchScoringError(
            f"{served.uri} answers {predictions.shape[1]} values a row; batch scoring writes one "
            "(binary classifiers and regressors)"
        )
    return predictions
