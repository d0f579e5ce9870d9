"""The model lifecycle of the serving runtime: ``load`` -> ``warm_up`` -> ``ready``, ``predict``.

A ``ServedModel`` is one registered MLflow model version held in memory. Loading picks
the fastest path the model allows:

* xgboost flavor: the native ``Booster`` from the model directory, ``inplace_predict``
  on a float32 numpy matrix, one thread;
* scikit-learn flavor: the estimator (skops, cloudpickle or pickle, read as
  ``mlflow.sklearn`` reads it but without importing it: it imports pandas),
  ``predict_proba`` (class 1) for classifiers, ``predict`` otherwise;
* anything else: the generic ``mlflow.pyfunc`` model on a pandas frame (run off the
  event loop, since its cost is unknown); it needs pandas, which the ``[serving]`` extra
  leaves out.

Inputs are validated against the model signature while converting JSON records
straight to numpy (no pandas on the fast paths); problems raise ``BadInput`` naming the
record and field. Typed errors: ``ModelMissing`` (not in the registry),
``ModelLoadFailed`` (cannot be loaded or warmed up), ``BadInput``, ``InferenceFailed``.

A version with a fitted feature spec (``extra_files/feature_spec.json``, else the run
artifact its ``feature_spec`` tag names) takes raw fields: see ``features``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from modelyard.deploy.serving.errors import BadInput, InferenceFailed, ModelLoadFailed, ModelMissing
from modelyard.deploy.serving.errors import ServingError as ServingError  # re-exported for the server
from modelyard.deploy.serving.features import Prepared, RawFeatures, read_spec

if TYPE_CHECKING:
    import numpy as np

    from modelyard.core.featurespec import FittedSpec

log = logging.getLogger("modelyard.serving.runtime")

ModelState = Literal["loading", "warming", "ready", "failed", "released"]
Task = Literal["classification", "regression", "unknown"]
_URI = re.compile(r"^models:/(?P<name>[^/@\s]+)(?:/(?P<version>[0-9]+)|@(?P<alias>[A-Za-z0-9_\-]+))$")
_PYTHON_TYPES: dict[str, type] = {"double": float, "float": float, "long": int, "integer": int, "boolean": bool}
WARMUP_BATCH_SIZES = (1, 8, 64)
SPEC_FILE = "feature_spec.json"  # in the version's extra_files/ (training.train.FEATURE_SPEC_ARTIFACT)


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """A parsed ``models:/name/version`` or ``models:/name@alias`` URI."""

    uri: str
    name: str
    version: str | None
    alias: str | None

    @classmethod
    def parse(cls, uri: str) -> ModelRef:
        match = _URI.match(uri)
        if not match:
            raise ModelMissing(f"model URI '{uri}' is not models:/<name>/<version> or models:/<name>@<alias>")
        return cls(uri, match["name"], match["version"], match["alias"])


@dataclasses.dataclass(frozen=True)
class Feature:
    """One input column of a model signature."""

    name: str
    kind: str
    required: bool = True


_MSGSPEC_ERROR = re.compile(r"^(?P<msg>.*?)(?: - at `\$\[(?P<index>\d+)\](?P<rest>[^`]*)`)?$", re.S)
_MISSING_FIELD = re.compile(r"Object missing required field `(?P<name>[^`]+)`")


class InputSchema:
    """Validates JSON records against a signature and turns them into a model input matrix."""

    def __init__(self, features: Sequence[Feature]) -> None:
        if not features:
            raise ModelLoadFailed("the model signature has no named input columns")
        self.features = tuple(features)
        self.names = tuple(f.name for f in features)
        self.numeric = all(f.kind in _PYTHON_TYPES for f in features)
        self._row_list_type: Any = list[self._row_struct()]  # type: ignore[misc]

    def _row_struct(self) -> type[msgspec.Struct]:
        fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        for feature in self.features:
            python_type = _PYTHON_TYPES.get(feature.kind, str)
            if feature.required:
                fields.append((feature.name, python_type))
            else:
                fields.append((feature.name, python_type | None, None))
        return msgspec.defstruct("Row", fields, gc=False)

    def describe(self) -> list[dict[str, Any]]:
        return [{"name": f.name, "type": f.kind, "required": f.required} for f in self.features]

    def to_matrix(self, records: list[Any]) -> np.ndarray:
        """Validate ``records`` (dicts) and return the model input matrix.

        Raises:
            BadInput: a record is not an object, misses a feature, has a value of the wrong
                type, or a value does not fit float32; ``field`` is e.g. ``records[3].hour_sin``.
        """
        import numpy as np

        try:
            rows = msgspec.convert(records, self._row_list_type)
        except msgspec.ValidationError as exc:
            raise _bad_input_from_msgspec(str(exc)) from None
        values = [msgspec.structs.astuple(row) for row in rows]
        if not self.numeric:
            matrix = np.empty((len(values), len(self.names)), dtype=object)
            matrix[:] = values
            return matrix
        try:
            with np.errstate(over="ignore"):  # overflow is reported below, naming the field
                matrix = np.array(values, dtype=np.float32)
        except (TypeError, ValueError) as exc:  # None in an optional column
            matrix = np.array([[math.nan if v is None else v for v in row] for row in values], dtype=np.float32)
            if matrix.size == 0:
                raise BadInput(f"records could not be converted: {exc}", field="records") from None
        if np.isinf(matrix).any():
            row, col = (int(i) for i in np.argwhere(np.isinf(matrix))[0])
            raise BadInput("value does not fit a 32-bit float", field=f"records[{row}].{self.names[col]}")
        return matrix


def _bad_input_from_msgspec(text: str) -> BadInput:
    match = _MSGSPEC_ERROR.match(text)
    message, index, rest = (match["msg"], match["index"], match["rest"]) if match else (text, None, "")
    missing = _MISSING_FIELD.search(message)
    if missing:
        rest = f".{missing['name']}"
        message = "required feature is missing"
    if index is None:
        return BadInput(message.replace("`", "'"), field="records")
    if message.startswith("Expected `object`"):
        message = message.replace("`", "'") + " (each record must be a JSON object of feature -> value)"
    return BadInput(message.replace("`", "'"), field=f"records[{index}]{rest}")


@dataclasses.dataclass
class ModelStatus:
    """What ``/readyz`` shows per model."""

    uri: str
    name: str
    version: str | None = None
    flavor: str | None = None
    task: Task = "unknown"
    state: ModelState = "loading"
    load_seconds: float | None = None
    warmup_seconds: float | None = None
    last_error: str | None = None
    engine: str = "native"
    engine_detail: dict[str, Any] | None = None  # see engines.EngineReport
    inputs: dict[str, Any] | None = None  # what a client sends, when the version has a feature spec

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ServedModel:
    """One model version in memory, ready to predict on validated matrices."""

    def __init__(
        self,
        status: ModelStatus,
        schema: InputSchema,
        predict_fn: Callable[[np.ndarray], np.ndarray],
        *,
        inline: bool,
        example: list[dict[str, Any]],
        workdir: Path | None,
        raw: RawFeatures | None = None,
    ) -> None:
        self.status = status
        self.schema = schema
        self.raw = raw  # raw fields -> features, when the version has a fitted feature spec
        self._predict_fn = predict_fn
        self.inline = inline  # cheap and predictable enough to run on the event loop
        self.example = example
        self._workdir = workdir

    @property
    def uri(self) -> str:
        return self.status.uri

    @property
    def name(self) -> str:
        return self.status.name

    @property
    def version(self) -> str:
        return self.status.version or "?"

    def prepare(self, records: list[Any]) -> np.ndarray:
        """Validate records and convert them to this model's input matrix (raises ``BadInput``)."""
        return self.prepare_counted(records).matrix

    def prepare_counted(self, records: list[Any]) -> Prepared:
        """Like :meth:`prepare`, with the unknown categories per feature (raw records only)."""
        if self.raw is None:
            return Prepared(self.schema.to_matrix(records))
        return self.raw.prepare(records)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Predict on a prepared matrix: class-1 probability (classifiers) or value (regressors).

        Raises:
            InferenceFailed: the model raised, or returned the wrong number of rows.
        """
        try:
            output = self._predict_fn(matrix)
        except Exception as exc:
            raise InferenceFailed(f"model {self.uri} failed: {type(exc).__name__}: {exc}") from exc
        if len(output) != len(matrix):
            raise InferenceFailed(f"model {self.uri} returned {len(output)} predictions for {len(matrix)} rows")
        return output

    def warm_up(self, batch_sizes: Sequence[int] = WARMUP_BATCH_SIZES) -> None:
        """Predict on the input example at a few batch sizes, checking the outputs.

        Raises:
            ModelLoadFailed: the example does not validate or the model fails on it.
        """
        import numpy as np

        self.status.state = "warming"
        started = time.perf_counter()
        try:
            base = self.prepare(self.example)
        except BadInput as exc:
            raise ModelLoadFailed(f"model {self.uri}: input example does not match its signature: {exc}") from exc
        for size in batch_sizes:
            matrix = np.resize(base, (size, base.shape[1])) if len(base) != size else base
            try:
                output = self.predict(matrix)
            except InferenceFailed as exc:
                raise ModelLoadFailed(f"warm-up failed on a batch of {size}: {exc.message}") from exc
            if output.dtype.kind == "f" and not np.isfinite(output).all():
                raise ModelLoadFailed(f"model {self.uri}: warm-up on a batch of {size} returned NaN/inf")
        self.status.warmup_seconds = round(time.perf_counter() - started, 4)
        self.status.state = "ready"

    def release(self) -> None:
        """Drop the model and its downloaded folder (every flavor: a swap must not leave it behind)."""
        self.status.state = "released"
        self._predict_fn = _released
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)


def _released(matrix: Any) -> Any:
    raise RuntimeError("model was released")


def load_model(uri: str, cache_root: Path | None = None, warmup_batch: int = 64) -> ServedModel:
    """Load ``uri`` from the MLflow registry (tracking URI from ``MLFLOW_TRACKING_URI``) and warm it up.

    Raises:
        ModelMissing: the registry has no such model version or alias.
        ModelLoadFailed: the artifacts cannot be read or loaded, or warm-up fails.
    """
    ref = ModelRef.parse(uri)
    status = ModelStatus(uri=uri, name=ref.name)
    started = time.perf_counter()
    status.version, tags = _resolve_version(ref)
    workdir = Path(tempfile.mkdtemp(prefix="modelyard-model-", dir=cache_root))
    try:
        model = _load_from_dir(status, _download(ref, status.version, workdir), workdir, tags.get("feature_spec"))
        status.load_seconds = round(time.perf_counter() - started, 4)
        model.warm_up(sorted({1, 8, max(1, warmup_batch)}))
    except Exception:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return model


def _resolve_version(ref: ModelRef) -> tuple[str, dict[str, str]]:
    """The version number and its tags."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        if ref.alias is not None:
            found = client.get_model_version_by_alias(ref.name, ref.alias)
        else:
            found = client.get_model_version(ref.name, str(ref.version))
        return str(found.version), dict(found.tags or {})
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            what = f"alias '{ref.alias}'" if ref.alias else f"version {ref.version}"
            raise ModelMissing(
                f"registered model '{ref.name}' has no {what} in the MLflow registry "
                f"(check the plan's model_uri {ref.uri} or register the model first)"
            ) from exc
        raise ModelLoadFailed(f"MLflow registry error for {ref.uri}: {exc.message}") from exc
    except Exception as exc:
        raise ModelLoadFailed(f"cannot reach the MLflow registry for {ref.uri}: {type(exc).__name__}: {exc}") from exc


