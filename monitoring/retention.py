"""Retention: what ``modelyard prune`` and the housekeeping DAG remove from storage (ADR 0035).

Storage grows with every build that brings new data (a content-addressed snapshot of each pair)
and every hour a server runs (a prediction-log file per server and rotation). Nothing else ever
removes them. :func:`plan_prune` decides, per (family, region) and per (family, region group):

- **snapshots** other than those still needed. Kept: the one ``LATEST`` names (what training reads
  next); the newest ``retention.snapshots``; every snapshot a registered model version was trained
  on (its ``data_digest`` tag: the gates' holdout, the monitoring reference and the lineage shown in
  MLflow read it); every member snapshot a registered pooled version stacked (its
  ``pooled_snapshots`` tag). A snapshot is its JSON, its Parquet and its report.
- **unpublished data files**: a ``<digest>.parquet`` or report that no JSON names, left by a build
  that died before publishing, once a day old (younger, it may be a build publishing right now).
- **prediction-log files** published more than ``retention.sample_days`` ago (the config refuses a
  retention shorter than ``monitoring.window_hours``, so the monitoring stage never misses one), and
  the data stage's ``ingested-<digest>.parquet`` outcome files written as long ago (they answer
  requests older than that, whose samples are gone; a team's own outcome files stay);
- **monitoring runs** in MLflow started more than ``retention.monitoring_days`` ago, except the
  run each version's ``monitoring.run_id`` tag names (its latest measurement), deleted softly.

The registry is read before anything is removed; if it cannot be read, nothing is. :func:`prune`
removes a snapshot JSON first (what makes a snapshot exist), so a prune that stops midway leaves
only unpublished data files, which the next prune removes; and it reads ``LATEST`` again just
before, so a build that pointed ``LATEST`` at an old snapshot in the meantime keeps it. Model
versions are not removed here: ``deploy.rollout.version_retention`` does that (it must read the
deploy target's plans), and ``deploy.rollout.pruning`` runs both, versions first; a version deleted
in the MLflow UI frees its snapshot the same way.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import threading
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from modelyard.core.catalog import all_versions
from modelyard.core.config.retention import RetentionSettings, check_sample_days
from modelyard.core.contracts import prediction_log
from modelyard.core.contracts.registry import POOLED_SNAPSHOTS_TAG, monitoring_tag
from modelyard.core.errors import ModelyardError
from modelyard.pipeline import outcomes, snapshots

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from upath import UPath

    from modelyard.core.config import Config

log = logging.getLogger(__name__)

# A build that has written its data file but not yet its JSON is publishing; one older than this died.
UNPUBLISHED_GRACE = dt.timedelta(days=1)
_DATA_FILE = re.compile(r"^(?P<digest>[0-9a-f]{16})\.(parquet|report\.html)$")

Kind = Literal["snapshot", "unpublished", "samples", "outcomes", "runs"]
RUNS_PER_PAGE = 1000
# Monitoring runs are deleted one request each (MLflow has no batch delete): a few in flight at once.
DELETING_THREADS = 4


class RetentionError(ModelyardError, ValueError):
    """A retention the monitoring stage cannot live with, or removals that failed; the message names them."""


@dataclass(frozen=True)
class Removal:
    """One thing a prune removes: a snapshot, an unpublished data file, a version's old sample files, or a
    pair's old monitoring runs in MLflow."""

    kind: Kind
    family: str
    region: str  # a region, or a region group for a pooled model's snapshots
    name: str  # the digest, the file name, "v<version>", or "monitoring runs"
    detail: str
    files: tuple[UPath, ...]  # in the order they are removed
    size: int
    runs: tuple[str, ...] = ()  # MLflow run ids (kind "runs")


@dataclass(frozen=True)
class PrunePlan:
    """What a prune removes, and why each snapshot that stays is kept."""

    removals: tuple[Removal, ...]
    kept: dict[tuple[str, str, str], list[str]]  # (family, region, digest) -> reasons

    @property
    def size(self) -> int:
        return sum(removal.size for removal in self.removals)

    @property
    def kept_for_versions(self) -> int:
        """Kept snapshots that a registered version was trained on (or pooled)."""
        return sum(any(why.startswith(("trained", "pooled")) for why in reasons) for reasons in self.kept.values())

    @property
    def files(self) -> int:
        return sum(len(removal.files) for removal in self.removals)


