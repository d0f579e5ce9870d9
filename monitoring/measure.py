"""Drift of what the served models see, per (family, region, version), recorded in MLflow.

The serving process samples requests into ``<storage.root>/monitoring/samples/<family>/
<region>/<version>/*.jsonl.gz`` (``deploy/serving/sampling.py``). For every served version
found there, :func:`measure_pair` reads the window's samples, rebuilds the version's
training window (its ``data_digest`` snapshot split at its run's ``split_*`` params) and
compares:

* each feature the model read (the computed feature rows the server logged) against the
  training rows: PSI on the training quantile bins for numbers, Jensen-Shannon distance for
  categorical kinds (``pipeline/drift.py``);
* the served predictions against the version's predictions on its holdout (PSI);
* volume and errors: sampled requests and rows, and every request the servers answered by
  outcome (``ok``, ``bad_input``, ``error``), hence the error rate.

The figures go to a monitoring run (experiment ``<project>/<family>/monitoring``) with one
plot; the run and the model version are tagged with each other (``monitoring.*`` on the
version; ``monitoring.<region>.*`` on a pooled version, which each of its regions measures). A
pair over its bounds (``monitoring`` in the config) is ``drifted``; the monitoring DAG then
emits ``modelyard://drift/<family>/<region>``. See ADR 0010.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from upath import UPath

from modelyard.core.contracts import prediction_log
from modelyard.core.contracts.registry import missing_training_tags, monitoring_tag
from modelyard.core.errors import ModelyardError
from modelyard.monitoring.drift import FeatureDrift, feature_drifts, psi

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    import numpy as np
    from matplotlib.figure import Figure
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from modelyard.core.config import Config, DriftBounds
    from modelyard.training.train import TrainResult

log = logging.getLogger(__name__)

# ``no_reference``: a version not registered by ``modelyard train`` (a notebook's, promoted by hand)
# has no training window to compare with: its volume, errors and live quality are still recorded.
# ``deleted``: the version is no longer in the registry (deleted in the MLflow UI); its samples stay in
# the window until they age out, and are not measured (there is no version to record against).
Verdict = Literal["drifted", "stable", "too_few_samples", "no_reference", "deleted"]


class MonitoringError(ModelyardError):
    """A served version cannot be measured (no such version, no snapshot); the message says which and why."""


class VersionDeleted(MonitoringError):
    """The samples name a version the registry no longer has."""


@dataclass(frozen=True)
class ServedVersion:
    """One model version that samples were written for."""

    family: str
    region: str
    version: str
    folder: UPath


@dataclass
class SampleWindow:
    """The samples of one served version inside the window."""

    features: list[list[float]] = field(default_factory=list)
    predictions: list[float] = field(default_factory=list)
    requests: int = 0
    estimated_requests: float = 0.0
    unreadable_lines: int = 0
    files: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)  # every request the server answered, by outcome
    by_request: dict[str, list[float]] = field(default_factory=dict)  # request id -> its predictions
    models: set[str] = field(default_factory=set)  # the registered models the lines name (lines may name none)
    latest_named: tuple[str, str] | None = None  # (ts, model) of the newest line that names its model

    @property
    def latest_model(self) -> str | None:
        """The model the newest line names: the one serving at the end of the window."""
        return self.latest_named[1] if self.latest_named else None

    @property
    def error_rate(self) -> float | None:
        """Share of requests that failed (bad input or inference error), from the servers' counts."""
        total = sum(self.outcomes.values())
        return (total - self.outcomes.get("ok", 0)) / total if total else None

    @property
    def rows(self) -> int:
        return len(self.predictions)


@dataclass(frozen=True)
class Reference:
    """The training window of a version: its feature columns, their kinds, and its holdout predictions."""

    names: list[str]
    kinds: dict[str, str]
    columns: dict[str, np.ndarray]
    holdout_predictions: np.ndarray
    data_digest: str