def _download(ref: ModelRef, version: str, workdir: Path) -> Path:
    import mlflow

    try:
        return Path(mlflow.artifacts.download_artifacts(f"models:/{ref.name}/{version}", dst_path=str(workdir)))
    except Exception as exc:
        raise ModelMissing(f"artifacts of {ref.uri} (version {version}) cannot be downloaded: {exc}") from exc


@dataclasses.dataclass(frozen=True)
class ModelMeta:
    """What the runtime needs from an MLmodel file: flavours, input signature, input example.

    Read from the YAML itself: ``mlflow.models.Model`` imports pandas (through its signature
    module), which the ``[serving]`` extra leaves out.
    """

    flavors: dict[str, Any]
    inputs: list[dict[str, Any]] | None
    saved_input_example_info: dict[str, Any] | None
    run_id: str | None = None


def read_mlmodel(path: Path) -> ModelMeta:
    """The ``MLmodel`` file of a downloaded model directory."""
    import orjson
    import yaml

    raw = yaml.safe_load((path / "MLmodel").read_text()) or {}
    inputs = (raw.get("signature") or {}).get("inputs")
    return ModelMeta(
        flavors=dict(raw.get("flavors") or {}),
        inputs=list(orjson.loads(inputs)) if inputs else None,
        saved_input_example_info=raw.get("saved_input_example_info"),
        run_id=raw.get("run_id"),
    )


