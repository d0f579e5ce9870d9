"""Evidence for the gates from the registry and the snapshot: each version loaded with its own spec.

Challenger and champion are scored on the same holdout rows (the challenger's snapshot, split at
its run's boundaries); each version featurises those rows' raw fields with its OWN
``feature_spec.json``, each row in its own region's calendar as the server featurises it (a pooled
model's rows, or a region's rows scored by its group's pooled model: ``row_calendars``, ADR 0015).
Also the baseline's holdout metrics the challenger's run logged, and the
single-row latency of the engine that will serve each model, challenger and champion timed in the
same rounds (ADR 0012).
"""

from __future__ import annotations

import gc
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import RunData
    from mlflow.entities.model_registry import ModelVersion

    from modelyard.core.config import Config
    from modelyard.core.featurespec import Calendar, FittedSpec
    from modelyard.pipeline.snapshots import ValidationSummary
    from modelyard.promotion.row_calendars import RowCalendars
    from modelyard.training.metrics import Task
    from modelyard.training.split import SplitBoundaries

from modelyard.core.model_files import ENVIRONMENT_FILES, EXAMPLE_FILES, download_model
from modelyard.promotion.gates import (
    LATENCY_ROUNDS,
    SPEC_EXTRA_DIR,
    WARM_UP_CALLS,
    Evidence,
    GateInputError,
    ModelScore,
)
from modelyard.training.onnx_export import REPORT_FILE, SAMPLE_FILE

# ---------------------------------------------------------------- evidence from the registry


def collect_evidence(
    client: MlflowClient,
    config: Config,
    challenger: ModelVersion,
    champion: ModelVersion | None,
    latency_calls: int,
    pooled: ModelVersion | None = None,
) -> Evidence:
    """Score challenger and champion on the challenger's holdout rows, each through its own feature spec,
    read the challenger's baseline metrics, measure its size, and time the engine each would serve with.

    ``pooled``: the pooled champion serving a region that has no champion of its own (ADR 0015), scored
    on the same rows for the graduation gate.

    Raises:
        GateInputError: the snapshot, the split or the challenger's artifacts cannot be read.
    """
    family, region = _tag(challenger, "family"), _tag(challenger, "region")
    spec = config.family(family)
    # One read of the challenger's run: its split boundaries and its baseline's metrics (issue 26).
    run = client.get_run(challenger.run_id) if challenger.run_id else None
    run_data = run.data if run is not None else None
    holdout, validation, calendars = challenger_holdout(client, config, challenger, family, region, run_data)
    with tempfile.TemporaryDirectory(prefix="modelyard-gates-") as tmp:
        loaded = load_version_with_spec(challenger, Path(tmp))
        x = version_features(loaded, holdout, calendars)
        challenger_score = score_model(loaded.model, challenger, spec.task, holdout, spec.target, config, x)
        engines = [serving_engines(loaded, spec.task, x)]
        champion_score, note = None, None
        if champion is not None:
            champion_score, note, champion_engines = _score_champion(
                champion, Path(tmp), holdout, calendars, config, spec.task, spec.target
            )
            engines += champion_engines
        pooled_score, pooled_note = None, None
        if pooled is not None:
            pooled_score, pooled_note, _ = _score_champion(
                pooled, Path(tmp), holdout, calendars, config, spec.task, spec.target
            )
        timed = serving_latencies(engines, latency_calls)
    reference = timed[1] if champion is not None and len(timed) > 1 else None
    baseline_algorithm, baseline_metrics = run_baseline(client, challenger, run_data)
    return Evidence(
        task=spec.task,
        challenger=challenger_score,
        champion=champion_score,
        validation=validation,
        size_mb=loaded.size_mb,
        latency_p99_ms=timed[0].p99_ms,
        latency_engine=timed[0].engine,
        reference_latency_ms=reference.p99_ms if reference else None,
        reference_latency=f"champion v{champion.version} ({reference.engine})" if reference and champion else None,
        holdout_rows=len(holdout),
        champion_note=note,
        pooled_model=pooled.name if pooled is not None else None,
        pooled=pooled_score,
        pooled_note=pooled_note,
        baseline_algorithm=baseline_algorithm,
        baseline_metrics=baseline_metrics,
        run_artifact_uri=run.info.artifact_uri if run is not None else None,
    )