@dataclass
class DriftReport:
    """What one measurement found."""

    family: str
    region: str
    model_name: str
    version: str
    verdict: Verdict
    window_start: str
    window_end: str
    samples: SampleWindow
    features: list[FeatureDrift] = field(default_factory=list)
    prediction: FeatureDrift | None = None
    live: dict[str, float] = field(default_factory=dict)  # live_auc / live_mae, live_rows, next to holdout_*
    run_id: str | None = None
    run_url: str | None = None

    @property
    def drifted_features(self) -> dict[str, dict[str, Any]]:
        return {f.feature: f.to_dict() for f in self.features if f.drifted}

    @property
    def summary(self) -> str:
        if self.verdict == "too_few_samples":
            return f"too few samples ({self.samples.rows} rows)"
        if self.verdict == "deleted":
            return (
                f"v{self.version} of '{self.model_name}' is no longer in the registry (deleted); its "
                f"{self.samples.rows} sampled rows are not measured and leave the window as they age"
            )
        if self.verdict == "no_reference":
            return (
                f"no reference: v{self.version} was not registered by `modelyard train`, so there is no training "
                f"window to measure drift against ({self.samples.rows} rows sampled; volume, errors and live "
                "quality recorded)"
            )
        parts = [f"{name} {d['statistic']}={d['value']:.3f}" for name, d in self.drifted_features.items()]
        if self.prediction is not None and self.prediction.drifted:
            parts.append(f"predictions psi={self.prediction.value:.3f}")
        return f"drifted: {', '.join(parts)}" if parts else f"stable over {self.samples.rows} rows"

    def asset_extra(self) -> dict[str, Any]:
        """The extra of the pair's ``drift`` Asset event."""
        return {
            "family": self.family,
            "region": self.region,
            "model_name": self.model_name,
            "version": self.version,
            "run_id": self.run_id or "",
            "reason": self.summary,
            "drifted": self.drifted_features,
            "prediction_psi": round(self.prediction.value, 6) if self.prediction else None,
            "samples": self.samples.rows,
            "error_rate": self.samples.error_rate,
        }


# ---------------------------------------------------------------- reading samples


def served_versions(
    samples_dir: UPath, pairs: Iterable[tuple[str, str]], since: dt.datetime | None = None
) -> list[ServedVersion]:
    """Every (family, region, version) of ``pairs`` with a sample folder, versions in numeric order.

    With ``since``, only versions with a sample file published since then: a version that no
    longer serves is not measured (and recorded) again every hour.
    """
    found = []
    for family, region in pairs:
        folder = samples_dir / family / region
        if not folder.is_dir():
            continue
        versions = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        for path in sorted(versions, key=lambda p: (len(p.name), p.name)):
            if since is None or _published_since(path, since):
                found.append(ServedVersion(family, region, path.name, path))
    return found


def _published_since(folder: UPath, since: dt.datetime) -> bool:
    return any(p.stat().st_mtime >= since.timestamp() for p in folder.glob(f"*{prediction_log.SUFFIX}"))


def read_samples(
    folder: UPath, since: dt.datetime, until: dt.datetime | None = None, model: str | None = None
) -> SampleWindow:
    """The served predictions (not shadows) logged in ``folder`` from ``since`` (to ``until``).

    Only published files are read (``*.jsonl.gz``; open ones are hidden ``.part`` files). A
    line that does not parse is counted, not fatal: one torn file must not hide a drift. With
    ``model``, a prediction line that names another model is left out (a line naming none is kept).
    """
    window = SampleWindow()
    for path in sorted(folder.glob(f"*{prediction_log.SUFFIX}")):
        if path.stat().st_mtime < since.timestamp():
            continue  # published before the window opened: every line in it is older
        window.files += 1
        for entry in _entries(path, window):
            at = dt.datetime.fromisoformat(entry["ts"])
            if at < since or (until is not None and at > until):
                continue
            if entry.get("kind") == prediction_log.COUNTS:
                for outcome, n in (entry.get("counts") or {}).items():
                    window.outcomes[outcome] = window.outcomes.get(outcome, 0) + int(n)
            elif entry.get("kind") == prediction_log.PREDICTION and _of_model(entry, model):
                _add(window, entry)
    return window


def _of_model(entry: dict[str, Any], model: str | None) -> bool:
    return model is None or entry.get("model", model) == model


def _entries(path: UPath, window: SampleWindow) -> Iterable[dict[str, Any]]:
    try:
        with path.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as handle:
            for line in handle:
                entry = prediction_log.parse_line(line)
                if entry is None:
                    window.unreadable_lines += 1
                    continue
                yield entry
    except (OSError, EOFError) as exc:
        window.unreadable_lines += 1
        log.warning("%s: unreadable sample file (%s)", path, exc)


