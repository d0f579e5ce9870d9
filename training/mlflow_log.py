"""What a training run writes to MLflow: the run (tags, params, dataset, artifacts, metrics), the model, its version.

:func:`log_run` fills the active run in a handful of calls; :func:`register_challenger`
registers the logged model as a version (tagged with its inputs and metric summary) and
points the ``challenger`` alias at it.
"""

from __future__ import annotations

import functools
import json
import logging
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard import __version__
from modelyard.core.contracts.columns import RAW_PREFIX, TIME_COLUMN
from modelyard.core.featurespec import FittedSpec
from modelyard.core.storage import read_text, uri_of
from modelyard.training import models, onnx_export, plots, pyfunc_model, registry
from modelyard.training.job import TrainingError

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

    from modelyard.core.config import Config
    from modelyard.training.fit import FitOutcome
    from modelyard.training.job import TrainingJob

REPO_DIR = Path(__file__).resolve().parents[1]  # the checkout; site-packages/modelyard when installed
# The fitted feature spec of a version (pipeline.featurespec.FittedSpec JSON), a run artifact; the
# version's tag ``feature_spec`` names it. A server computes the model's features from raw fields with it.
FEATURE_SPEC_ARTIFACT = "feature_spec.json"

# Types of the scikit-learn models we train that skops does not trust by default (tree node storage).
SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]

log = logging.getLogger(__name__)


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


@functools.cache
def tracking_client(uri: str) -> MlflowClient:
    """One MLflow client per tracking URI and process (a pool worker reuses it across pairs and configs)."""
    import mlflow

    settle_request_headers()
    return mlflow.MlflowClient(uri, uri)


@functools.cache
def settle_request_headers() -> None:
    """Ask MLflow's Databricks request-header provider once per process whether it runs on Databricks.

    MLflow resolves the headers of every request by asking each registered provider ``in_context()``;
    the Databricks one tries to import ``dbruntime``, ``pyspark`` and IPython each time, ~0.4 ms of CPU a
    request and a quarter of a request's client CPU (issue 26: ~45 requests a pair). A process does not
    move onto Databricks, so its first answer stands; the provider still adds its headers when it is
    there. MLflow has no setting to leave a provider out, so the answer is kept on the provider object
    (an MLflow without that registry or provider is left as it is).
    """
    try:
        from mlflow.tracking.request_header import registry
        from mlflow.tracking.request_header.databricks_request_header_provider import DatabricksRequestHeaderProvider
    except ImportError:
        return
    for provider in getattr(registry, "_request_header_provider_registry", ()):
        if type(provider) is DatabricksRequestHeaderProvider:
            provider.in_context = functools.partial(bool, provider.in_context())  # type: ignore[method-assign]


@functools.cache
def skip_pinned_requirement_check() -> None:
    """Spare MLflow the check of model requirements this process pinned from its own packages.

    Saving a model, and loading it to validate its input example, MLflow checks that the environment
    satisfies the model's requirements, reading each package's installed version again: twice a pair,
    ~7 ms each, ~0.4 s the first time in a process (issue 26). The requirements training declares
    (:func:`registry.pip_requirements`) are those installed versions, read once per process: the check
    cannot fail. Any other requirement list is still checked. MLflow has no setting for it, so the
    function is wrapped where MLflow's save and load call it (a module without it is left as it is).
    """
    import mlflow.pyfunc
    from mlflow.utils import environment

    for module in (environment, mlflow.pyfunc):
        check = getattr(module, "warn_dependency_requirement_mismatches", None)
        if check is not None:
            module.warn_dependency_requirement_mismatches = _unless_pinned_here(check)  # type: ignore[attr-defined]


def _unless_pinned_here(check: Any) -> Any:
    def checked(model_requirements: list[str]) -> None:
        if not registry.pinned_here(list(model_requirements)):
            check(model_requirements)

    return checked


# (tracking URI, experiment name) -> experiment id, per process: experiments are never renamed by us.
_EXPERIMENT_IDS: dict[tuple[str, str], str] = {}


def experiment_id(client: MlflowClient, uri: str, name: str) -> str:
    """The id of experiment ``name`` on ``uri``, created when missing (looked up once per process).

    Raises:
        ExperimentDeletedError: the experiment is in MLflow's trash (the message says how to restore it).
    """
    from modelyard.core.tracking import find_or_create_experiment

    if (uri, name) not in _EXPERIMENT_IDS:
        _EXPERIMENT_IDS[(uri, name)] = find_or_create_experiment(client, name)
    return _EXPERIMENT_IDS[(uri, name)]