@dataclass
class PruneOutcome:
    """What a prune removed, and the removals it could not finish (with the reason)."""

    removed: list[Removal] = field(default_factory=list)
    skipped: list[tuple[Removal, str]] = field(default_factory=list)
    failed: list[tuple[Removal, str]] = field(default_factory=list)


def settings(
    config: Config,
    keep: int | None = None,
    sample_days: int | None = None,
    *,
    option: str = "sample_days",
    versions: int | None = None,
    monitoring_days: int | None = None,
) -> RetentionSettings:
    """``retention`` with a run's own ``keep`` (snapshots), ``sample_days``, ``versions`` and ``monitoring_days`` over
    it, checked like the config.

    Raises:
        RetentionError: fewer days of prediction logs than ``monitoring.window_hours`` reads (named ``option``).
    """
    given = {"snapshots": keep, "sample_days": sample_days, "versions": versions, "monitoring_days": monitoring_days}
    chosen = config.retention.model_copy(update={key: value for key, value in given.items() if value is not None})
    try:
        check_sample_days(chosen, config.monitoring.window_hours)
    except ValueError as exc:
        raise RetentionError(str(exc).replace("retention.sample_days", option)) from exc
    return chosen


def folders(config: Config, families: list[str] | None, regions: list[str] | None) -> list[tuple[str, str, str]]:
    """``(family, region or group, registered model name)`` of every selected pair and of the groups serving them."""
    pairs = config.pairs(families, regions)
    pooled = [(family, group, config.pooled_model_name(family, group)) for family, group in config.pooled_pairs(pairs)]
    return [*((family, region, config.mlflow.model_name(family, region)) for family, region in pairs), *pooled]


def trained_on(
    client: MlflowClient,
    chosen: Iterable[tuple[str, str, str]],
    deleting: Collection[tuple[str, str]] = (),
    every: Mapping[str, list[ModelVersion]] | None = None,
) -> dict[tuple[str, str, str], list[str]]:
    """``{(family, region, digest): ["trained v3", "pooled v1 (country-id)"]}`` from every registered version.

    ``deleting``: ``(model name, version)`` the same prune deletes first; they keep nothing.
    ``every``: the chosen models' versions as :func:`core.catalog.all_versions` read them (None: read here).
    """
    chosen = list(chosen)
    folder_of = {name: (family, region) for family, region, name in chosen}
    reasons: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for name, versions in (every if every is not None else all_versions(client, folder_of)).items():
        family, region = folder_of[name]
        for version in sorted(versions, key=lambda v: int(v.version)):
            if (name, str(version.version)) in deleting:
                continue
            tags = version.tags or {}
            if tags.get("data_digest"):
                reasons[(family, region, tags["data_digest"])].append(f"trained v{version.version}")
            for member in filter(None, tags.get(POOLED_SNAPSHOTS_TAG, "").split(",")):
                member_region, _, digest = member.partition("=")
                reasons[(family, member_region, digest)].append(f"pooled v{version.version} ({region})")
    return reasons