def _add(window: SampleWindow, entry: dict[str, Any]) -> None:
    features, predictions = entry.get("features"), entry.get("predictions")
    if not isinstance(features, list) or not isinstance(predictions, list) or len(features) != len(predictions):
        window.unreadable_lines += 1
        return
    window.requests += 1
    named = entry.get("model")
    if isinstance(named, str):
        window.models.add(named)
        if window.latest_named is None or entry["ts"] >= window.latest_named[0]:
            window.latest_named = (entry["ts"], named)
    rate = entry.get("sample_rate") or 0
    window.estimated_requests += 1 / rate if rate else 1
    window.features.extend(features)
    window.predictions.extend(float(p) for p in predictions)
    window.by_request[str(entry.get("request_id"))] = [float(p) for p in predictions]


# ---------------------------------------------------------------- the reference window


def reference_of(client: MlflowClient, config: Config, version: ModelVersion) -> Reference:
    """The version's training rows (feature columns) and its predictions on its holdout.

    Raises:
        MonitoringError: the version lacks its training tags, or its snapshot or model cannot be read.
    """

    from modelyard.core.featurespec import FittedSpec
    from modelyard.pipeline.snapshots import SnapshotNotFoundError, load_frame, read_snapshot
    from modelyard.promotion.evidence import load_version
    from modelyard.promotion.gates import GateInputError
    from modelyard.training.models import feature_frame, predict
    from modelyard.training.split import SplitError

    tags = version.tags or {}
    family, region, digest = tags.get("family"), tags.get("region"), tags.get("data_digest")
    if not (family and region and digest):  # missing_training_tags, spelt out for the types
        raise MonitoringError(
            f"model '{version.name}' v{version.version} has no family/region/data_digest tags "
            "(versions registered by `modelyard train` carry them)"
        )
    spec = config.family(family)
    try:
        meta = read_snapshot(config.storage.features_dir, family, region, digest)
        frame = load_frame(config.storage.features_dir, meta)
        split = _split(client, config, version, frame)
    except (SnapshotNotFoundError, OSError, SplitError) as exc:
        where = f"model '{version.name}' v{version.version}"
        raise MonitoringError(f"{where}: cannot rebuild its training window: {exc}") from exc
    names = list(spec.feature_names)
    kinds: dict[str, str] = {}
    if meta.feature_spec is not None:
        fitted = FittedSpec.from_dict(meta.feature_spec)
        names, kinds = fitted.names, {f.name: f.kind for f in fitted.spec.features}
    train = feature_frame(split.train, names)
    with tempfile.TemporaryDirectory(prefix="modelyard-monitoring-") as tmp:
        try:
            model, _ = load_version(version, Path(tmp))
        except GateInputError as exc:
            raise MonitoringError(str(exc)) from exc
        holdout = predict(model, spec.task, feature_frame(split.holdout, names))
    columns = {name: train[name].to_numpy(dtype=float) for name in names}
    return Reference(names, kinds, columns, holdout, digest)


def _split(client: MlflowClient, config: Config, version: ModelVersion, frame: Any) -> Any:
    from modelyard.training.split import SplitBoundaries, split_at, time_split

    params = client.get_run(version.run_id).data.params if version.run_id else {}
    keys = ("split_train_start", "split_valid_start", "split_holdout_start", "split_end")
    if all(k in params for k in keys):
        return split_at(frame, SplitBoundaries(*(dt.datetime.fromisoformat(params[k]) for k in keys)))
    return time_split(frame, config.training.holdout_days, config.training.validation_days)


# ---------------------------------------------------------------- measuring


def compare(
    reference: Reference, samples: SampleWindow, bounds: DriftBounds, bins: int
) -> tuple[Verdict, list[FeatureDrift], FeatureDrift | None]:
    """The verdict, the per-feature drifts and the prediction drift of ``samples`` against ``reference``."""
    import numpy as np

    if samples.rows < bounds.min_samples:
        return "too_few_samples", [], None
    # The server hands the model float32: compare both sides in that domain, or a discrete value
    # (0.9052) that float32 rounds below its float64 self lands in another quantile bin.
    served = np.asarray(samples.features, dtype=np.float32).astype(float)
    columns = {name: np.asarray(values, dtype=np.float32).astype(float) for name, values in reference.columns.items()}
    drifts = feature_drifts(
        reference.names, reference.kinds, columns, served,
        max_psi=bounds.max_psi, max_js=bounds.max_js, bins=bins,
    )  # fmt: skip
    value = psi(reference.holdout_predictions, np.asarray(samples.predictions), bins)
    prediction = FeatureDrift(
        "prediction", "psi", value, bounds.max_prediction_psi, len(reference.holdout_predictions), samples.rows
    )
    drifted = any(d.drifted for d in drifts) or prediction.drifted
    return ("drifted" if drifted else "stable"), drifts, prediction