def run_tags(config: Config, job: TrainingJob) -> dict[str, str]:
    """The tags a training run starts with: the pair, its snapshot, code and config versions, the input key."""
    return {
        "family": job.family.name,
        "region": job.region,
        "task": job.family.task,
        "data_digest": job.meta.digest,
        "git_commit": git_commit(),
        "modelyard_version": __version__,
        "config_hash": config.config_hash(),
        "algorithm": job.algorithm,
        "input_key": job.input_key,
        "mlflow.source.git.commit": git_commit(),
    }


def fail_stale_runs(client: MlflowClient, experiment: str, job: TrainingJob, started_before_ms: int) -> list[str]:
    """Mark FAILED the pair's runs that still say RUNNING but started before ``started_before_ms``.

    A process killed mid-training (an MLflow outage, a lost worker) leaves its run RUNNING for ever;
    the next run of the pair closes it, so the experiment never shows a half-done run as live.
    The experiment is searched once per process (:func:`_left_running`), not once per pair: a search
    per pair costs more as the experiment grows (issue 26); each of the pair's candidates is read
    again before it is marked, so a run that finished meanwhile is left alone.

    Returns:
        The ids of the runs marked failed.
    """
    candidates = _left_running(client, experiment, started_before_ms)
    mine = [
        r
        for r in candidates
        if r.data.tags.get("family") == job.family.name and r.data.tags.get("region") == job.region
    ]
    stale = []
    for run in mine:
        candidates.remove(run)
        if client.get_run(run.info.run_id).info.status == "RUNNING":
            stale.append(run.info.run_id)
    for run_id in stale:
        client.set_tag(run_id, "failure", "left RUNNING by a process that stopped; marked failed by the next run")
        client.set_terminated(run_id, status="FAILED")
    if stale:
        log.warning("%s: marked %d run(s) left RUNNING as FAILED: %s", job.run_name, len(stale), ", ".join(stale))
    return stale


# (tracking URI, experiment id, started before ms) -> the runs that were RUNNING when first asked, per process.
_LEFT_RUNNING: dict[tuple[str, str, int], list[Run]] = {}


