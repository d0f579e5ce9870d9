"""The per-pair work of the chunked stages (data, training, promotion, monitoring), run in pool workers.

Airflow-free on purpose: a worker process unpickles these functions, so importing this
module must not import Airflow. Each worker gets the config once (:func:`start_worker`),
keeps its raw-data cache and MLflow client across pairs, and turns the library's result
for a pair into a :class:`~modelyard.core.chunks.PairOutcome` (status, one log line's
detail, the MLflow link or snapshot digest, and the Asset event to announce).
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from modelyard.core.chunks import Pair, PairOutcome
from modelyard.core.contracts import assets

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from modelyard.core.config import Config
    from modelyard.pipeline.build import BuildRequest, BuildResult, RawCache
    from modelyard.promotion.decision import Action, Decision
    from modelyard.training.train import TrainResult

# One worker's state: its config, raw-data cache and MLflow client (reset by start_worker).
_WORKER: dict[str, Any] = {}


# Third-party output that is not an error but would land on stderr, which Airflow logs as ERROR.
QUIET_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "MLFLOW_CONFIGURE_LOGGING": "false"}


@dataclass(frozen=True)
class WorkerLogs:
    """Where a chunk's worker processes send their log records: a queue the task process reads."""

    queue: Any
    owner_pid: int


@contextlib.contextmanager
def worker_logs() -> Iterator[WorkerLogs]:
    """Relay the log records of a chunk's worker processes into this process's logging, at their own level.

    A worker's stderr would reach the Airflow task log as ERROR; its records go through this
    queue instead and are handled here by the root logger (Airflow's task log handler).
    """
    import multiprocessing

    from modelyard.core.chunks import START_METHOD

    queue = multiprocessing.get_context(START_METHOD).Queue()
    listener = logging.handlers.QueueListener(queue, _RootRelay())
    listener.start()
    try:
        yield WorkerLogs(queue=queue, owner_pid=os.getpid())
    finally:
        listener.stop()
        queue.close()