def _load_from_dir(status: ModelStatus, path: Path, workdir: Path, spec_tag: str | None = None) -> ServedModel:
    try:
        meta = read_mlmodel(path)
    except Exception as exc:
        raise ModelLoadFailed(f"{status.uri}: no readable MLmodel file in the artifacts: {exc}") from exc
    fitted = _fitted_spec(status, path, meta, spec_tag)
    raw: RawFeatures | None = None
    if fitted is None:
        schema = _schema_from(meta, status.uri)
    else:  # the signature shows the raw fields; the model reads the spec's feature columns
        schema = InputSchema([Feature(name, "double") for name in fitted.names])
        raw = RawFeatures(fitted, schema)
        status.inputs = raw.describe()
    example = _example_records(meta, path, schema)
    flavors = meta.flavors

    def served(predict_fn: Callable[[np.ndarray], np.ndarray], inline: bool, keep: Path | None) -> ServedModel:
        return ServedModel(status, schema, predict_fn, inline=inline, example=example, workdir=keep, raw=raw)

    if "xgboost" in flavors and schema.numeric:
        status.flavor = "xgboost"
        predict_fn, status.task = _xgboost_predictor(path / flavors["xgboost"]["data"])
        return served(
            _fast_path(status, path, predict_fn, served(predict_fn, True, None).prepare, example), True, workdir
        )
    if "sklearn" in flavors and schema.numeric:
        status.flavor = "sklearn"
        predict_fn, status.task = _sklearn_predictor(path, flavors["sklearn"])
        return served(
            _fast_path(status, path, predict_fn, served(predict_fn, True, None).prepare, example), True, workdir
        )
    status.flavor = "pyfunc"
    status.engine_detail = {"engine": "native", "reason": "pyfunc flavor or non-numeric inputs: no ONNX fast path"}
    return served(_pyfunc_predictor(path, schema), False, workdir)


