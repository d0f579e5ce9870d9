"""The model lifecycle of the serving runtime: ``load`` -> ``warm_up`` -> ``ready``, ``predict``.

A ``ServedModel`` is one registered MLflow model version held in memory. ``load_model``
resolves it in the registry (``registry``), reads its folder (``artifacts``), builds the
native predict function of its flavour (``flavors``: xgboost and scikit-learn without
pandas, anything else through ``mlflow.pyfunc``), lets ``engines`` choose the ONNX copy for
small batches when it is exact and faster, then warms it up on its input example.

Inputs are validated against the model signature while converting JSON records
straight to numpy (``schema``; no pandas on the fast paths); problems raise ``BadInput``
naming the record and field. Typed errors: ``ModelMissing`` (not in the registry),
``ModelLoadFailed`` (cannot be loaded or warmed up), ``BadInput``, ``InferenceFailed``.

A version with a fitted feature spec (``extra_files/feature_spec.json``, else the run
artifact its ``feature_spec`` tag names) takes raw fields: see ``features``.

The artifact is not trusted (``trust``): its files must sit inside its folder, its feature
functions and pickles load only as the operator's :class:`~modelyard.deploy.serving.trust.TrustPolicy`
allows, and a load failure is reported in one line without the server's paths or file content.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from modelyard.core.featurespec import Calendar
from modelyard.deploy.serving import engines
from modelyard.deploy.serving.artifacts import check_paths, example_records, fitted_spec, read_mlmodel, schema_from
from modelyard.deploy.serving.errors import BadInput, InferenceFailed, ModelLoadFailed, ModelMissing, ServingError
from modelyard.deploy.serving.features import NO_COUNTS, Prepared, RawFeatures
from modelyard.deploy.serving.flavors import Task, pyfunc_predictor, sklearn_predictor, xgboost_predictor
from modelyard.deploy.serving.registry import ModelRef, download, resolve_version
from modelyard.deploy.serving.schema import Feature, InputSchema
from modelyard.deploy.serving.trust import TrustPolicy, inside_model_dir

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("modelyard.serving.runtime")

ModelState = Literal["loading", "warming", "ready", "failed", "released"]
WARMUP_BATCH_SIZES = (1, 8, 64)


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
    source: str | None = None  # the registry's source of the version (its logged model, e.g. models:/m-<id>)

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

    @functools.cached_property
    def fields(self) -> frozenset[str]:
        """Every field name a request record may carry for this model (the prediction log keeps these)."""
        names = set(self.schema.names)
        if self.raw is not None:
            names.update(self.raw.fitted.raw_inputs, self.raw.fitted.requested)
        return frozenset(names)

    @property
    def name(self) -> str:
        return self.status.name

    @property
    def version(self) -> str:
        return self.status.version or "?"

    def prepare(self, records: list[Any], calendar: Calendar | None = None) -> np.ndarray:
        """Validate records and convert them to this model's input matrix (raises ``BadInput``).

        ``calendar``: the time features' region calendar when it is not the version's own (see
        :meth:`calendar_for`).
        """
        return self.prepare_counted(records, calendar).matrix

    def prepare_counted(self, records: list[Any], calendar: Calendar | None = None) -> Prepared:
        """Like :meth:`prepare`, with the unknown categories per feature (raw records only)."""
        if self.raw is None:
            return Prepared(self.schema.to_matrix(records), NO_COUNTS, NO_COUNTS)
        return self.raw.prepare(records, calendar)

    def calendar_for(self, region: str, calendar: Callable[[], Calendar]) -> Calendar | None:
        """The calendar a request to ``region`` is featurised in: None (the version's own) when it was fitted for
        ``region`` or takes no raw fields, else ``calendar()`` (the region's: a pooled model, ADR 0015).

        A plan names regions in lower case (they become Kubernetes names), the config as declared (``JKT``).
        """
        if self.raw is None or self.raw.fitted.calendar.region.lower() == region.lower():
            return None
        return calendar()

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Predict on a prepared matrix: class-1 probability (classifiers) or value (regressors).

        Raises:
            InferenceFailed: the model raised, or returned the wrong number of rows.
        """
        try:
            output = self._predict_fn(matrix)
        except Exception as exc:
            raise InferenceFailed(
                f"model {self.uri} failed on this input ({type(exc).__name__}); the server log has details",
                detail=f"{type(exc).__name__}: {exc}",
            ) from exc
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
                raise ModelLoadFailed(f"warm-up failed on a batch of {size}: {exc.detail or exc.message}") from exc
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


def load_model(
    uri: str,
    cache_root: Path | None = None,
    warmup_batch: int = 64,
    *,
    calibrate_each: bool = False,
    trust: TrustPolicy | None = None,
    source: str | None = None,
) -> ServedModel:
    """Load ``uri`` from the MLflow registry (tracking URI from ``MLFLOW_TRACKING_URI``) and warm it up.

    Args:
        uri: ``models:/name/version`` or ``models:/name@alias``.
        cache_root: where the model's folder is downloaded (None: the system's temporary folder).
        warmup_batch: the plan's largest batch, warmed up beside 1 and 8 rows.
        calibrate_each: time both engines on this model even when one of its shape was timed.
        trust: what the artifact may run (default: no feature functions, no pickles).
        source: the source the plan pinned for the version (None: any); another one is refused.

    Raises:
        ModelMissing: the registry has no such model version or alias, or the version now has
            another source than ``source`` (its registered model was deleted and registered again).
        ModelLoadFailed: the artifacts cannot be read or loaded, or warm-up fails (a subclass of
            ``trust`` says which rule refused it); the message holds no server path.
    """
    ref = ModelRef.parse(uri)
    status = ModelStatus(uri=uri, name=ref.name)
    started = time.perf_counter()
    status.version, tags, status.source = resolve_version(ref)
    if source is not None and status.source != source:
        raise ModelMissing(
            f"{uri} is another model than the plan pinned: the registry's version {status.version} comes from "
            f"{status.source}, the plan's from {source} (was the registered model deleted and registered "
            "again?); plan from the registry as it is now: `modelyard deploy`"
        )
    workdir = Path(tempfile.mkdtemp(prefix="modelyard-model-", dir=cache_root))
    try:
        path = download(ref, status.version, workdir)
    except Exception:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    try:
        model = _load_from_dir(
            status, path, workdir, tags.get("feature_spec"), calibrate_each=calibrate_each, trust=trust
        )
        status.load_seconds = round(time.perf_counter() - started, 4)
        model.warm_up(sorted({1, 8, max(1, warmup_batch)}))
    except Exception as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        public = _without_paths(exc, uri, workdir)
        if public is exc:
            raise
        raise public from exc
    return model


def _without_paths(exc: Exception, uri: str, workdir: Path) -> ServingError:
    """The load failure as a typed error whose message names neither the cache folder nor file content.

    ``/readyz`` is public: a library's own text (a parser quoting the file, a path in the cache)
    goes to the server log; the answer keeps the error's type.
    """
    if isinstance(exc, ServingError):
        message = exc.message
        for folder in {str(workdir.resolve()), str(workdir)}:
            message = message.replace(folder + "/", "").replace(folder, "<model folder>")
        exc.message, exc.args = message, (message,)
        return exc
    log.warning("model load failed", extra={"uri": uri, "error": f"{type(exc).__name__}: {exc}"})
    return ModelLoadFailed(f"{uri}: the model cannot be loaded ({type(exc).__name__}); the server log has details")


def _load_from_dir(
    status: ModelStatus,
    path: Path,
    workdir: Path,
    spec_tag: str | None = None,
    *,
    calibrate_each: bool = False,
    trust: TrustPolicy | None = None,
) -> ServedModel:
    trust = trust or TrustPolicy()
    try:
        meta = read_mlmodel(path)
    except Exception as exc:
        reason = type(exc).__name__
        raise ModelLoadFailed(f"{status.uri}: no readable MLmodel file in the artifacts ({reason})") from exc
    check_paths(status.uri, path, meta)
    fitted = fitted_spec(status.uri, path, meta, spec_tag, trust.allowed_function_modules)
    raw: RawFeatures | None = None
    if fitted is None:
        schema = schema_from(meta, status.uri)
    else:  # the signature shows the raw fields; the model reads the spec's feature columns
        schema = InputSchema([Feature(name, "double") for name in fitted.names])
        raw = RawFeatures(fitted, schema)
        status.inputs = raw.describe()
    example = example_records(meta, path, schema)
    flavors = meta.flavors

    def served(predict_fn: Callable[[np.ndarray], np.ndarray], inline: bool, keep: Path | None) -> ServedModel:
        return ServedModel(status, schema, predict_fn, inline=inline, example=example, workdir=keep, raw=raw)

    def fast(native: Callable[[np.ndarray], np.ndarray]) -> ServedModel:
        prepare = served(native, True, None).prepare
        return served(_fast_path(status, path, native, prepare, example, calibrate_each), True, workdir)

    if "xgboost" in flavors and schema.numeric:
        status.flavor = "xgboost"
        model_file = inside_model_dir(status.uri, path, flavors["xgboost"].get("data"), "xgboost 'data'")
        predict_fn, status.task = xgboost_predictor(model_file)
        return fast(predict_fn)
    if "sklearn" in flavors and schema.numeric:
        status.flavor = "sklearn"
        allow_pickle = trust.allow_pickle
        predict_fn, status.task = sklearn_predictor(status.uri, path, flavors["sklearn"], allow_pickle=allow_pickle)
        return fast(predict_fn)
    status.flavor = "pyfunc"
    status.engine_detail = {"engine": "native", "reason": "pyfunc flavor or non-numeric inputs: no ONNX fast path"}
    return served(pyfunc_predictor(path, schema), False, workdir)


def _fast_path(
    status: ModelStatus,
    path: Path,
    native: Callable[[np.ndarray], np.ndarray],
    prepare: Callable[[list[Any]], np.ndarray],
    example: list[dict[str, Any]],
    calibrate_each: bool,
) -> Callable[[np.ndarray], np.ndarray]:
    """ONNX for small batches when its copy is exact and faster, else ``native`` (the reason goes to /readyz).

    ``prepare`` turns the input example into the matrix (raw fields featurised first).
    """
    try:
        matrix = prepare(example)
    except BadInput:  # warm-up reports it
        return native
    predict_fn, report = engines.choose_engine(path, native, matrix, calibrate_each=calibrate_each)
    status.engine, status.engine_detail = report.engine, report.to_dict()
    log.info("engine chosen", extra={"uri": status.uri, "engine": report.engine, "reason": report.reason})
    return predict_fn
