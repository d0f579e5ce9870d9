"""Train one model per (family, region) from its latest valid snapshot and register it in MLflow.

:func:`fit_pair` is the pure part (split, fit, score; no MLflow), :func:`train_pair` adds
tracking, registry and idempotency, :func:`train_all` runs every selected pair and
:func:`render_results` shows the outcome as a table.
"""

from __future__ import annotations

import functools
import json
import logging
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from modelyard import __version__
from modelyard.core.contracts.columns import RAW_PREFIX, TIME_COLUMN
from modelyard.core.errors import ModelyardError
from modelyard.core.featurespec import FittedSpec
from modelyard.core.storage import read_text, uri_of
from modelyard.core.tracking import require_reachable, resolve_tracking_uri, run_url
from modelyard.pipeline.snapshots import SnapshotMeta, SnapshotNotFoundError, latest_snapshot, load_frame
from modelyard.training import metrics as metrics_mod
from modelyard.training import models, onnx_export, plots, registry
from modelyard.training.split import SplitError, TimeSplit, time_split

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from rich.table import Table

    from modelyard.core.config import Config, Family

log = logging.getLogger(__name__)

Status = Literal["registered", "unchanged", "skipped", "failed"]
REPO_DIR = Path(__file__).resolve().parents[1]  # the checkout; site-packages/modelyard when installed
# The fitted feature spec of a version (pipeline.featurespec.FittedSpec JSON), a run artifact; the
# version's tag ``feature_spec`` names it. A server computes the model's features from raw fields with it.
FEATURE_SPEC_ARTIFACT = "feature_spec.json"
# The holdout metrics shown in tables and written as version tags, per task.
KEY_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("holdout_auc", "holdout_logloss", "holdout_brier", "baseline_holdout_auc"),
    "regression": ("holdout_mae", "holdout_rmse", "holdout_mape", "baseline_holdout_mae"),
}


# Types of the scikit-learn models we train that skops does not trust by default (tree node storage).
SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]


class TrainingError(ModelyardError, RuntimeError):
    """Training of a (family, region) cannot run; the message names the pair and what to do."""


EXPECTED_ERRORS = (SnapshotNotFoundError, TrainingError, models.ParamError, models.AlgorithmError)