def _fitted_spec(status: ModelStatus, path: Path, meta: Any, spec_tag: str | None) -> FittedSpec | None:
    """The version's fitted spec: shipped in ``extra_files/``, else the run artifact its tag names, else none."""
    from modelyard.core.featurespec import FeatureSpecError
    from modelyard.deploy.serving.engines import EXTRA_FILES_DIR

    local = path / EXTRA_FILES_DIR / SPEC_FILE
    try:
        if not local.exists():
            if spec_tag is None:
                return None
            local = _download_run_artifact(status, meta, spec_tag, path)
        fitted = read_spec(local)
        fitted.spec.check_functions()  # a user function the pod cannot import fails the load, named
    except FeatureSpecError as exc:
        raise ModelLoadFailed(f"{status.uri}: {exc}") from exc
    return fitted


def _download_run_artifact(status: ModelStatus, meta: Any, artifact: str, path: Path) -> Path:
    import mlflow

    if not meta.run_id:
        raise ModelLoadFailed(f"{status.uri} is tagged feature_spec={artifact} but its MLmodel names no run")
    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=meta.run_id, artifact_path=artifact, dst_path=str(path)))
    except Exception as exc:
        raise ModelLoadFailed(
            f"{status.uri}: feature spec '{artifact}' of run {meta.run_id} cannot be downloaded ({exc}); "
            "the version takes raw fields only with it: re-log the run artifact or retrain"
        ) from exc