def old_monitoring_runs(
    client: MlflowClient,
    config: Config,
    chosen: Iterable[tuple[str, str, str]],
    days: int | None,
    *,
    now: dt.datetime | None = None,
    every: Mapping[str, list[ModelVersion]] | None = None,
    limit: int | None = None,
) -> list[Removal]:
    """Per selected pair, its monitoring runs started more than ``days`` ago; none when ``days`` is None.

    Every hourly measurement of every served version is a run (experiment ``<project>/<family>/monitoring``).
    A run a version's ``monitoring.run_id`` tag names (its latest measurement, linked from the
    version's page) stays whatever its age. At most ``limit`` runs (default
    ``retention.monitoring_runs_per_prune``), the oldest first over every selected family: the first
    prune of a registry that kept months of them stays within its task's timeout, and the next
    prunes take the rest.
    """
    if days is None:
        return []
    chosen = list(chosen)
    limit = limit or config.retention.monitoring_runs_per_prune
    cutoff = int(((now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=days)).timestamp() * 1000)
    linked = _linked_runs(every if every is not None else all_versions(client, [name for _, _, name in chosen]))
    regions: dict[str, set[str]] = defaultdict(set)
    for family, region, _ in chosen:
        regions[family].add(region)
    family_of = {}
    for family in regions:
        experiment = client.get_experiment_by_name(f"{config.project}/{family}/monitoring")
        if experiment is not None:
            family_of[experiment.experiment_id] = family
    old: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    taken, more = 0, False
    for run in _runs_before(client, list(family_of), cutoff) if family_of else ():
        family, region = family_of[run.info.experiment_id], run.data.tags.get("region", "")
        if region not in regions[family] or run.info.run_id in linked:
            continue
        if taken == limit:
            more = True
            break
        old[(family, region)].append((run.info.run_id, run.info.start_time or 0))
        taken += 1
    removals = []
    for (family, region), found in sorted(old.items()):
        newest = dt.datetime.fromtimestamp(max(start for _, start in found) / 1000, dt.UTC)
        detail = f"{_counted(len(found), 'monitoring run')}, the newest started {newest:%Y-%m-%d %H:%M} UTC"
        if more:
            detail += f" (a prune deletes the oldest {limit:,}; the next prune takes the rest)"
        runs = tuple(sorted(run_id for run_id, _ in found))
        removals.append(Removal("runs", family, region, "monitoring runs", detail, (), 0, runs))
    return removals


def _runs_before(client: MlflowClient, experiment_ids: list[str], cutoff_ms: int) -> Iterable[Any]:
    """Every run of ``experiment_ids`` started before ``cutoff_ms``, the oldest first, a page at a time."""
    token: str | None = None
    while True:
        page = client.search_runs(
            experiment_ids,
            f"attributes.start_time < {cutoff_ms}",
            max_results=RUNS_PER_PAGE,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        yield from page
        token = page.token
        if not token:
            return


def _linked_runs(every: Mapping[str, list[ModelVersion]]) -> set[str]:
    """The run ids the ``monitoring.run_id`` / ``monitoring.<region>.run_id`` tags of every version name."""
    linked = set()
    for versions in every.values():
        for version in versions:
            linked |= {value for key, value in (version.tags or {}).items() if _is_run_link(key)}
    return linked


def _is_run_link(key: str) -> bool:
    return key.startswith(monitoring_tag("")) and key.endswith("run_id")


def plan_prune(
    config: Config,
    chosen: list[tuple[str, str, str]],
    needed: dict[tuple[str, str, str], list[str]],
    kept: RetentionSettings | None = None,
    *,
    now: dt.datetime | None = None,
    runs: Iterable[Removal] = (),
) -> PrunePlan:
    """What to remove under ``chosen`` folders, keeping ``needed`` snapshots (from :func:`trained_on`).

    ``kept`` says how many snapshots and days of prediction logs stay (default: ``retention``, see
    :func:`settings`); ``runs``: the old monitoring runs (from :func:`old_monitoring_runs`).
    """
    now = now or dt.datetime.now(dt.UTC)
    kept_settings = kept or config.retention
    keep = kept_settings.snapshots
    removals: list[Removal] = []
    reasons: dict[tuple[str, str, str], list[str]] = {}
    features = config.storage.features_dir
    for family, region, _ in chosen:
        planned, why = _snapshots(features, family, region, needed, keep, now)
        removals += planned
        reasons.update(why)
    cutoff = now - dt.timedelta(days=kept_settings.sample_days)
    for family, region, _ in chosen:
        removals += _old_samples(config.storage.samples_dir / family / region, family, region, cutoff)
        removals += _old_outcomes(config.storage.outcomes_dir / family / region, family, region, cutoff)
    removals += runs
    return PrunePlan(tuple(removals), reasons)


def _snapshots(
    features: UPath,
    family: str,
    region: str,
    needed: dict[tuple[str, str, str], list[str]],
    keep: int,
    now: dt.datetime,
) -> tuple[list[Removal], dict[tuple[str, str, str], list[str]]]:
    folder = snapshots.snapshot_dir(features, family, region)
    if not folder.is_dir():
        return [], {}
    published = snapshots.list_snapshots(features, family, region)
    latest = snapshots.latest_digest(features, family, region)
    removals, kept = [], {}
    for rank, meta in enumerate(published):
        key = (family, region, meta.digest)
        reasons = [*(["LATEST"] if meta.digest == latest else []), *([f"newest {keep}"] if rank < keep else [])]
        reasons += sorted(needed.get(key, []), key=lambda why: why.startswith("pooled"))  # its own model's first
        if reasons:
            kept[key] = reasons
            continue
        files = [folder / f"{meta.digest}.json", meta.path(features)]
        report = meta.report_path(features)
        files += [report] if report is not None else []
        window = f"{meta.time_min:%Y-%m-%d} to {meta.time_max:%Y-%m-%d}"
        built = f"built {meta.created_at:%Y-%m-%d %H:%M} UTC; {meta.rows} rows, {window}"
        removals.append(Removal("snapshot", family, region, meta.digest, built, *_sized(files)))
    names = {meta.digest for meta in published} | ({latest} if latest else set())
    for path in sorted(folder.iterdir()):
        match = _DATA_FILE.match(path.name)
        if match is None or match["digest"] in names:
            continue
        stat = path.stat()
        if dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC) > now - UNPUBLISHED_GRACE:
            continue
        detail = f"no snapshot names it; written {dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC):%Y-%m-%d %H:%M} UTC"
        removals.append(Removal("unpublished", family, region, path.name, detail, (path,), stat.st_size))
    return removals, kept