def _score_champion(
    champion: ModelVersion,
    folder: Path,
    holdout: pd.DataFrame,
    calendars: RowCalendars,
    config: Config,
    task: Task,
    target: str,
) -> tuple[ModelScore | None, str | None, list[list[TimedEngine]]]:
    """The champion's score on the challenger's rows and its serving engines to time, or why it has no
    score (its spec needs what they lack)."""
    loaded = load_version_with_spec(champion, folder)
    try:
        x = version_features(loaded, holdout, calendars)
    except GateInputError as exc:
        return None, f"champion v{champion.version} cannot be scored on the challenger's holdout: {exc}", []
    score = score_model(loaded.model, champion, task, holdout, target, config, x)
    return score, None, [serving_engines(loaded, task, x)]


def run_baseline(
    client: MlflowClient, version: ModelVersion, run_data: RunData | None = None
) -> tuple[str | None, dict[str, float]]:
    """The baseline fitted beside ``version`` in its run (None: none) and that baseline's holdout metrics.

    Training logs them as ``baseline_holdout_<metric>`` (scored on the same holdout rows as the
    model); they come back keyed by the model's metric name (``holdout_auc``). ``run_data``: the
    run's data when the caller has already read it (no request then).
    """
    if not version.run_id:
        return None, {}
    run = run_data if run_data is not None else client.get_run(version.run_id).data
    algorithm = run.params.get("baseline_algorithm")
    prefix = "baseline_"
    metrics = {key.removeprefix(prefix): float(value) for key, value in run.metrics.items() if key.startswith(prefix)}
    if algorithm in (None, "", "none") and not metrics:
        return None, {}
    return algorithm or "baseline", metrics


def _tag(version: ModelVersion, key: str) -> str:
    value = (version.tags or {}).get(key)
    if not value:
        raise GateInputError(
            f"model '{version.name}' version {version.version} has no '{key}' tag "
            "(versions registered by `modelyard train` carry it; register through the training stage)"
        )
    return str(value)


def challenger_holdout(
    client: MlflowClient,
    config: Config,
    version: ModelVersion,
    family: str,
    region: str,
    run_data: RunData | None = None,
) -> tuple[pd.DataFrame, ValidationSummary, RowCalendars]:
    """The exact holdout rows the challenger was evaluated on, its snapshot's validation result, and
    each row's region with the config's calendars (a pooled snapshot's rows come from several regions).

    The snapshot comes from the version's ``data_digest`` tag; the split boundaries from its
    run's ``split_*`` params (so a later change of ``training.holdout_days`` cannot move them);
    ``run_data``: that run's data when the caller has already read it (no request then).
    """
    import numpy as np

    from modelyard.pipeline.snapshots import SnapshotNotFoundError, load_frame, read_snapshot
    from modelyard.promotion.row_calendars import pooled_members, row_calendars, row_regions
    from modelyard.training.split import SplitError, split_at, time_split

    digest = _tag(version, "data_digest")
    try:
        meta = read_snapshot(config.storage.features_dir, family, region, digest)
        frame = load_frame(config.storage.features_dir, meta)
    except (SnapshotNotFoundError, OSError) as exc:
        raise GateInputError(f"model '{version.name}' v{version.version}: cannot read its snapshot: {exc}") from exc
    pooled = pooled_members(meta.source) is not None
    if pooled:  # each row's member region travels through the split
        frame = frame.assign(**{_ROW_REGION: row_regions(config, meta, frame)})
    boundaries = _run_boundaries(client, version, run_data)
    try:
        if boundaries is not None:
            split = split_at(frame, boundaries)
        else:
            split = time_split(frame, config.training.holdout_days, config.training.validation_days)
    except SplitError as exc:
        raise GateInputError(f"model '{version.name}' v{version.version}: {exc}") from exc
    holdout = split.holdout
    regions = holdout.pop(_ROW_REGION).to_numpy() if pooled else np.full(len(holdout), meta.region, dtype=object)
    return holdout, meta.validation, row_calendars(config, regions)


_ROW_REGION = "_modelyard_row_region"


def _run_boundaries(
    client: MlflowClient, version: ModelVersion, run_data: RunData | None = None
) -> SplitBoundaries | None:
    import datetime as dt

    from modelyard.training.split import SplitBoundaries

    if not version.run_id:
        return None
    params = (run_data if run_data is not None else client.get_run(version.run_id).data).params
    keys = ("split_train_start", "split_valid_start", "split_holdout_start", "split_end")
    if not all(k in params for k in keys):
        return None
    values = [dt.datetime.fromisoformat(params[k]) for k in keys]
    return SplitBoundaries(*values)