def _fast_path(
    status: ModelStatus,
    path: Path,
    native: Callable[[np.ndarray], np.ndarray],
    prepare: Callable[[list[Any]], np.ndarray],
    example: list[dict[str, Any]],
) -> Callable[[np.ndarray], np.ndarray]:
    """ONNX for small batches when its copy is exact and faster, else ``native`` (the reason goes to /readyz).

    ``prepare`` turns the input example into the matrix (raw fields featurised first).
    """
    from modelyard.deploy.serving import engines

    try:
        matrix = prepare(example)
    except BadInput:  # warm-up reports it
        return native
    predict_fn, report = engines.choose_engine(path, native, matrix)
    status.engine, status.engine_detail = report.engine, report.to_dict()
    log.info("engine chosen", extra={"uri": status.uri, "engine": report.engine, "reason": report.reason})
    return predict_fn


def _schema_from(meta: ModelMeta, uri: str) -> InputSchema:
    if meta.inputs is None:
        raise ModelLoadFailed(f"{uri} has no input signature: log it with signature=infer_signature(X, y)")
    features = []
    for spec in meta.inputs:
        if "name" not in spec:
            raise ModelLoadFailed(f"{uri}: the signature has an unnamed input; log a column-based signature")
        features.append(Feature(spec["name"], str(spec.get("type", "double")), bool(spec.get("required", True))))
    return InputSchema(features)


def _example_records(meta: ModelMeta, path: Path, schema: InputSchema) -> list[dict[str, Any]]:
    import orjson

    split = _split_frame_example(meta, path)
    if split is not None:
        return split
    if meta.saved_input_example_info is None:
        return [{f.name: _zero(f.kind) for f in schema.features}]
    try:
        from mlflow.models import Model  # other example formats: MLflow's reader (needs pandas)

        example: Any = Model.load(str(path)).load_input_example(str(path))
    except Exception as exc:
        log.warning("input example unreadable, warming up on zeros", extra={"uri": str(path), "error": str(exc)})
        example = None
    if example is None:
        return [{f.name: _zero(f.kind) for f in schema.features}]
    if hasattr(example, "to_json"):
        return list(orjson.loads(example.to_json(orient="records")))
    if isinstance(example, dict):
        return [example]
    return list(example)


def _split_frame_example(meta: ModelMeta, path: Path) -> list[dict[str, Any]] | None:
    """A DataFrame input example (MLflow's ``split`` JSON) as records, read without pandas."""
    import orjson

    info = meta.saved_input_example_info or {}
    if info.get("type") != "dataframe" or info.get("pandas_orient", "split") != "split" or "params" in info:
        return None
    try:
        raw = orjson.loads((path / info["artifact_path"]).read_bytes())
        return [dict(zip(raw["columns"], row, strict=True)) for row in raw["data"]]
    except (OSError, KeyError, TypeError, ValueError):
        return None  # let MLflow's own reader try


def _zero(kind: str) -> Any:
    return {"double": 0.0, "float": 0.0, "long": 0, "integer": 0, "boolean": False}.get(kind, "")


def _xgboost_predictor(model_file: Path) -> tuple[Callable[[np.ndarray], np.ndarray], Task]:
    import orjson
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(str(model_file))
    booster.set_param({"nthread": 1})
    objective = str(orjson.loads(booster.save_config())["learner"]["objective"]["name"])
    task: Task = "classification" if objective.startswith(("binary:", "multi:")) else "regression"
    # Early stopping keeps every tree in the file; the model that was scored (and that the
    # sklearn wrapper predicts with) stops at best_iteration.
    best = booster.attributes().get("best_iteration")
    trees = (0, int(best) + 1) if best is not None else (0, 0)

    def predict(x: np.ndarray) -> np.ndarray:
        return booster.inplace_predict(x, iteration_range=trees)

    if objective == "binary:logitraw":
        import numpy as np

        return (lambda x: 1.0 / (1.0 + np.exp(-predict(x)))), task
    return predict, task


def _sklearn_predictor(path: Path, flavor: dict[str, Any]) -> tuple[Callable[[np.ndarray], np.ndarray], Task]:
    from sklearn.base import is_classifier

    estimator = _load_sklearn_estimator(path / flavor["pickled_model"], flavor)
    if is_classifier(estimator) and hasattr(estimator, "predict_proba"):
        n_classes = len(getattr(estimator, "classes_", [0, 1]))
        if n_classes == 2:
            import numpy as np

            # A column view is not C-contiguous, and orjson refuses to serialize it.
            return (lambda x: np.ascontiguousarray(estimator.predict_proba(x)[:, 1])), "classification"
        return estimator.predict_proba, "classification"
    return estimator.predict, "regression"