def _old_samples(folder: UPath, family: str, region: str, cutoff: dt.datetime) -> list[Removal]:
    if not folder.is_dir():
        return []
    removals = []
    versions = [path for path in folder.iterdir() if path.is_dir() and not path.name.startswith(".")]
    for version in sorted(versions, key=lambda p: (len(p.name), p.name)):
        old = _older(version.glob(f"*{prediction_log.SUFFIX}"), cutoff, "prediction-log files")
        removals += [Removal("samples", family, region, f"v{version.name}", *old)] if old else []
    return removals


def _old_outcomes(folder: UPath, family: str, region: str, cutoff: dt.datetime) -> list[Removal]:
    """The data stage's own outcome files (``ingested-<digest>.parquet``) written before ``cutoff``.

    Each holds the outcomes of requests made before it was written, so one older than the
    prediction logs kept can only match samples already removed. A team's own files stay.
    """
    if not folder.is_dir():
        return []
    old = _older(folder.glob(f"{outcomes.PREFIX}*.parquet"), cutoff, "ingested outcome files")
    return [Removal("outcomes", family, region, "ingested", *old)] if old else []


def _older(paths: Iterable[UPath], cutoff: dt.datetime, what: str) -> tuple[str, tuple[UPath, ...], int] | None:
    """(detail, files, bytes) of the ``paths`` last written before ``cutoff``; None when there is none."""
    old = []
    for path in sorted(paths):
        stat = path.stat()
        if stat.st_mtime < cutoff.timestamp():
            old.append((path, stat.st_size, stat.st_mtime))
    if not old:
        return None
    newest = dt.datetime.fromtimestamp(max(at for _, _, at in old), dt.UTC)
    detail = f"{len(old)} {what}, the newest written {newest:%Y-%m-%d %H:%M} UTC"
    return detail, tuple(path for path, _, _ in old), sum(size for _, size, _ in old)


def _sized(files: list[UPath]) -> tuple[tuple[UPath, ...], int]:
    size = 0
    for path in files:
        try:
            size += path.stat().st_size
        except FileNotFoundError:
            continue
    return tuple(files), size


def still_unneeded(plan: PrunePlan, needed: dict[tuple[str, str, str], list[str]]) -> PrunePlan:
    """``plan`` without the snapshots ``needed`` (read again) names: a version whose deletion failed keeps its own."""
    removals = tuple(r for r in plan.removals if r.kind != "snapshot" or (r.family, r.region, r.name) not in needed)
    kept = dict(plan.kept)
    for r in plan.removals:
        if r not in removals:
            kept[(r.family, r.region, r.name)] = needed[(r.family, r.region, r.name)]
    return PrunePlan(removals, kept)