@dataclass(frozen=True)
class LoadedVersion:
    """A registered version's native model, its artifacts' size and the feature spec it was trained with."""

    version: str
    model: Any
    size_mb: float
    spec: FittedSpec | None
    feature_names: list[str]
    # The downloaded model folder: its ``extra_files/`` hold the ONNX copy training stored.
    folder: Path | None = None


def load_version(version: ModelVersion, folder: Path) -> tuple[Any, float]:
    """Download a registered version's artifacts, load its native model, and return it with its size in MB.

    Raises:
        GateInputError: the artifacts cannot be downloaded or loaded.
    """
    loaded = load_version_with_spec(version, folder)
    return loaded.model, loaded.size_mb


# What the gates never open of a model: its environment files and input examples (they load it in this
# environment), the server's ONNX parity sample and the export's report (they check parity on the holdout).
_LEFT_OUT = ENVIRONMENT_FILES | EXAMPLE_FILES | {f"{SPEC_EXTRA_DIR}/{SAMPLE_FILE}", f"{SPEC_EXTRA_DIR}/{REPORT_FILE}"}


def load_version_with_spec(version: ModelVersion, folder: Path) -> LoadedVersion:
    """Download a registered version's artifacts: its native model, size, and its own ``feature_spec.json``.

    The spec is the one shipped in the model's ``extra_files/`` (else the run artifact the version's
    ``feature_spec`` tag names); a version without one reads the columns its signature names.

    Raises:
        GateInputError: the artifacts cannot be downloaded or loaded, or the spec cannot be read.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    try:
        downloaded = download_model(version.name, str(version.version), folder / f"v{version.version}", _LEFT_OUT)
        local = downloaded.path
        meta = Model.load(str(local))
        flavors = meta.flavors
        loader = mlflow.xgboost.load_model if "xgboost" in flavors else mlflow.sklearn.load_model
        model = loader(str(local)) if {"xgboost", "sklearn"} & set(flavors) else mlflow.pyfunc.load_model(str(local))
        fitted = version_spec(version, local, local)
    except (MlflowException, OSError) as exc:
        raise GateInputError(f"model '{version.name}' v{version.version}: cannot load its artifacts: {exc}") from exc
    names = fitted.names if fitted is not None else _signature_names(meta, version)
    return LoadedVersion(str(version.version), model, downloaded.size_bytes / 1e6, fitted, names, local)


def version_spec(version: ModelVersion, local: Path, folder: Path) -> FittedSpec | None:
    """The fitted spec of ``version``: in its model's ``extra_files/``, else its run's artifact, else none.

    Raises:
        GateInputError: the spec exists but is not one this code reads.
    """
    import json

    import mlflow

    from modelyard.core.featurespec import FeatureSpecError, FittedSpec
    from modelyard.training.mlflow_log import FEATURE_SPEC_ARTIFACT

    path = local / SPEC_EXTRA_DIR / FEATURE_SPEC_ARTIFACT
    tag = (version.tags or {}).get("feature_spec")
    if not path.exists() and tag and version.run_id:
        path = Path(mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path=tag, dst_path=str(folder)))
    if not path.exists():
        return None
    try:
        return FittedSpec.from_dict(json.loads(path.read_text()))
    except (FeatureSpecError, ValueError, KeyError, TypeError) as exc:
        raise GateInputError(f"model '{version.name}' v{version.version}: unreadable {path.name}: {exc}") from exc


def _signature_names(meta: Any, version: ModelVersion) -> list[str]:
    signature = meta.signature
    if signature is None:
        raise GateInputError(
            f"model '{version.name}' v{version.version} has neither a feature spec nor an input signature; retrain it"
        )
    return list(signature.inputs.input_names())


def version_features(loaded: LoadedVersion, rows: pd.DataFrame, calendars: RowCalendars | None = None) -> pd.DataFrame:
    """The model input of ``loaded`` for snapshot ``rows``, computed from their raw fields with its own spec.

    ``calendars``: each row's region and calendar; a row is featurised in the version's own calendar
    when it was fitted for the row's region, else in the region's (the server's rule). None: every row
    in the version's own calendar.

    Raises:
        GateInputError: the rows lack a raw field (or window aggregate) the version's spec reads.
    """
    import pandas as pd

    from modelyard.core.featurespec import FeatureSpecError

    if loaded.spec is None:
        missing = [name for name in loaded.feature_names if name not in rows.columns]
        if missing:
            raise GateInputError(f"v{loaded.version} reads column(s) {', '.join(missing)}, which the rows lack")
        return rows[loaded.feature_names].astype("float64")
    columns = raw_columns(loaded.spec, rows, loaded.version)
    parts = calendars.parts(loaded.spec) if calendars is not None else []
    try:
        if len(parts) > 1:
            computed = _compute_by_calendar(loaded.spec, columns, parts, len(rows))
        else:
            computed = loaded.spec.compute(columns, parts[0][0] if parts else None)
    except FeatureSpecError as exc:
        raise GateInputError(f"v{loaded.version}: {exc}") from exc
    return pd.DataFrame({name: values.astype("float64") for name, values in computed.items()}, index=rows.index)


def _compute_by_calendar(
    fitted: FittedSpec, columns: dict[str, np.ndarray], parts: list[tuple[Calendar, np.ndarray]], rows: int
) -> dict[str, np.ndarray]:
    """``fitted``'s features of each part of the rows in that part's calendar, put back in row order."""
    import numpy as np

    out: dict[str, np.ndarray] = {}
    for calendar, mask in parts:
        computed = fitted.compute({name: values[mask] for name, values in columns.items()}, calendar)
        for name, values in computed.items():
            if name not in out:
                out[name] = np.empty(rows, dtype=values.dtype)
            out[name][mask] = values
    return out


def raw_columns(fitted: FittedSpec, rows: pd.DataFrame, version: str) -> dict[str, np.ndarray]:
    """The raw columns (and window aggregates) ``fitted`` reads, from snapshot rows (``event_time``, ``raw.*``).

    Raises:
        GateInputError: naming the fields the rows do not carry.
    """
    import pandas as pd

    from modelyard.core.contracts.columns import RAW_PREFIX, TIME_COLUMN

    out: dict[str, np.ndarray] = {}
    missing = []
    for name in fitted.raw_inputs:
        if name == fitted.spec.time_column:
            out[name] = pd.to_datetime(rows[TIME_COLUMN], utc=True).dt.tz_localize(None).to_numpy()
        elif f"{RAW_PREFIX}{name}" in rows.columns:
            out[name] = rows[f"{RAW_PREFIX}{name}"].to_numpy()
        else:
            missing.append(name)
    for name in fitted.requested:
        if name in rows.columns:
            out[name] = rows[name].to_numpy()
        else:
            missing.append(name)
    if missing:
        raise GateInputError(
            f"v{version}'s feature spec reads raw field(s) {', '.join(missing)}, which the snapshot rows do not carry"
        )
    return out


def score_model(
    model: Any, version: ModelVersion, task: Task, holdout: pd.DataFrame, target: str, config: Config, x: pd.DataFrame
) -> ModelScore:
    """Predictions of ``model`` on ``x`` (``holdout`` featurised by the version's own spec) and the holdout
    metrics (overall and per slice of ``holdout``)."""
    from modelyard.training.metrics import evaluate

    family = config.family(_tag(version, "family"))
    predictions = _predict(model, task, x)
    scored = evaluate(
        task,
        holdout,
        predictions,
        target=target,
        split="holdout",
        threshold=config.training.operating_threshold,
        slices=family.slices,
    )
    return ModelScore(version=str(version.version), predictions=predictions, metrics=scored)


def _predict(model: Any, task: Task, x: pd.DataFrame) -> np.ndarray:
    import numpy as np
    from mlflow.pyfunc import PyFuncModel

    from modelyard.training.models import predict

    if isinstance(model, PyFuncModel):
        # A generic pyfunc model: its predict() is taken as the score (probability or value).
        return np.asarray(model.predict(x), dtype=float).reshape(len(x), -1)[:, -1]
    return predict(model, task, x)


# ---------------------------------------------------------------- latency of the engine that will serve (ADR 0012)

# The serving pod's parity bound (deploy/serving/engines.py: PARITY_ATOL, PARITY_RTOL; promotion cannot import deploy).
PARITY_ATOL = 1e-6
PARITY_RTOL = 2.0**-18
# Single rows to time a version on (cycled up to ``latency_calls``): enough for a p99, cheap to slice.
MAX_TIMED_ROWS = 1000


class OnnxUnusable(Exception):
    """The version would be served natively; the message says why."""


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: its rows are a list
class TimedEngine:
    """One engine of one version, ready to be timed on single rows."""

    engine: str  # "native" or "onnx"
    call: Callable[[Any], Any]
    rows: Sequence[Any]
    reason: str = ""
    # The model's shape (see :func:`model_shape`): an engine of a shape timed already in this process
    # reuses that timing. None: always timed.
    shape: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class EngineLatency:
    """The engine a version would serve one-row calls with, and its single-row p99 in ms."""

    engine: str
    p99_ms: float


def serving_engines(loaded: LoadedVersion, task: Task, x: pd.DataFrame) -> list[TimedEngine]:
    """The engines the server chooses between for ``loaded``: native, and its ONNX copy when that is exact.

    The server (``deploy/serving/engines.py``) answers one-row calls with the ONNX copy when it
    reproduces the native predictions and is not slower on one row: :func:`onnx_engine` checks the
    first condition (on the holdout's rows without missing values), the timing decides the second.
    """
    model, x = loaded.model, x.iloc[:MAX_TIMED_ROWS]
    shape = model_shape(loaded, task)
    native = TimedEngine(
        "native", lambda row: _predict(model, task, row), [x.iloc[[i]] for i in range(len(x))], shape=shape
    )
    try:
        return [native, replace(onnx_engine(loaded, task, x), shape=shape)]
    except OnnxUnusable as exc:
        return [replace(native, reason=str(exc))]


def model_shape(loaded: LoadedVersion, task: Task) -> tuple[Any, ...] | None:
    """What a model's single-row cost depends on, as the server's calibration keys it (ADR 0002, ADR 0012):
    its type, task, feature count and artifact size in ~9% bins. None for a version not downloaded from
    the registry (always timed)."""
    if loaded.folder is None:
        return None
    size = round(math.log2(max(loaded.size_mb * 1e6, 1.0)) * 8)
    return (type(loaded.model).__qualname__, task, len(loaded.feature_names), size)


def onnx_engine(loaded: LoadedVersion, task: Task, x: pd.DataFrame) -> TimedEngine:
    """The version's ONNX copy as the server runs it (one thread), checked against the native model on ``x``.

    Raises:
        OnnxUnusable: no ONNX copy, no onnxruntime, a generic pyfunc model, or a parity miss.
    """
    import numpy as np
    from mlflow.pyfunc import PyFuncModel

    if isinstance(loaded.model, PyFuncModel) or loaded.folder is None:
        raise OnnxUnusable("pyfunc flavor: served natively")
    session = _onnx_session(loaded.folder / SPEC_EXTRA_DIR)
    matrix = np.ascontiguousarray(x[loaded.feature_names].to_numpy(dtype=np.float32))
    clean = matrix[~np.isnan(matrix).any(axis=1)]
    if len(clean) == 0:
        raise OnnxUnusable("no holdout row without missing values to check the ONNX copy on")
    call = _onnx_call(session, task)
    expected = _predict(loaded.model, task, _frame(clean, loaded.feature_names))
    got = call(clean)
    bound = PARITY_ATOL + PARITY_RTOL * np.abs(expected)
    if got.shape != expected.shape or not bool((np.abs(got - expected) <= bound).all()):
        raise OnnxUnusable("the ONNX copy disagrees with the native model: served natively")
    return TimedEngine("onnx", call, [clean[i : i + 1] for i in range(len(clean))])


def _frame(matrix: np.ndarray, names: list[str]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(matrix.astype("float64"), columns=names)


def _onnx_session(folder: Path) -> Any:
    from modelyard.training.onnx_export import ONNX_FILE

    if not (folder / ONNX_FILE).exists():
        raise OnnxUnusable("no ONNX copy stored with this version: served natively")
    try:
        import onnxruntime as ort
    except ImportError:
        raise OnnxUnusable("onnxruntime is not installed here: timed natively") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # as the serving pod runs it
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(folder / ONNX_FILE), options, providers=["CPUExecutionProvider"])


def _onnx_call(session: Any, task: Task) -> Callable[[np.ndarray], np.ndarray]:
    """Predictions of ``session`` shaped like :func:`_predict`'s: class-1 probability or value, float64."""
    import numpy as np

    from modelyard.training.onnx_export import INPUT_NAME

    names = [o.name for o in session.get_outputs()]
    output = "probabilities" if task == "classification" and "probabilities" in names else names[-1]

    def call(matrix: np.ndarray) -> np.ndarray:
        result = np.asarray(session.run([output], {INPUT_NAME: matrix})[0], dtype=np.float64)
        return result[:, -1] if output == "probabilities" else result.reshape(len(matrix))

    return call


def serving_latencies(versions: list[list[TimedEngine]], calls: int) -> list[EngineLatency]:
    """Per version, the faster of its engines on one row (what the server picks) and that engine's p99.

    All engines of all versions are timed in the same rounds, taking turns, so load on the machine
    falls on the challenger and its reference alike.
    """
    flat = [engine for engines in versions for engine in engines]
    p99s = iter(p99_latencies_ms(flat, calls))
    chosen = []
    for engines in versions:
        p99, engine = min((next(p99s), engine.engine) for engine in engines)
        chosen.append(EngineLatency(engine, p99))
    return chosen


def p99_latency_ms(model: Any, task: Task, x: pd.DataFrame, calls: int) -> float:
    """The native model's single-row p99 prediction latency in milliseconds (see :func:`p99_latencies_ms`)."""
    rows = [x.iloc[[i]] for i in range(min(len(x), calls))]
    return p99_latencies_ms([TimedEngine("native", lambda row: _predict(model, task, row), rows)], calls)[0]


def p99_latencies_ms(engines: Sequence[TimedEngine], calls: int) -> list[float]:
    """Each engine's single-row p99 prediction latency in milliseconds, robust to a busy machine.

    The budget is about the model, not about the machine that happens to run the gate. So:

    * each call is charged the smaller of its wall time and the CPU time the process spent during
      it: time spent waiting for a core that other processes hold (load on a shared CI machine) is
      not charged, while the work of the model is, whichever thread of the process does it;
    * the p99 over ``calls`` single-row calls is measured ``LATENCY_ROUNDS`` times per engine, the
      engines taking turns within a round, and each engine's best round is kept: one burst of
      interference does not decide, and what remains of the load falls on every engine alike;
    * the garbage collector is paused while timing, after a warm-up of ``WARM_UP_CALLS``;
    * an engine of a model *shape* (:func:`model_shape`) timed already in this process reuses that
      p99, as the server shares its calibration per shape: a chunk of one family's models is timed
      once per engine and shape, not once per pair (issue 26). Engines without a shape are always timed.

    A model that is truly slow is slow in every round, in CPU time as in wall time, and is still
    rejected; a fast model on an idle machine measures as before (its CPU time equals its wall time).
    """
    todo = [e for e in dict.fromkeys(engines) if _shape_key(e, calls) not in _SHAPE_P99_MS]
    measured = dict(zip(todo, _measure_p99s_ms(todo, calls), strict=True))
    for engine, p99 in measured.items():
        if engine.shape is not None:
            _SHAPE_P99_MS[_shape_key(engine, calls)] = p99
    return [measured[e] if e in measured else _SHAPE_P99_MS[_shape_key(e, calls)] for e in engines]


# (engine, model shape, calls) -> single-row p99 ms, for this process: a chunk's models of one shape
# are timed once (issue 26), as the server calibrates once per shape.
_SHAPE_P99_MS: dict[tuple[Any, ...], float] = {}


def _shape_key(engine: TimedEngine, calls: int) -> tuple[Any, ...]:
    return (engine.engine, engine.shape, calls) if engine.shape is not None else (id(engine),)


def _measure_p99s_ms(engines: Sequence[TimedEngine], calls: int) -> list[float]:
    batches = [[engine.rows[i % len(engine.rows)] for i in range(calls)] for engine in engines]
    for engine, rows in zip(engines, batches, strict=True):
        for row in rows[:WARM_UP_CALLS]:
            engine.call(row)
    best = [float("inf")] * len(engines)
    for _ in range(LATENCY_ROUNDS):
        for i, (engine, rows) in enumerate(zip(engines, batches, strict=True)):
            best[i] = min(best[i], _round_p99_ms(engine.call, rows))
    return best


def _round_p99_ms(call: Callable[[Any], Any], rows: list[Any]) -> float:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        costs = [_call_cost_ms(call, row) for row in rows]
    finally:
        if was_enabled:
            gc.enable()
    return float(statistics.quantiles(costs, n=100, method="inclusive")[98])


def _call_cost_ms(call: Callable[[Any], Any], row: Any) -> float:
    wall, cpu = time.perf_counter(), time.process_time()
    call(row)
    return min(time.perf_counter() - wall, time.process_time() - cpu) * 1000