def _load_sklearn_estimator(model_file: Path, flavor: dict[str, Any]) -> Any:
    """The estimator of an MLflow ``sklearn`` flavour, read as ``mlflow.sklearn`` reads it.

    Not through ``mlflow.sklearn``: that module imports pandas, which the ``[serving]`` image
    leaves out. Honours ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` like MLflow does.
    """
    from mlflow.environment_variables import MLFLOW_ALLOW_PICKLE_DESERIALIZATION

    if not MLFLOW_ALLOW_PICKLE_DESERIALIZATION.get():
        raise ModelLoadFailed(
            f"{model_file}: MLFLOW_ALLOW_PICKLE_DESERIALIZATION is false; set it to true to load "
            "scikit-learn models (from a registry you trust)"
        )
    fmt = flavor.get("serialization_format", "pickle")
    if fmt == "skops":
        import skops.io

        return skops.io.load(model_file, trusted=flavor.get("skops_trusted_types"))
    if fmt not in ("pickle", "cloudpickle"):
        raise ModelLoadFailed(f"{model_file}: unknown scikit-learn serialization format '{fmt}'")
    import cloudpickle  # reads plain pickles too

    with model_file.open("rb") as file:
        return cloudpickle.load(file)


def _pyfunc_predictor(path: Path, schema: InputSchema) -> Callable[[np.ndarray], np.ndarray]:
    try:
        import mlflow.pyfunc  # needs pandas, which the [serving] extra leaves out
    except ImportError as exc:
        raise ModelLoadFailed(
            f"pyfunc model at {path} needs {exc.name}: install it into the serving image "
            "(only the xgboost and scikit-learn flavours load without pandas)"
        ) from exc
    try:
        model = mlflow.pyfunc.load_model(str(path))
    except Exception as exc:
        raise ModelLoadFailed(f"pyfunc model at {path} cannot be loaded: {type(exc).__name__}: {exc}") from exc
    names = list(schema.names)

    def predict(matrix: np.ndarray) -> np.ndarray:
        import numpy as np
        import pandas as pd

        frame = pd.DataFrame(matrix, columns=names)
        for feature in schema.features:
            if feature.kind in ("long", "integer"):
                frame[feature.name] = frame[feature.name].astype("int64")
            elif feature.kind in ("double", "float"):
                frame[feature.name] = frame[feature.name].astype("float64")
        output = model.predict(frame)
        array = np.asarray(output.to_numpy() if hasattr(output, "to_numpy") else output)
        return array.reshape(len(matrix), -1)[:, 0] if array.ndim > 1 and array.shape[-1] == 1 else array

    return predict


# ---------------------------------------------------------------------------- many models at once


def process_rss() -> int:
    """This process's resident set size in bytes."""
    import psutil

    return int(psutil.Process().memory_info().rss)


@dataclasses.dataclass
class LoadProgress:
    """How far the loading of one plan's models got (``/readyz`` shows it while it runs).

    ``reused`` models were already in memory with the same (name, version) and cost nothing;
    ``loaded`` ones were downloaded, loaded and warmed by this plan. Counters are updated by
    the loader threads; a reader may see them a moment apart, never torn.
    """

    total: int
    reused: int = 0
    loaded: int = 0
    failed: int = 0
    in_flight: int = 0
    threads: int = 1
    rss_before_bytes: int | None = None
    rss_after_bytes: int | None = None
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def done(self) -> int:
        return self.reused + self.loaded

    @property
    def rss_per_loaded_model_bytes(self) -> int | None:
        """RSS growth divided by the models this plan loaded (concurrent loads share the delta)."""
        if self.rss_before_bytes is None or self.rss_after_bytes is None or not self.loaded:
            return None
        return max(0, self.rss_after_bytes - self.rss_before_bytes) // self.loaded

    def summary(self) -> str:
        """``loading 137/500`` (models ready of the plan's total)."""
        return f"loading {self.done}/{self.total}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "progress": self.summary(),
            "total": self.total,
            "done": self.done,
            "reused": self.reused,
            "loaded": self.loaded,
            "failed": self.failed,
            "in_flight": self.in_flight,
            "threads": self.threads,
            "rss_before_bytes": self.rss_before_bytes,
            "rss_after_bytes": self.rss_after_bytes,
            "rss_per_loaded_model_bytes": self.rss_per_loaded_model_bytes,
        }

    def _count(self, field: str, delta: int = 1) -> None:
        with self._lock:
            setattr(self, field, getattr(self, field) + delta)