def prune(config: Config, plan: PrunePlan, client: MlflowClient | None = None) -> PruneOutcome:
    """Remove what ``plan`` lists; a removal that fails is reported and the others go on.

    ``client`` deletes the monitoring runs (MLflow's soft delete: ``mlflow gc`` purges them).
    """
    outcome = PruneOutcome()
    features = config.storage.features_dir
    for removal in plan.removals:
        if removal.kind == "runs":
            _delete_runs(client, removal, outcome)
            continue
        if (
            removal.kind == "snapshot"
            and snapshots.latest_digest(features, removal.family, removal.region) == removal.name
        ):
            outcome.skipped.append((removal, "LATEST points at it again (a build since the plan); kept"))
            continue
        try:
            for path in removal.files:
                path.unlink(missing_ok=True)
        except OSError as exc:
            outcome.failed.append((removal, f"{type(exc).__name__}: {exc}"))
            continue
        outcome.removed.append(removal)
        if removal.kind == "samples" and config.storage.is_local:
            _remove_if_empty(removal.files[0].parent)
    return outcome


def _delete_runs(client: MlflowClient | None, removal: Removal, outcome: PruneOutcome) -> None:
    """Delete ``removal``'s runs, a few requests at a time. The first failure stops the rest, and the
    prune's next groups of runs are not tried (a server that is down would otherwise be retried once
    per run)."""
    from mlflow.exceptions import MlflowException

    refused = next((f"{r.family}/{r.region}" for r, _ in outcome.failed if r.kind == "runs"), None)
    if client is None or refused is not None:
        why = f"not tried, since deleting {refused}'s failed" if refused else "no MLflow client to delete runs with"
        outcome.failed.append((removal, why))
        return
    stop = threading.Event()
    errors: list[str] = []

    def delete(run_id: str) -> bool:
        if stop.is_set():
            return False
        try:
            client.delete_run(run_id)
        except MlflowException as exc:
            stop.set()
            errors.append(f"run {run_id}: {exc.message}")
            return False
        return True

    with ThreadPoolExecutor(DELETING_THREADS, thread_name_prefix="prune-runs") as pool:
        deleted = sum(pool.map(delete, removal.runs))
    if errors:
        outcome.failed.append((removal, f"deleted {deleted} of {len(removal.runs)}, then {errors[0]}"))
        return
    outcome.removed.append(removal)


def _remove_if_empty(folder: UPath) -> None:
    # os.rmdir removes only an empty folder (a server still writing there keeps it); UPath's rmdir recurses.
    try:
        os.rmdir(folder.path)
    except OSError:
        return


def describe(removals: Iterable[Removal]) -> str:
    """``2 snapshots, 1 unpublished data file and 12 prediction-log files of 2 versions (4.1 MB)``; ``nothing``."""
    removals = list(removals)
    samples = [r for r in removals if r.kind == "samples"]
    counts = {
        "snapshot": sum(r.kind == "snapshot" for r in removals),
        "unpublished data file": sum(r.kind == "unpublished" for r in removals),
        "ingested outcome file": sum(len(r.files) for r in removals if r.kind == "outcomes"),
        "prediction-log file": sum(len(r.files) for r in samples),
    }
    runs = sum(len(r.runs) for r in removals if r.kind == "runs")
    parts = [_counted(n, what) for what, n in counts.items() if n]
    if samples:
        parts[-1] += f" of {_counted(len(samples), 'version')}"
    if not parts and not runs:
        return "nothing"
    if not parts:
        return _counted(runs, "monitoring run")
    listed = parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
    listed = f"{listed} ({size_text(sum(r.size for r in removals))})"
    return f"{listed} and {_counted(runs, 'monitoring run')}" if runs else listed


def describe_kept(plan: PrunePlan) -> str:
    """``kept 9 snapshots, 6 of them for registered versions``; ``no snapshot published yet``."""
    if not plan.kept:
        return "no snapshot published yet"
    return f"kept {_counted(len(plan.kept), 'snapshot')}, {plan.kept_for_versions} of them for registered versions"


def _counted(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def size_text(size: int) -> str:
    """``226.2 kB``."""
    from rich.filesize import decimal

    return decimal(size)
