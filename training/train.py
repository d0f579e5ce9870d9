"""Train one model per (family, region) from a valid snapshot and register it in MLflow.

:func:`train_pair` prepares the pair's training job (training/job.py), skips it when a version
was trained on the same inputs already, fits (training/fit.py) and logs and registers the result
(training/mlflow_log.py); :func:`train_all` runs every selected pair. Both return data; the
CLI renders it (training/render.py).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from modelyard.core.tracking import (
    ExperimentDeletedError,
    TrackingServerUnreachableError,
    quiet_run_urls,
    require_reachable,
    resolve_tracking_uri,
    run_url,
)
from modelyard.pipeline.snapshots import SnapshotNotFoundError, load_frame
from modelyard.training import mlflow_log, models, registry
from modelyard.training.fit import TooFewRows, TrainingSkipped, check_trainable, fit_pair
from modelyard.training.job import TrainingError, TrainingJob, prepare_job

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from modelyard.core.config import Config

log = logging.getLogger(__name__)

Status = Literal["registered", "unchanged", "skipped", "failed"]
EXPECTED_ERRORS = (
    SnapshotNotFoundError,
    TrainingError,
    models.ParamError,
    models.AlgorithmError,
    ExperimentDeletedError,
)
# The MLflow client's own retries, bounded for a training process (its defaults retry a dead server for
# minutes per call): a few seconds of retry, then the pair fails and the server is checked once.
MLFLOW_RETRY_BUDGET = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
# Runs of a pair that started before this process and still say RUNNING were left by a killed process.
PROCESS_STARTED_MS = int(time.time() * 1000)


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
        """The ``extra`` of the challenger Asset event (see ``core.contracts.assets.challenger_uri``)."""
        return {
            "family": self.family,
            "region": self.region,
            "model_name": self.model_name,
            "version": self.version or "",
            "run_id": self.run_id or "",
        }


def train_pair(
    config: Config,
    family: str,
    region: str,
    *,
    tracking_uri: str | None = None,
    force: bool = False,
    params_override: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    digest: str | None = None,
) -> TrainResult:
    """Train (family, region) on a valid snapshot, log everything to MLflow, register a challenger.

    Inputs already trained (same ``input_key`` tag on a version) are not trained again
    unless ``force``; the existing version is returned with status ``unchanged``.

    Args:
        config: the modelyard config.
        family: a configured family.
        region: a configured region.
        tracking_uri: the MLflow server; default: :func:`resolve_tracking_uri`.
        force: train and register even if a version with the same inputs exists.
        params_override: hyperparameters on top of the family's and region's.
        tags: extra run tags, e.g. why it retrains (``retrain_reason: drift``, see monitoring/measure.py).
        digest: the snapshot to train on (the digest the data stage's event carried); default: the
            pair's ``LATEST`` snapshot.

    Returns:
        ``registered`` with the new version, ``unchanged`` with the existing one, or
        ``skipped`` with the reason (too few rows, single class, empty window).

    Raises:
        SnapshotNotFoundError, TrainingError, ParamError, AlgorithmError: see :func:`prepare_job`.
        TrackingServerUnreachableError: the MLflow server stopped answering (after a bounded retry).
        Exception: anything failing during training; the MLflow run is then marked FAILED
            and no version is registered.
    """
    bound_mlflow_retries()
    job = prepare_job(config, family, region, params_override, digest)
    return train_job(config, job, tracking_uri=tracking_uri, force=force, tags=tags)


def train_job(
    config: Config,
    job: TrainingJob,
    *,
    tracking_uri: str | None = None,
    force: bool = False,
    tags: Mapping[str, str] | None = None,
) -> TrainResult:
    """Train a prepared job (a pair's, or a group's pooled one), log it to MLflow and register a challenger.

    Raises:
        TrackingServerUnreachableError: the MLflow server stopped answering (after a bounded retry).
        Exception: anything failing during training (the MLflow run is then marked FAILED).
    """
    bound_mlflow_retries()
    uri = tracking_uri or resolve_tracking_uri(config)
    try:
        return _train(config, job, uri, force, tags)
    except EXPECTED_ERRORS:
        raise
    except Exception as exc:
        require_reachable(uri)  # a dead server says so in one line (exit 3), not in a client traceback
        raise exc


def bound_mlflow_retries(environ: os._Environ[str] | dict[str, str] = os.environ) -> None:
    """Bound the MLflow client's HTTP retries for this process (:data:`MLFLOW_RETRY_BUDGET`) and spare it
    the run-URL print (:func:`~modelyard.core.tracking.quiet_run_urls`), unless set."""
    for key, value in MLFLOW_RETRY_BUDGET.items():
        environ.setdefault(key, value)
    quiet_run_urls(environ)


def _train(config: Config, job: TrainingJob, uri: str, force: bool, tags: Mapping[str, str] | None) -> TrainResult:
    import mlflow

    family, region = job.family.name, job.region
    # Fluent calls (start_run, log_model) use the global URIs; set them only when they change.
    if (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) != (uri, uri):
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
    client = mlflow_log.tracking_client(uri)
    if not force and (existing := registry.find_version(client, job.model_name, job.input_key)):
        return _unchanged(client, job, existing, uri)
    frame = load_frame(config.storage.features_dir, job.meta)
    try:
        check_trainable(config, job.family, frame)
    except TooFewRows as skip:
        return _skipped(job, skip.reason + _served_by(config, job))
    except TrainingSkipped as skip:
        return _skipped(job, skip.reason)
    experiment = mlflow_log.experiment_id(client, uri, mlflow_log.experiment_name(config, family))
    mlflow_log.fail_stale_runs(client, experiment, job, PROCESS_STARTED_MS)
    run_tags = {**mlflow_log.run_tags(config, job), **(tags or {})}
    with mlflow.start_run(experiment_id=experiment, run_name=job.run_name, tags=run_tags) as run:
        try:
            outcome = fit_pair(config, job.family, frame, job.algorithm, job.params, job.baseline)
        except TrainingSkipped as skip:
            mlflow.set_tag("skip_reason", skip.reason)
            return _skipped(job, skip.reason, run.info.run_id, run_url(uri, experiment, run.info.run_id))
        model_uri = mlflow_log.log_run(config, job, frame, outcome)
        version = mlflow_log.register_challenger(client, job, run.info.run_id, model_uri, outcome, config, force)
    winner = (version.tags or {}).get("run_id")
    if winner != run.info.run_id:
        twin = _unchanged(client, job, version, uri)
        reason = f"trained at the same time as run {winner or '?'} on the same inputs; its version stands"
        log.info("%s: %s (this run's duplicate version was removed)", job.run_name, reason)
        return replace(twin, reason=reason)
    log.info("%s: registered %s version %s (run %s)", job.run_name, job.model_name, version.version, run.info.run_id)
    return TrainResult(
        family=family,
        region=region,
        status="registered",
        model_name=job.model_name,
        version=str(version.version),
        run_id=run.info.run_id,
        run_url=run_url(uri, experiment, run.info.run_id),
        data_digest=job.meta.digest,
        input_key=job.input_key,
        metrics=outcome.metrics,
    )


def _served_by(config: Config, job: TrainingJob) -> str:
    """'; served by the pooled model of country-id' for a grouped region too small for a model of its own."""
    if job.region not in config.region_names:
        return ""  # a group's pooled model: nothing pools it further
    groups = config.groups_of(job.region)
    if not groups:
        return "; no region group pools it, so it has no model (see groups: in the config, ADR 0015)"
    return f"; served by the pooled model of {' or '.join(groups)}"


def _unchanged(client: MlflowClient, job: TrainingJob, version: ModelVersion, uri: str) -> TrainResult:
    registry.repair_alias(client, version)
    run = client.get_run(version.run_id) if version.run_id else None
    return TrainResult(
        family=job.family.name,
        region=job.region,
        status="unchanged",
        model_name=job.model_name,
        version=str(version.version),
        run_id=version.run_id,
        run_url=run_url(uri, run.info.experiment_id, run.info.run_id) if run else None,
        data_digest=job.meta.digest,
        input_key=job.input_key,
        reason="already trained on these inputs (use --force to retrain)",
        metrics=dict(run.data.metrics) if run else {},
    )


def _skipped(job: TrainingJob, reason: str, run_id: str | None = None, url: str | None = None) -> TrainResult:
    log.warning("%s/%s skipped: %s", job.family.name, job.region, reason)
    return TrainResult(
        family=job.family.name,
        region=job.region,
        status="skipped",
        model_name=job.model_name,
        run_id=run_id,
        run_url=url,
        data_digest=job.meta.digest,
        input_key=job.input_key,
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
        TrackingServerUnreachableError: the MLflow server does not answer (checked up front, and again
            when a pair fails: a server gone mid-run stops the run instead of failing every pair slowly).
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
        except TrackingServerUnreachableError as exc:
            log.error("%s/%s: %s", family, region, exc)
            raise
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