@dataclasses.dataclass
class LoadOutcome:
    """What :func:`load_models` made: the plan's models, or the first failure (nothing kept)."""

    models: dict[str, ServedModel]
    fresh: list[str]
    failed_uri: str | None = None
    error: Exception | None = None


def reusable(uri: str, current: dict[str, ServedModel]) -> ServedModel | None:
    """A loaded model ``uri`` names: the same URI, or a concrete ``models:/name/N`` already in memory
    under another URI (an alias that resolved to version N): one (name, version) loads once.
    """
    model = current.get(uri)
    if model is not None:
        return model
    ref = ModelRef.parse(uri)
    if ref.version is None:
        return None  # an alias is resolved by loading; the deploy stage writes concrete versions
    return next((m for m in current.values() if m.name == ref.name and m.status.version == ref.version), None)


def load_models(
    uris: Sequence[str],
    current: dict[str, ServedModel],
    load: Callable[[str], ServedModel],
    progress: LoadProgress,
    *,
    on_loaded: Callable[[ServedModel], None] | None = None,
) -> LoadOutcome:
    """Reuse what is in memory and load the rest with a bounded pool of ``progress.threads`` threads.

    Downloads (network) and loads (mostly native code) of different models overlap. On the first
    failure the loads not yet started are cancelled, the running ones are waited for, and every
    model this call loaded is released: a plan is all or nothing.

    Args:
        uris: the plan's model URIs (normalised, unique).
        current: the models the active plan holds, by URI.
        load: loads and warms one URI (raises ``ServingError`` or anything the registry raises).
        progress: counters to update; ``progress.total`` should be ``len(uris)``.
        on_loaded: called (in a loader thread) for each model as soon as it is ready.

    Returns:
        The models by URI and which were loaded; or, after a failure, the failing URI and error.
    """
    models: dict[str, ServedModel] = {}
    pending: list[str] = []
    for uri in uris:
        found = reusable(uri, current)
        if found is not None:
            models[uri] = found
            progress._count("reused")
        else:
            pending.append(uri)
    progress.rss_before_bytes = process_rss()
    outcome = _load_pending(pending, load, progress, on_loaded)
    progress.rss_after_bytes = process_rss()
    if outcome.error is not None:
        return outcome
    models.update(outcome.models)
    return LoadOutcome(models={uri: models[uri] for uri in uris}, fresh=outcome.fresh)


def _load_pending(
    pending: list[str],
    load: Callable[[str], ServedModel],
    progress: LoadProgress,
    on_loaded: Callable[[ServedModel], None] | None,
) -> LoadOutcome:
    from concurrent.futures import ThreadPoolExecutor

    abort = threading.Event()  # set by the first failure: queued loads then return without loading
    failures: list[tuple[str, BaseException]] = []

    def one(uri: str) -> ServedModel | None:
        if abort.is_set():
            return None
        progress._count("in_flight")
        try:
            model = load(uri)
        except BaseException as exc:
            abort.set()
            failures.append((uri, exc))
            progress._count("failed")
            return None
        finally:
            progress._count("in_flight", -1)
        progress._count("loaded")
        if on_loaded is not None:
            on_loaded(model)
        return model

    workers = max(1, min(progress.threads, len(pending)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="model-load") as pool:
        results = list(pool.map(one, pending))
    loaded = {uri: model for uri, model in zip(pending, results, strict=True) if model is not None}
    if not failures:
        return LoadOutcome(models=loaded, fresh=list(loaded))
    for model in loaded.values():
        model.release()
    uri, error = failures[0]
    if not isinstance(error, Exception):
        error = RuntimeError(f"loading {uri} was interrupted: {error!r}")
    return LoadOutcome(models={}, fresh=[], failed_uri=uri, error=error)