def measure_pair(
    config: Config,
    served: ServedVersion,
    *,
    tracking_uri: str | None = None,
    window_hours: int | None = None,
    now: dt.datetime | None = None,
) -> DriftReport:
    """Measure one served version's drift over the window and record it in MLflow.

    A version the registry no longer has gets the verdict ``deleted`` (nothing recorded in MLflow).

    Raises:
        MonitoringError: the registry cannot be read or the training window cannot be rebuilt.
    """
    from modelyard.promotion.aliases import open_client

    client = open_client(config, tracking_uri)
    end = now or dt.datetime.now(dt.UTC)
    start = end - dt.timedelta(hours=window_hours or config.monitoring.window_hours)
    own = config.mlflow.model_name(served.family, served.region)
    samples = read_samples(served.folder, start, end)
    # The model the samples name: the pair's own, or the pooled model it falls back to (ADR 0015). When
    # both served this version number inside the window (a region graduating), the one serving last.
    model_name = samples.latest_model or own
    if samples.models - {model_name}:
        samples = read_samples(served.folder, start, end, model=model_name)
    report = DriftReport(
        served.family, served.region, model_name, served.version, "too_few_samples",
        start.isoformat(timespec="seconds"), end.isoformat(timespec="seconds"), samples,
    )  # fmt: skip
    try:
        version = _version(client, model_name, served.version)
    except VersionDeleted:  # a property of the version, not a fault to fail every hour until the samples age out
        report.verdict = "deleted"
        return report
    bounds = config.monitoring.bounds(served.family, served.region)
    if missing_training_tags(version.tags):
        report.verdict = "no_reference"
    elif samples.rows >= bounds.min_samples:
        reference = reference_of(client, config, version)
        report.verdict, report.features, report.prediction = compare(reference, samples, bounds, config.monitoring.bins)
    report.live = live_quality(config, served, samples, version)
    log_report(client, config, report, version, bounds, tracking_uri, own_version=model_name == own)
    return report


def _version(client: MlflowClient, model_name: str, number: str) -> ModelVersion:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(model_name, number)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise VersionDeleted(
                f"samples name model '{model_name}' version {number}, which the registry does not have"
            ) from exc
        raise MonitoringError(
            f"model '{model_name}' version {number} cannot be read from the registry: {exc.error_code}: {exc.message}"
        ) from exc


def log_report(
    client: MlflowClient,
    config: Config,
    report: DriftReport,
    version: ModelVersion,
    bounds: DriftBounds,
    tracking_uri: str | None,
    own_version: bool = True,
) -> None:
    """One monitoring run (metrics, bounds, one plot), tagged with the version and tagging it back.

    A pooled model measured on one region's traffic (``own_version`` False) is tagged under that
    region (``monitoring.<region>.verdict``): it serves other regions too, each with its own verdict.
    """
    from modelyard.core.tracking import find_or_create_experiment, quiet_run_urls, resolve_tracking_uri, run_url

    quiet_run_urls()  # set_terminated below would read the run back to print its URL; report.run_url has it
    uri = tracking_uri or resolve_tracking_uri(config)
    experiment_id = find_or_create_experiment(client, f"{config.project}/{report.family}/monitoring")
    tags = {
        "family": report.family, "region": report.region, "model_name": report.model_name,
        "model_version": report.version, "model_run_id": version.run_id or "", "verdict": report.verdict,
        "drifted_features": ",".join(report.drifted_features), "window_start": report.window_start,
        "window_end": report.window_end, "mlflow.note.content": report.summary,
    }  # fmt: skip
    run = client.create_run(experiment_id, run_name=f"{report.family}/{report.region}/v{report.version}", tags=tags)
    run_id = run.info.run_id
    # Known before the figures are logged: report.json carries the run's own id.
    report.run_id, report.run_url = run_id, run_url(uri, experiment_id, run_id)
    try:
        _log_figures(client, run_id, report, bounds)
    finally:
        client.set_terminated(run_id)
    scope = None if own_version else report.region
    for key, value in {
        "run_id": run_id, "verdict": report.verdict, "summary": report.summary[:250], "checked_at": report.window_end,
    }.items():  # fmt: skip
        client.set_model_version_tag(report.model_name, report.version, monitoring_tag(key, scope), value)