class TrainingSkipped(Exception):
    """The data cannot make a model (too few rows, one class, empty window); ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TrainResult:
    """The outcome of training one (family, region)."""

    family: str
    region: str
    status: Status
    model_name: str
    version: str | None = None
    run_id: str | None = None
    run_url: str | None = None
    data_digest: str | None = None
    input_key: str | None = None
    reason: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def asset_extra(self) -> dict[str, str]:
        """The ``extra`` of the challenger Asset event (see ``pipeline.assets.challenger_uri``)."""
        return {
            "family": self.family,
            "region": self.region,
            "model_name": self.model_name,
            "version": self.version or "",
            "run_id": self.run_id or "",
        }


@dataclass(frozen=True)
class TrainingPlan:
    """Everything decided before touching data: what trains, with which settings, under which key."""

    family: Family
    region: str
    algorithm: str
    params: dict[str, Any]
    baseline: str | None
    seed: int
    meta: SnapshotMeta
    settings_hash: str
    input_key: str
    model_name: str

    @property
    def run_name(self) -> str:
        return f"{self.family.name}/{self.region}/{self.meta.digest[:8]}"


@dataclass(frozen=True)
class FitOutcome:
    """A fitted model, its baseline, the split and every metric (no MLflow involved)."""

    model: Any
    baseline_model: Any | None
    split: TimeSplit
    holdout_predictions: np.ndarray
    metrics: dict[str, float]
    importance: dict[str, float]
    best_iteration: int | None
    fit_seconds: float = 0.0  # wall time of split, fits and scoring: what a pair costs beyond the bookkeeping


def experiment_name(config: Config, family: str) -> str:
    """The MLflow experiment of a family (one per family; runs are filtered by region tag)."""
    return f"{config.project}/{family}"


@functools.cache
def git_commit() -> str:
    """The commit of the code that trains (``unknown`` outside a git checkout).

    An installed wheel has no ``.git`` beside it; asking git there would report whatever
    repository the environment happens to sit in, so it is not asked (``modelyard_version`` says
    which release trained).
    """
    if not (REPO_DIR / ".git").exists():
        return "unknown"
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_DIR, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def plan_training(
    config: Config, family: str, region: str, params_override: Mapping[str, Any] | None = None
) -> TrainingPlan:
    """Resolve algorithm, validated params and the idempotency key of (family, region).

    Raises:
        ConfigError: unknown family or region.
        SnapshotNotFoundError: no valid snapshot; the message names the pair.
        TrainingError: the latest snapshot did not pass validation.
        AlgorithmError, ParamError: the algorithm or a hyperparameter is invalid (names the key).
    """
    spec = config.family(family)
    config.region(region)
    algorithm, params = resolve_params(config, family, region, params_override)
    meta = latest_snapshot(config.storage.features_dir, family, region)
    if not meta.validation.success:
        raise TrainingError(
            f"{family}/{region}: snapshot {meta.digest} did not pass validation "
            f"({meta.validation.failed} failed checks); rebuild it with `modelyard data build`"
        )
    settings_hash = registry.training_settings_hash(config, family, region)
    return TrainingPlan(
        family=spec,
        region=region,
        algorithm=algorithm,
        params=params,
        baseline=spec.baseline,
        seed=config.seed,
        meta=meta,
        settings_hash=settings_hash,
        input_key=registry.input_key(meta.digest, settings_hash, config.seed, algorithm, params),
        model_name=config.mlflow.model_name(family, region),
    )


def resolve_params(
    config: Config, family: str, region: str, params_override: Mapping[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """The algorithm of (family, region) and its validated hyperparameters (family, region, override).

    Raises:
        AlgorithmError: the algorithm or baseline is unknown or cannot do the family's task.
        ParamError: a hyperparameter is unknown or invalid; the message names the key and the pair.
    """
    spec = config.family(family)
    algorithm = spec.algorithm_for(region)
    models.get_algorithm(algorithm, spec.task)
    if spec.baseline:
        models.get_algorithm(spec.baseline, spec.task)
    try:
        params = models.validate_params(algorithm, {**spec.params_for(region), **(params_override or {})})
        models.check_feature_params(algorithm, params, spec.feature_names)
    except models.ParamError as exc:
        raise models.ParamError(f"{family}/{region}: {exc}", key=exc.key) from exc
    return algorithm, params


def validate_override(config: Config, pairs: Iterable[tuple[str, str]], params_override: Mapping[str, Any]) -> None:
    """Check a hyperparameter override against the algorithm of every pair, before anything trains.

    Raises:
        ParamError: the first invalid key, naming the pair and the key.
    """
    for family, region in pairs:
        resolve_params(config, family, region, params_override)


def check_trainable(config: Config, family: Family, frame: pd.DataFrame) -> None:
    """Raise :class:`TrainingSkipped` when the frame cannot make a model.

    Raises:
        TrainingSkipped: fewer rows than ``data.min_rows``, or a single-class label.
        TrainingError: a configured feature or the target is missing from the snapshot.
    """
    missing = [c for c in [*family.feature_names, family.target] if c not in frame.columns]
    if missing:
        raise TrainingError(
            f"family '{family.name}': columns {missing} are not in the snapshot; "
            "rebuild it after changing the family's features"
        )
    if len(frame) < config.data.min_rows:
        raise TrainingSkipped(f"{len(frame)} rows, fewer than data.min_rows={config.data.min_rows}")
    if family.task == "classification" and frame[family.target].nunique() < 2:
        raise TrainingSkipped(f"target '{family.target}' has a single class ({frame[family.target].iloc[0]})")


def fit_pair(
    config: Config,
    family: Family,
    frame: pd.DataFrame,
    algorithm: str,
    params: Mapping[str, Any],
    baseline: str | None = None,
) -> FitOutcome:
    """Split ``frame`` by time, fit the model (and baseline) and score validation and holdout.

    Deterministic: the same frame, settings and ``config.seed`` give the same model,
    predictions and metrics.

    Raises:
        TrainingSkipped: the frame is too small, has one class, or a time window is empty.
    """
    import time

    started = time.perf_counter()
    check_trainable(config, family, frame)
    settings = config.training
    try:
        split = time_split(frame, settings.holdout_days, settings.validation_days)
    except SplitError as exc:
        raise TrainingSkipped(str(exc)) from exc
    if family.task == "classification" and split.train[family.target].nunique() < 2:
        raise TrainingSkipped(f"target '{family.target}' has a single class in the training window")
    model = _fit(config, family, algorithm, params, split)
    scores = _score(config, family, model, split)
    baseline_model = None
    if baseline:
        baseline_model = _fit(config, family, baseline, {}, split)
        scores.update(_score(config, family, baseline_model, split, prefix="baseline_", sliced=False))
    return FitOutcome(
        model=model,
        baseline_model=baseline_model,
        split=split,
        holdout_predictions=models.predict(
            model, family.task, models.feature_frame(split.holdout, family.feature_names)
        ),
        metrics=scores,
        importance=models.feature_importance(model, family.feature_names),
        best_iteration=models.best_iteration(model),
        fit_seconds=time.perf_counter() - started,
    )


def _fit(config: Config, family: Family, algorithm: str, params: Mapping[str, Any], split: TimeSplit) -> Any:
    model = models.build_model(algorithm, family.task, params, config.seed, config.training.early_stopping_rounds)
    x_train = models.feature_frame(split.train, family.feature_names)
    x_valid = models.feature_frame(split.valid, family.feature_names)
    target = family.target
    return models.fit(algorithm, model, x_train, split.train[target], x_valid, split.valid[target])


def _score(
    config: Config, family: Family, model: Any, split: TimeSplit, prefix: str = "", sliced: bool = True
) -> dict[str, float]:
    scores: dict[str, float] = {}
    for name, part in (("valid", split.valid), ("holdout", split.holdout)):
        predicted = models.predict(model, family.task, models.feature_frame(part, family.feature_names))
        scores.update(
            metrics_mod.evaluate(
                family.task,
                part,
                predicted,
                target=family.target,
                split=f"{prefix}{name}",
                threshold=config.training.operating_threshold,
                slices=family.slices if sliced else (),
            )
        )
    return scores


def train_pair(
    config: Config,
    family: str,
    region: str,
    *,
    tracking_uri: str | None = None,
    force: bool = False,
    params_override: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> TrainResult:
    """Train (family, region) on its latest valid snapshot, log everything to MLflow, register a challenger.

    Inputs already trained (same ``input_key`` tag on a version) are not trained again
    unless ``force``; the existing version is returned with status ``unchanged``.

    Args:
        config: the modelyard config.
        family: a configured family.
        region: a configured region.
        tracking_uri: the MLflow server; default: :func:`resolve_tracking_uri`.
        force: train and register even if a version with the same inputs exists.
        params_override: hyperparameters on top of the family's and region's.
        tags: extra run tags, e.g. why it retrains (``retrain_reason: drift``, see training/monitoring.py).

    Returns:
        ``registered`` with the new version, ``unchanged`` with the existing one, or
        ``skipped`` with the reason (too few rows, single class, empty window).

    Raises:
        SnapshotNotFoundError, TrainingError, ParamError, AlgorithmError: see :func:`plan_training`.
        Exception: anything failing during training; the MLflow run is then marked FAILED
            and no version is registered.
    """
    import mlflow

    plan = plan_training(config, family, region, params_override)
    uri = tracking_uri or resolve_tracking_uri(config)
    # Fluent calls (start_run, log_model) use the global URIs; set them only when they change.
    if (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) != (uri, uri):
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
    client = tracking_client(uri)
    if not force and (existing := registry.find_version(client, plan.model_name, plan.input_key)):
        return _unchanged(client, plan, existing, uri)
    frame = load_frame(config.storage.features_dir, plan.meta)
    try:
        check_trainable(config, plan.family, frame)
    except TrainingSkipped as skip:
        return _skipped(plan, skip.reason)
    experiment_id = _experiment_id(client, uri, experiment_name(config, family))
    run_tags = {**_run_tags(config, plan), **(tags or {})}
    with mlflow.start_run(experiment_id=experiment_id, run_name=plan.run_name, tags=run_tags) as run:
        try:
            outcome = fit_pair(config, plan.family, frame, plan.algorithm, plan.params, plan.baseline)
        except TrainingSkipped as skip:
            mlflow.set_tag("skip_reason", skip.reason)
            return _skipped(plan, skip.reason, run.info.run_id, run_url(uri, experiment_id, run.info.run_id))
        model_uri = _log_run(config, plan, frame, outcome)
        version = _register(client, plan, run.info.run_id, model_uri, outcome, config, force)
    log.info("%s: registered %s version %s (run %s)", plan.run_name, plan.model_name, version.version, run.info.run_id)
    return TrainResult(
        family=family,
        region=region,
        status="registered",
        model_name=plan.model_name,
        version=str(version.version),
        run_id=run.info.run_id,
        run_url=run_url(uri, experiment_id, run.info.run_id),
        data_digest=plan.meta.digest,
        input_key=plan.input_key,
        metrics=outcome.metrics,
    )


@functools.cache
def tracking_client(uri: str) -> MlflowClient:
    """One MLflow client per tracking URI and process (a pool worker reuses it across pairs and configs)."""
    import mlflow

    return mlflow.MlflowClient(uri, uri)


# (tracking URI, experiment name) -> experiment id, per process: experiments are never renamed by us.
_EXPERIMENT_IDS: dict[tuple[str, str], str] = {}


def _experiment_id(client: MlflowClient, uri: str, name: str) -> str:
    if (uri, name) not in _EXPERIMENT_IDS:
        _EXPERIMENT_IDS[(uri, name)] = _find_or_create_experiment(client, name)
    return _EXPERIMENT_IDS[(uri, name)]


def _find_or_create_experiment(client: MlflowClient, name: str) -> str:
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        # The MLflow 3 UI opens GenAI experiments on an overview page; this kind opens on the runs.
        return str(client.create_experiment(name, tags={"mlflow.experimentKind": "custom_model_development"}))
    except MlflowException:  # created by a concurrent training meanwhile
        again = client.get_experiment_by_name(name)
        if again is None:
            raise
        return str(again.experiment_id)


def _run_tags(config: Config, plan: TrainingPlan) -> dict[str, str]:
    return {
        "family": plan.family.name,
        "region": plan.region,
        "task": plan.family.task,
        "data_digest": plan.meta.digest,
        "git_commit": git_commit(),
        "modelyard_version": __version__,
        "config_hash": config.digest(),
        "algorithm": plan.algorithm,
        "input_key": plan.input_key,
        "mlflow.source.git.commit": git_commit(),
    }


def _log_run(config: Config, plan: TrainingPlan, frame: pd.DataFrame, outcome: FitOutcome) -> str:
    """Params, dataset, artifacts, model, then metrics: a handful of calls, whatever the number of metrics.

    Params go first because ``log_model`` copies the run's params onto the logged model. Metrics go
    after it, in one batch linked to the logged model (so the model's page shows them); logged
    before, ``log_model`` would re-read each metric's history, one request per metric.
    """
    import mlflow

    run_id = _active_run_id()
    client = tracking_client(mlflow.get_tracking_uri())
    client.log_batch(run_id, params=_params(config, plan, outcome))
    _log_dataset(config, plan, frame)
    with tempfile.TemporaryDirectory(prefix="modelyard-run-") as folder:
        _write_run_artifacts(config, plan, outcome, Path(folder))
        client.log_artifacts(run_id, folder)  # one upload of the whole folder
    model_uri, model_id = _log_model(plan, outcome)
    client.log_batch(run_id, metrics=_metrics(outcome, run_id, model_id))
    return model_uri


def _active_run_id() -> str:
    import mlflow

    run = mlflow.active_run()
    if run is None:
        raise TrainingError("no active MLflow run to log into (train_pair starts one)")
    return str(run.info.run_id)


def _params(config: Config, plan: TrainingPlan, outcome: FitOutcome) -> list[Any]:
    from mlflow.entities import Param

    values = {
        **plan.params,
        **outcome.split.params(),
        "algorithm": plan.algorithm,
        "seed": plan.seed,
        "baseline_algorithm": plan.baseline or "none",
        "target": plan.family.target,
        "features": ",".join(plan.family.feature_names),
        "operating_threshold": config.training.operating_threshold,
        "early_stopping_rounds": config.training.early_stopping_rounds,
        "settings_hash": plan.settings_hash,
    }
    return [Param(key, str(value)) for key, value in values.items()]


def _metrics(outcome: FitOutcome, run_id: str, model_id: str | None) -> list[Any]:
    import time

    from mlflow.entities import Metric

    values = dict(outcome.metrics)
    if outcome.best_iteration is not None:
        values["best_iteration"] = outcome.best_iteration
    values["fit_seconds"] = round(outcome.fit_seconds, 4)  # the scale bench's "overhead beyond the fit"
    now = int(time.time() * 1000)
    return [Metric(key, float(value), now, 0, model_id=model_id, run_id=run_id) for key, value in values.items()]


def _log_dataset(config: Config, plan: TrainingPlan, frame: pd.DataFrame) -> None:
    from mlflow.data.pandas_dataset import from_pandas

    features_dir = config.storage.features_dir
    source = uri_of(plan.meta.path(features_dir))
    dataset = from_pandas(
        frame,
        source=source,
        targets=plan.family.target,
        name=f"{plan.family.name}/{plan.region}",
        digest=plan.meta.digest,
    )
    _log_input_once(dataset)


def _log_input_once(dataset: Any) -> None:
    """``mlflow.log_input``, retried when a concurrent run inserted the same dataset first.

    MLflow's SQL store checks for the dataset, then inserts it: on PostgreSQL two runs of one
    snapshot at once can both miss it and one insert fails on the unique key (SQLite serialises
    writers, so it never shows there). The retry finds the row the other run made.
    """
    import mlflow
    import tenacity
    from mlflow.exceptions import MlflowException

    def lost_the_race(exc: BaseException) -> bool:
        return isinstance(exc, MlflowException) and "duplicate key" in str(exc).lower()

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(lost_the_race),
        stop=tenacity.stop_after_attempt(4),
        wait=tenacity.wait_random(0.1, 0.5),
        reraise=True,
    )
    retrying(mlflow.log_input, dataset, context="training")


def _write_run_artifacts(config: Config, plan: TrainingPlan, outcome: FitOutcome, folder: Path) -> None:
    """The run's files, laid out as the MLflow UI shows them: data/, plots/ and the feature spec."""
    data = folder / "data"
    data.mkdir()
    (data / "snapshot.json").write_text(json.dumps(plan.meta.model_dump(mode="json"), indent=2))
    report = plan.meta.report_path(config.storage.features_dir)
    html = read_text(report) if report is not None else None
    if report is not None and html is not None:  # the report may live on an object store: copy its text
        (data / report.name).write_text(html)
    label = f"{plan.family.name}/{plan.region} {plan.algorithm}"
    y = outcome.split.holdout[plan.family.target].to_numpy()
    plots.write_holdout_plots(
        plan.family.task, y, outcome.holdout_predictions, outcome.importance, label, folder / "plots"
    )
    if plan.meta.feature_spec is not None:
        (folder / FEATURE_SPEC_ARTIFACT).write_text(json.dumps(plan.meta.feature_spec, indent=2))


def _log_model(plan: TrainingPlan, outcome: FitOutcome) -> tuple[str, str | None]:
    import mlflow

    example, signature = _model_io(plan, outcome)
    flavor = models.get_algorithm(plan.algorithm).flavor
    log_model = mlflow.xgboost.log_model if flavor == "xgboost" else mlflow.sklearn.log_model
    # Our own forests: without this, MLflow's skops format refuses to load them back (in serving too).
    trust = {"skops_trusted_types": SKOPS_TRUSTED_TYPES} if flavor == "sklearn" else {}
    holdout = models.feature_frame(outcome.split.holdout, plan.family.features)
    with tempfile.TemporaryDirectory(prefix="modelyard-onnx-") as folder:
        # The ONNX copy and a holdout sample for the serving fast path, checked by the server (ADR 0002).
        extras = onnx_export.write_serving_extras(outcome.model, flavor, holdout, Path(folder))
        extras += _spec_extra(plan, Path(folder))
        info = log_model(
            outcome.model,
            name="model",
            signature=signature,
            input_example=example,
            extra_files=extras,
            # Declared, not inferred: inference imports the model in a child process, seconds a pair.
            pip_requirements=registry.pip_requirements(flavor),
            **trust,
        )
    return str(info.model_uri), info.model_id


def _spec_extra(plan: TrainingPlan, folder: Path) -> list[str]:
    """The fitted spec inside the model's artifacts: the server's one ``models:/`` download has it."""
    if plan.meta.feature_spec is None:
        return []
    path = folder / FEATURE_SPEC_ARTIFACT
    path.write_text(json.dumps(plan.meta.feature_spec, indent=2))
    return [str(path)]


def _model_io(plan: TrainingPlan, outcome: FitOutcome) -> tuple[pd.DataFrame, Any]:
    """The input example and signature: the raw fields a client sends when the snapshot has a feature spec.

    Without one (a snapshot built elsewhere) they are the model's feature columns.
    """
    from mlflow.models import infer_signature

    holdout = outcome.split.holdout.head(5)
    features = models.feature_frame(holdout, plan.family.feature_names)
    predictions = outcome.model.predict(features)
    if plan.meta.feature_spec is None:
        return features, infer_signature(features, predictions)
    example = raw_example(FittedSpec.from_dict(plan.meta.feature_spec), holdout)
    return example, infer_signature(example, predictions)


def raw_example(fitted: FittedSpec, snapshot_rows: pd.DataFrame) -> pd.DataFrame:
    """Snapshot rows as a client sends them: the time as ISO-8601 in the region's offset, raw columns, aggregates."""
    import pandas as pd

    local = pd.to_datetime(snapshot_rows[TIME_COLUMN], utc=True).dt.tz_convert(fitted.calendar.timezone)
    columns: dict[str, Any] = {}
    for name in fitted.raw_inputs:
        if name == fitted.spec.time_column:
            columns[name] = [moment.isoformat() for moment in local]
        else:
            columns[name] = snapshot_rows[f"{RAW_PREFIX}{name}"].to_numpy()
    for name in fitted.requested:
        columns[name] = snapshot_rows[name].to_numpy()
    return pd.DataFrame(columns).reset_index(drop=True)


def _register(
    client: MlflowClient,
    plan: TrainingPlan,
    run_id: str,
    model_uri: str,
    outcome: FitOutcome,
    config: Config,
    force: bool,
) -> ModelVersion:
    import mlflow

    # A concurrent retry of the same inputs may have registered meanwhile (forced runs register anyway).
    existing = None if force else registry.find_version(client, plan.model_name, plan.input_key)
    if existing is not None:
        return existing
    tags = {
        "family": plan.family.name,
        "region": plan.region,
        "data_digest": plan.meta.digest,
        "run_id": run_id,
        "config_hash": config.digest(),
        "input_key": plan.input_key,
        "algorithm": plan.algorithm,
        "task": plan.family.task,
        "flavor": models.get_algorithm(plan.algorithm).flavor,
        **({"feature_spec": FEATURE_SPEC_ARTIFACT} if plan.meta.feature_spec is not None else {}),
        **registry.metric_tags(outcome.metrics, KEY_METRICS[plan.family.task]),
    }
    version = registry.register(model_uri, plan.model_name, tags)
    registry.set_challenger(client, plan.model_name, str(version.version))
    mlflow.set_tag("registered_version", f"{plan.model_name}/{version.version}")
    return version


def _unchanged(client: MlflowClient, plan: TrainingPlan, version: ModelVersion, uri: str) -> TrainResult:
    registry.repair_alias(client, version)
    run = client.get_run(version.run_id) if version.run_id else None
    return TrainResult(
        family=plan.family.name,
        region=plan.region,
        status="unchanged",
        model_name=plan.model_name,
        version=str(version.version),
        run_id=version.run_id,
        run_url=run_url(uri, run.info.experiment_id, run.info.run_id) if run else None,
        data_digest=plan.meta.digest,
        input_key=plan.input_key,
        reason="already trained on these inputs (use --force to retrain)",
        metrics=dict(run.data.metrics) if run else {},
    )


def _skipped(plan: TrainingPlan, reason: str, run_id: str | None = None, url: str | None = None) -> TrainResult:
    log.warning("%s/%s skipped: %s", plan.family.name, plan.region, reason)
    return TrainResult(
        family=plan.family.name,
        region=plan.region,
        status="skipped",
        model_name=plan.model_name,
        run_id=run_id,
        run_url=url,
        data_digest=plan.meta.digest,
        input_key=plan.input_key,
        reason=reason,
    )


def train_all(
    config: Config,
    families: list[str] | None = None,
    regions: list[str] | None = None,
    force: bool = False,
    *,
    tracking_uri: str | None = None,
    params_override: Mapping[str, Any] | None = None,
) -> list[TrainResult]:
    """Train every selected (family, region); one failing pair is recorded as ``failed``, the rest still run.

    Raises:
        ConfigError: an unknown family or region was named.
        TrackingServerUnreachableError: the MLflow server does not answer (checked once, up front).
    """
    pairs = config.pairs(families, regions)
    tracking_uri = require_reachable(tracking_uri or resolve_tracking_uri(config))
    results = []
    for family, region in pairs:
        try:
            results.append(
                train_pair(
                    config, family, region, tracking_uri=tracking_uri, force=force, params_override=params_override
                )
            )
        except Exception as exc:
            if isinstance(exc, EXPECTED_ERRORS):
                log.error("%s/%s: training failed: %s", family, region, exc)
            else:
                log.exception("%s/%s: training failed", family, region)
            results.append(
                TrainResult(
                    family=family,
                    region=region,
                    status="failed",
                    model_name=config.mlflow.model_name(family, region),
                    reason=f"{type(exc).__name__}: {exc}",
                )
            )
    return results


def render_results(results: list[TrainResult]) -> Table:
    """A rich table: family, region, status, version or reason, key holdout metrics, run URL."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Training", show_lines=False)
    for column in ("family", "region", "status", "version / reason", "holdout metrics", "MLflow run"):
        table.add_column(column, overflow="fold")
    for result in results:
        table.add_row(
            result.family,
            result.region,
            _styled_status(result.status),
            f"{result.model_name} v{result.version}" if result.version else escape(result.reason or ""),
            _metric_summary(result),
            result.run_url or "",
        )
    return table


def _styled_status(status: Status) -> str:
    colour = {"registered": "green", "unchanged": "cyan", "skipped": "yellow", "failed": "red"}[status]
    return f"[{colour}]{status}[/{colour}]"


def _metric_summary(result: TrainResult) -> str:
    names = KEY_METRICS["classification"] + KEY_METRICS["regression"]
    shown = [name for name in names if name in result.metrics]
    return " ".join(f"{name.replace('holdout_', '')}={result.metrics[name]:.3f}" for name in shown)