def _left_running(client: MlflowClient, experiment: str, started_before_ms: int) -> list[Run]:
    """The experiment's runs started before ``started_before_ms`` and RUNNING when this process first asked.

    A run started before then cannot become RUNNING again, so one search per process finds every one.
    """
    key = (client.tracking_uri, experiment, started_before_ms)
    if key not in _LEFT_RUNNING:
        query = f"attributes.status = 'RUNNING' and attributes.start_time < {started_before_ms}"
        found: list[Run] = []
        token = None
        while True:
            page = client.search_runs([experiment], query, max_results=1000, page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                break
        _LEFT_RUNNING[key] = found
    return _LEFT_RUNNING[key]


def log_run(config: Config, job: TrainingJob, frame: pd.DataFrame, outcome: FitOutcome) -> str:
    """Params, dataset, artifacts, model, then metrics: a handful of calls, whatever the number of metrics.

    Params go first because ``log_model`` copies the run's params onto the logged model. Metrics go
    after it, in one batch linked to the logged model (so the model's page shows them); logged
    before, ``log_model`` would re-read each metric's history, one request per metric.
    """
    import mlflow
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    run = _active_run()
    run_id = str(run.info.run_id)
    client = tracking_client(mlflow.get_tracking_uri())
    client.log_batch(run_id, params=_params(config, job, outcome))
    _log_dataset(config, job, frame)
    with tempfile.TemporaryDirectory(prefix="modelyard-run-") as folder:
        _write_run_artifacts(config, job, outcome, Path(folder))
        # Into the run's artifact store as the active run names it (the client would read the run again for it).
        get_artifact_repository(run.info.artifact_uri, tracking_uri=client.tracking_uri).log_artifacts(folder)
    model_uri, model_id = _log_model(job, outcome)
    client.log_batch(run_id, metrics=_metrics(outcome, run_id, model_id))
    return model_uri


def _active_run() -> Run:
    import mlflow

    run = mlflow.active_run()
    if run is None:
        raise TrainingError("no active MLflow run to log into (train_pair starts one)")
    return run


def _params(config: Config, job: TrainingJob, outcome: FitOutcome) -> list[Any]:
    from mlflow.entities import Param

    values = {
        **job.params,
        **outcome.split.params(),
        "algorithm": job.algorithm,
        "seed": job.seed,
        "baseline_algorithm": job.baseline or "none",
        "target": job.family.target,
        "features": ",".join(job.family.feature_names),
        "operating_threshold": config.training.operating_threshold,
        "early_stopping_rounds": config.training.early_stopping_rounds,
        "settings_hash": job.settings_hash,
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


# What MLflow warns about on every logged dataset, though nothing is wrong: it registers its local artifact
# source twice (a ``file://`` source then "can be interpreted in multiple ways"), and it infers the dataset
# record's schema with the hint meant for a model's signature (this one's is built: raw_signature).
_DATASET_NOISE = (
    r"The specified dataset source can be interpreted in multiple ways",
    r"Hint: Inferred schema contains integer column",
)


def _log_dataset(config: Config, job: TrainingJob, frame: pd.DataFrame) -> None:
    import warnings

    from mlflow.data.pandas_dataset import from_pandas

    features_dir = config.storage.features_dir
    source = uri_of(job.meta.path(features_dir))
    with warnings.catch_warnings():
        for message in _DATASET_NOISE:
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        dataset = from_pandas(
            frame,
            source=source,
            targets=job.family.target,
            name=f"{job.family.name}/{job.region}",
            digest=job.meta.digest,
        )
        _log_input_once(dataset)


def _log_input_once(dataset: Any) -> None:
    """``mlflow.log_input``, retried when a concurrent run inserted the same dataset first.

    MLflow's SQL store checks for the dataset, then inserts it: two runs of one snapshot at once
    can both miss it and one insert fails on the unique key (PostgreSQL's "duplicate key", SQLite's
    "UNIQUE constraint failed", seen under load). The retry finds the row the other run made.
    """
    import mlflow
    import tenacity
    from mlflow.exceptions import MlflowException

    def lost_the_race(exc: BaseException) -> bool:
        text = str(exc).lower()
        return isinstance(exc, MlflowException) and ("duplicate key" in text or "unique constraint failed" in text)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(lost_the_race),
        stop=tenacity.stop_after_attempt(4),
        wait=tenacity.wait_random(0.1, 0.5),
        reraise=True,
    )
    retrying(mlflow.log_input, dataset, context="training")


def _write_run_artifacts(config: Config, job: TrainingJob, outcome: FitOutcome, folder: Path) -> None:
    """The run's files, laid out as the MLflow UI shows them: data/, plots/ and the feature spec."""
    data = folder / "data"
    data.mkdir()
    (data / "snapshot.json").write_text(json.dumps(job.meta.model_dump(mode="json"), indent=2))
    report = job.meta.report_path(config.storage.features_dir)
    html = read_text(report) if report is not None else None
    if report is not None and html is not None:  # the report may live on an object store: copy its text
        (data / report.name).write_text(html)
    label = f"{job.family.name}/{job.region} {job.algorithm}"
    y = outcome.split.holdout[job.family.target].to_numpy()
    plots.write_holdout_plots(
        job.family.task, y, outcome.holdout_predictions, outcome.importance, label, folder / "plots"
    )
    if job.meta.feature_spec is not None:
        (folder / FEATURE_SPEC_ARTIFACT).write_text(json.dumps(job.meta.feature_spec, indent=2))


def _log_model(job: TrainingJob, outcome: FitOutcome) -> tuple[str, str | None]:
    """The native model and its serving extras, loadable by ``mlflow.pyfunc`` on raw rows (ADR 0017)."""
    from mlflow.models import Model

    skip_pinned_requirement_check()
    example, signature = _model_io(job, outcome)
    flavor = models.get_algorithm(job.algorithm).flavor
    # Our own forests: without this, skops refuses to load them back (in serving too).
    trust = {"serialization_format": "skops", "skops_trusted_types": SKOPS_TRUSTED_TYPES} if flavor == "sklearn" else {}
    holdout = models.feature_frame(outcome.split.holdout, job.family.features)
    with tempfile.TemporaryDirectory(prefix="modelyard-onnx-") as folder:
        # The ONNX copy and a holdout sample for the serving fast path, checked by the server (ADR 0002).
        extras = onnx_export.write_serving_extras(outcome.model, flavor, holdout, Path(folder))
        extras += _spec_extra(job, Path(folder))
        info = Model.log(
            artifact_path=None,
            name="model",
            flavor=pyfunc_model,
            native_model=outcome.model,
            native_flavor=flavor,
            signature=signature,
            input_example=example,
            extra_files=extras,
            # Declared, not inferred: inference imports the model in a child process, seconds a pair.
            pip_requirements=registry.pip_requirements(flavor),
            # MLflow would load the saved model back and predict the example, only to log a warning if
            # it failed: ~5% of training's CPU a pair (issue 26). The raw-row pyfunc is checked by
            # tests/integration/test_pyfunc_parity.py, the ONNX copy against it at export and in the gates.
            validate_serving_input=False,
            **trust,
        )
    return str(info.model_uri), info.model_id


def _spec_extra(job: TrainingJob, folder: Path) -> list[str]:
    """The fitted spec inside the model's artifacts: the server's one ``models:/`` download has it."""
    if job.meta.feature_spec is None:
        return []
    path = folder / FEATURE_SPEC_ARTIFACT
    path.write_text(json.dumps(job.meta.feature_spec, indent=2))
    return [str(path)]


def _model_io(job: TrainingJob, outcome: FitOutcome) -> tuple[pd.DataFrame, Any]:
    """The input example and signature of what ``mlflow.pyfunc`` takes and answers (ADR 0017).

    Inputs are the raw fields a client sends when the snapshot has a feature spec, else the model's
    feature columns; outputs are what the server answers: the positive-class probability of a
    classifier, the value of a regressor (float64).
    """
    from mlflow.models import infer_signature

    holdout = outcome.split.holdout.head(5)
    if job.meta.feature_spec is None:
        features = _object_columns(models.feature_frame(holdout, job.family.feature_names))
        return features, infer_signature(features, models.predict(outcome.model, job.family.task, features))
    fitted = FittedSpec.from_dict(job.meta.feature_spec)
    example = _object_columns(raw_example(fitted, holdout))
    return example, raw_signature(fitted, example)


def _object_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with plain (object) column labels: MLflow compares them with a ``range`` when it saves
    the input example, which pandas 3 warns about for its ``str`` column index."""
    import pandas as pd

    return frame.set_axis(pd.Index([str(name) for name in frame.columns], dtype=object), axis=1)


# The signature type of a raw column by its values' kind (the time column is ISO-8601 text whatever its values).
_SIGNATURE_TYPES = {"b": "boolean", "i": "long", "u": "long", "f": "double"}


def raw_signature(fitted: FittedSpec, example: pd.DataFrame) -> Any:
    """The signature of the raw rows ``mlflow.pyfunc`` takes and the float64 predictions it answers.

    Built, not inferred: inference warns on every int column, and would not say that the time is text.
    """
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    def kind(name: str) -> str:
        if name == fitted.spec.time_column:
            return "string"
        return _SIGNATURE_TYPES.get(example[name].dtype.kind, "string")

    inputs = Schema([ColSpec(kind(str(name)), str(name)) for name in example.columns])
    return ModelSignature(inputs=inputs, outputs=Schema([TensorSpec(np.dtype("float64"), (-1,))]))


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


def register_challenger(
    client: MlflowClient,
    job: TrainingJob,
    run_id: str,
    model_uri: str,
    outcome: FitOutcome,
    config: Config,
    force: bool,
) -> ModelVersion:
    """Register the run's model as a version of ``job.model_name`` and make it the ``challenger``.

    The registered model is described from the config (:func:`registry.model_description`). The
    version carries its inputs (``input_key``, ``data_digest``, ...) and its metric summary as tags. A
    version registered on the same inputs meanwhile is returned instead (unless ``force``): one that
    another training registered while this one ran is found once this run's version is registered
    (which is then deleted, :func:`registry.older_twin`), so no search precedes the registration
    (``train_pair`` searched before training).
    """
    import mlflow

    tags = {
        "family": job.family.name,
        "region": job.region,
        "data_digest": job.meta.digest,
        "run_id": run_id,
        "config_hash": config.config_hash(),
        "input_key": job.input_key,
        "algorithm": job.algorithm,
        "task": job.family.task,
        "flavor": models.get_algorithm(job.algorithm).flavor,
        **({"feature_spec": FEATURE_SPEC_ARTIFACT} if job.meta.feature_spec is not None else {}),
        **registry.metric_tags(outcome.metrics, registry.KEY_METRICS[job.family.task]),
    }
    version = registry.register(model_uri, job.model_name, tags)
    twin = None if force else registry.older_twin(client, version, job.input_key)
    if twin is not None:
        # Two trainings of the same inputs passed the check above at once: the older version stands.
        mlflow.set_tag("duplicate_of", f"{job.model_name}/{twin.version}")
        return twin
    writer = registry.registry_writer(client)
    registry.set_challenger(writer, job.model_name, str(version.version))
    description = registry.model_description(config, job.family.name, job.region)
    registry.describe_model(writer, job.model_name, description, first_version=str(version.version) == "1")
    mlflow.set_tag("registered_version", f"{job.model_name}/{version.version}")
    return version