def _log_figures(client: MlflowClient, run_id: str, report: DriftReport, bounds: DriftBounds) -> None:
    import time

    from mlflow.entities import Metric, Param

    stamp = int(time.time() * 1000)
    values = {
        "samples_rows": float(report.samples.rows),
        "samples_requests": float(report.samples.requests),
        "estimated_requests": report.samples.estimated_requests,
        "unreadable_lines": float(report.samples.unreadable_lines),
        "drifted_features": float(len(report.drifted_features)),
        "requests_total": float(sum(report.samples.outcomes.values())),
    }
    if report.samples.error_rate is not None:
        values["error_rate"] = report.samples.error_rate
    for drift in report.features:
        values[f"drift_{drift.statistic}/{drift.feature}"] = drift.value
    if report.prediction is not None:
        values["prediction_psi"] = report.prediction.value
    values.update(report.live)
    metrics = [Metric(key, value, stamp, 0) for key, value in values.items()]
    params = [Param(key, str(value)) for key, value in bounds.model_dump().items()]
    client.log_batch(run_id, metrics=metrics, params=params)
    client.log_dict(run_id, {"summary": report.summary, **report.asset_extra()}, "monitoring/report.json")
    if report.features:
        client.log_figure(run_id, drift_figure(report), "monitoring/drift.png")