class _RootRelay(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger().handle(record)


def start_worker(config: Config, logs: WorkerLogs | None = None) -> None:
    """Pool initializer: this process works for one chunk with ``config``, logging at each record's real level.

    Run in each worker process (and in the task process itself for an inline chunk): progress
    bars off, ``warnings`` logged at WARNING, MLflow's logger into the normal logging tree
    (MLflow wires it to stderr on import), and in a worker process every record to ``logs``.
    """
    _WORKER.clear()
    _WORKER["config"] = config
    quiet_third_party()
    if logs is not None and logs.owner_pid != os.getpid():
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.addHandler(logging.handlers.QueueHandler(logs.queue))
        root.setLevel(logging.INFO)


GX_EXPECTATION_LOGGER = "great_expectations.expectations.expectation"


def quiet_third_party() -> None:
    """Keep libraries' progress and warnings off stderr: they are logged at their own level instead."""
    os.environ.update(QUIET_ENV)
    logging.captureWarnings(True)
    mlflow_logger = logging.getLogger("mlflow")
    for handler in list(mlflow_logger.handlers):  # MLflow imported before the switch: undo its stderr handler
        mlflow_logger.removeHandler(handler)
    mlflow_logger.propagate = True
    # Great Expectations logs "_get_default_value called with key 'row_condition', but it is not a known
    # field" at INFO for each expectation it runs: ten lines a pair in the data stage's task log.
    logging.getLogger(GX_EXPECTATION_LOGGER).setLevel(logging.WARNING)


def _config() -> Config:
    if "config" not in _WORKER:
        raise RuntimeError("stage_pairs.start_worker(config) was not called in this process")
    config: Config = _WORKER["config"]
    return config


# ---------------------------------------------------------------- data


def build_one(request: BuildRequest, pair: Pair) -> PairOutcome:
    """Build, validate and publish one pair's snapshot; a new snapshot announces its features Asset."""
    from modelyard.pipeline.build import RawCache, build_pair

    cache: RawCache = _WORKER.setdefault("raw_cache", RawCache())
    return data_outcome(build_pair(_config(), pair[0], pair[1], request, cache))


def data_outcome(result: BuildResult) -> PairOutcome:
    """Published (with its event), unchanged, skipped (too few rows) or failed (bad data: final)."""
    common: dict[str, Any] = {"family": result.family, "region": result.region, "status": result.status}
    digest = f"digest {result.digest}" if result.digest else ""
    if result.status == "failed":
        report = f" (report: {result.report})" if result.report else ""
        return PairOutcome(**common, ok=False, detail=f"{result.reason}{report}", retryable=result.retryable)
    if result.status == "skipped":
        return PairOutcome(**common, detail=result.reason)
    detail = f"{result.rows} rows, validation {result.validation}"
    if result.report:  # the quality report of every built pair, not only of a failed one
        detail += f", report {result.report}"
    if result.status != "published":
        return PairOutcome(**common, detail=detail, link=digest)
    extra = assets.FeaturesExtra(
        family=result.family, region=result.region, digest=result.digest or "", rows=result.rows
    )
    uri = assets.features_uri(result.family, result.region)
    return PairOutcome(**common, detail=detail, link=digest, event_uri=uri, event_extra=dict(extra))


# ---------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainRequest:
    """What a training chunk asks of every pair."""

    tracking_uri: str
    force: bool = False
    params_override: dict[str, Any] | None = None
    # "<family>/<region>" -> the extra of the drift event that asked for its retraining.
    drift: dict[str, dict[str, Any]] = field(default_factory=dict)
    # "<family>/<region>" -> the snapshot digest its features event carried (absent: train on LATEST).
    digests: dict[str, str] = field(default_factory=dict)


def train_one(request: TrainRequest, pair: Pair) -> PairOutcome:
    """Train one pair and register its challenger; registered and unchanged versions are announced.

    A pair named by a features event trains on the snapshot that event announced; a pair named
    by a drift event is retrained on its newest data, the drift in the run's tags.
    """
    from modelyard.monitoring.measure import retrain_drifted
    from modelyard.training.train import train_pair

    key = f"{pair[0]}/{pair[1]}"
    drift = request.drift.get(key)
    if drift is not None:
        return train_outcome(retrain_drifted(_config(), pair[0], pair[1], drift, tracking_uri=request.tracking_uri))
    result = train_pair(
        _config(),
        pair[0],
        pair[1],
        tracking_uri=request.tracking_uri,
        force=request.force,
        params_override=request.params_override,
        digest=request.digests.get(key),
    )
    return train_outcome(result)


def train_outcome(result: TrainResult) -> PairOutcome:
    """Registered / unchanged (both announce the challenger) or skipped (too little data, with the reason)."""
    common: dict[str, Any] = {"family": result.family, "region": result.region, "status": result.status}
    link = result.run_url or ""
    if result.status == "skipped":
        return PairOutcome(**common, detail=result.reason or "", link=link)
    metrics = main_metric(result.metrics)
    detail = f"{result.model_name} v{result.version}" + (f" ({metrics})" if metrics else "")
    uri = assets.challenger_uri(result.family, result.region)
    return PairOutcome(**common, detail=detail, link=link, event_uri=uri, event_extra=result.asset_extra())


def main_metric(metrics: dict[str, float]) -> str:
    """The model's own headline holdout metric, with the baseline's beside it: ``holdout_auc 0.842, baseline 0.816``."""
    from modelyard.training.registry import KEY_METRICS

    for names in KEY_METRICS.values():
        main, baseline = names[0], f"baseline_{names[0]}"
        if main in metrics:
            text = f"{main} {metrics[main]:.3f}"
            return text + (f", baseline {metrics[baseline]:.3f}" if baseline in metrics else "")
    own = sorted((k, v) for k, v in metrics.items() if not k.startswith("baseline_"))
    return ", ".join(f"{k} {v:.3f}" for k, v in own[:2])


# ---------------------------------------------------------------- promotion


@dataclass(frozen=True)
class DecideRequest:
    """What a promotion chunk asks of every pair (a manual form, or ``evaluate`` for asset-triggered runs)."""

    tracking_uri: str
    action: Action
    decided_by: str
    version: str | None = None
    reason: str | None = None
    force: bool = False


def decide_one(request: DecideRequest, pair: Pair) -> PairOutcome:
    """Decide one pair; a moved champion announces its Asset. A rejection is a decision, not a failure."""
    from modelyard.promotion.aliases import open_client
    from modelyard.promotion.approval import decide_with_policy

    if "client" not in _WORKER:
        _WORKER["client"] = open_client(_config(), request.tracking_uri)
    client: MlflowClient = _WORKER["client"]
    decision = decide_with_policy(
        client,
        _config(),
        pair,
        request.action,
        request.decided_by,
        version=request.version,
        reason=request.reason,
        force=request.force,
    )
    return decision_outcome(decision, request.tracking_uri)


def decision_outcome(decision: Decision, tracking_uri: str) -> PairOutcome:
    """The decision with its gate table as notes and a link to the model version decided on."""
    from modelyard.promotion.gates import GateReport

    version = decision.version or decision.champion_after or ""
    link = model_version_url(tracking_uri, decision.model_name, version) if version else ""
    notes = GateReport(results=decision.gates).as_text().splitlines() if decision.gates else []
    moved = decision.champion_changed
    return PairOutcome(
        family=decision.family,
        region=decision.region,
        status=decision.outcome,
        ok=decision.outcome != "failed",
        detail=f"{decision.model_name}: {decision.summary}",
        link=link,
        event_uri=assets.champion_uri(decision.family, decision.region) if moved else None,
        event_extra=decision.asset_extra() if moved else {},
        notes=notes,
        facts={"version": version, "already_decided": decision.already_decided},
    )


def model_version_url(tracking_uri: str, model_name: str, version: str) -> str:
    """The MLflow UI page of a model version (the UI is served by the tracking server)."""
    return f"{tracking_uri.rstrip('/')}/#/models/{quote(model_name, safe='')}/versions/{quote(version, safe='')}"


# ---------------------------------------------------------------- monitoring


@dataclass(frozen=True)
class MonitorRequest:
    """What a monitoring chunk asks of every pair: the samples published since ``since`` (ISO-8601)."""

    tracking_uri: str
    since: str
    window_hours: int | None = None


def monitor_one(request: MonitorRequest, pair: Pair) -> PairOutcome:
    """Measure every served version of one pair that has samples in the window; a drifted one announces its Asset.

    A pair usually serves one version (two during a canary or shadow); the newest drifted one
    names the drift event.
    """
    import datetime as dt

    from modelyard.monitoring.measure import measure_pair, served_versions

    config = _config()
    since = dt.datetime.fromisoformat(request.since)
    reports = [
        measure_pair(config, served, tracking_uri=request.tracking_uri, window_hours=request.window_hours)
        for served in served_versions(config.storage.samples_dir, [pair], since)
    ]
    common: dict[str, Any] = {"family": pair[0], "region": pair[1]}
    if not reports:
        return PairOutcome(**common, status="no samples", detail="no sample file published in the window")
    drifted = [r for r in reports if r.verdict == "drifted"]
    verdicts = {r.verdict for r in reports}
    status = next(v for v in ("drifted", "stable", "no_reference", "too_few_samples", "deleted") if v in verdicts)
    newest = drifted[-1] if drifted else reports[-1]
    return PairOutcome(
        **common,
        status=status,
        detail="; ".join(f"v{r.version}: {r.summary}" for r in reports),
        link=newest.run_url or "",
        event_uri=assets.drift_uri(pair[0], pair[1]) if drifted else None,
        event_extra=newest.asset_extra() if drifted else {},
        facts={"versions": {r.version: r.verdict for r in reports}},
    )