def drift_figure(report: DriftReport) -> Figure:
    """Bars of each feature's drift as a share of its bound (1 = the bound), drifted ones in red."""
    from matplotlib.figure import Figure

    rows = [*report.features, *([report.prediction] if report.prediction else [])]
    fig = Figure(figsize=(7, max(3.0, 0.4 * len(rows) + 1.5)), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    labels = [f"{d.feature} ({d.statistic} {d.value:.3f} / {d.bound:g})" for d in rows]
    shares = [d.value / d.bound for d in rows]
    ax.barh(labels, shares, color=["#d33" if d.drifted else "#3b7dd8" for d in rows])
    ax.axvline(1.0, color="#333", linestyle="--", linewidth=1)
    ax.invert_yaxis()
    ax.set_xlabel("drift / bound (right of the dashed line: drifted)")
    ax.set_title(f"{report.family}/{report.region} v{report.version}: {report.verdict}, {report.samples.rows} rows")
    return fig


def measure_all(
    config: Config,
    pairs: Iterable[tuple[str, str]],
    *,
    tracking_uri: str | None = None,
    window_hours: int | None = None,
    now: dt.datetime | None = None,
) -> list[DriftReport]:
    """:func:`measure_pair` for every served version of ``pairs`` (the CLI's and the tests' entry point)."""
    since = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(hours=window_hours or config.monitoring.window_hours)
    found = served_versions(config.storage.samples_dir, pairs, since)
    return [measure_pair(config, s, tracking_uri=tracking_uri, window_hours=window_hours, now=now) for s in found]


# ---------------------------------------------------------------- retraining a drifted pair


def drift_tags(extra: Mapping[str, Any]) -> dict[str, str]:
    """The run tags of a retrain caused by a drift event (its ``extra``, see :meth:`DriftReport.asset_extra`)."""
    return {
        "retrain_reason": "drift",
        "drift_reason": str(extra.get("reason", ""))[:500],
        "drift_features": ",".join(extra.get("drifted") or {}),
        "drift_version": str(extra.get("version", "")),
        "drift_run_id": str(extra.get("run_id", "")),
    }


def retrain_drifted(
    config: Config, family: str, region: str, extra: Mapping[str, Any], *, tracking_uri: str | None = None
) -> TrainResult:
    """Retrain a drifted pair on its newest data: rebuild its snapshot first, then train on it.

    The served version was trained on some snapshot; training on that one again would be a
    no-op (idempotence) and would not see the data that drifted. So the pair's snapshot is
    rebuilt from the current source first (validated like the data stage does; unchanged
    data gives the same digest), and the retrain trains on it with the drift in its tags.
    When no newer data exists, the result is ``skipped`` and its reason says so.

    Raises:
        TrainingError: the rebuilt data fails validation (nothing trains on it); see also
            :func:`modelyard.training.train.train_pair`.
    """
    from modelyard.pipeline.build import build_pair
    from modelyard.training.job import TrainingError
    from modelyard.training.train import train_pair

    built = build_pair(config, family, region)
    if built.status == "failed":
        raise TrainingError(f"{family}/{region}: drift retrain stopped, the newest data failed: {built.reason}")
    # Train on the snapshot just built (its digest, not whatever LATEST says by then).
    result = train_pair(config, family, region, tracking_uri=tracking_uri, tags=drift_tags(extra), digest=built.digest)
    if result.status != "unchanged":
        return result
    reason = (
        f"drift seen ({extra.get('reason', '')}), but no data newer than snapshot {result.data_digest} "
        "to retrain on: once data_processing ingests the recent bookings, it retrains"
    )
    return dataclasses.replace(result, status="skipped", reason=reason)


def drift_event(triggering: Mapping[Any, Iterable[Any]], family: str, region: str) -> dict[str, Any] | None:
    """The ``extra`` of the newest drift event of (family, region) among a run's triggering events, if any."""
    from modelyard.core.contracts.assets import drift_uri

    uri = drift_uri(family, region)
    extras = [dict(e.extra or {}) for events in triggering.values() for e in events if e.asset.uri == uri]
    return extras[-1] if extras else None


# ---------------------------------------------------------------- live quality


def outcomes_dir(config: Config, family: str, region: str) -> UPath:
    """Where outcomes of served requests land: CSV or Parquet with ``request_id``, ``record`` and the target.

    The data stage writes ``ingested-<digest>.parquet`` there when the dataset declares a
    ``request_id_column`` (``pipeline/outcomes.py``); a team may drop its own files beside them.
    """
    return config.storage.outcomes_dir / family / region


def live_quality(
    config: Config, served: ServedVersion, samples: SampleWindow, version: ModelVersion
) -> dict[str, float]:
    """Live AUC (classification) or MAE (regression) of the sampled requests whose outcome arrived.

    Outcomes are joined on the request id the server returned (``record``: the index of the
    record in its request, default 0). Returned next to the version's holdout figure; empty
    when no outcome matches a sampled request.
    """
    import numpy as np

    family = config.family(served.family)
    joined = _joined(outcomes_dir(config, served.family, served.region), samples, family.target)
    if not joined:
        return {}
    y, p = np.array([j[0] for j in joined], dtype=float), np.array([j[1] for j in joined])
    out = {"live_rows": float(len(joined))}
    holdout = version.tags or {}
    if family.task == "classification" and len(set(y.tolist())) == 2:
        from sklearn.metrics import roc_auc_score

        out["live_auc"] = float(roc_auc_score(y, p))
        if holdout.get("holdout_auc"):
            out["holdout_auc"] = float(holdout["holdout_auc"])
    elif family.task == "regression":
        out["live_mae"] = float(np.mean(np.abs(y - p)))
        if holdout.get("holdout_mae"):
            out["holdout_mae"] = float(holdout["holdout_mae"])
    return out


def _joined(folder: UPath, samples: SampleWindow, target: str) -> list[tuple[float, float]]:
    import pandas as pd

    files = sorted([*folder.glob("*.csv"), *folder.glob("*.parquet")]) if folder.is_dir() else []
    joined: dict[tuple[str, int], tuple[float, float]] = {}  # one outcome per record: snapshots repeat rows
    for path in files:
        with path.open("rb") as raw:  # a local folder or an object store
            frame = pd.read_parquet(raw) if path.suffix == ".parquet" else pd.read_csv(raw)
        if "request_id" not in frame.columns or target not in frame.columns:
            raise MonitoringError(
                f"{path}: outcomes need the columns 'request_id' and '{target}' (has {list(frame.columns)})"
            )
        records = frame["record"] if "record" in frame.columns else pd.Series(0, index=frame.index)
        for request_id, record, label in zip(frame["request_id"].astype(str), records, frame[target], strict=True):
            predictions = samples.by_request.get(request_id)
            if predictions is not None and 0 <= int(record) < len(predictions):
                joined[(request_id, int(record))] = (float(label), predictions[int(record)])
    return list(joined.values())
