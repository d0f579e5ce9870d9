"""One prune, for ``modelyard prune`` and the housekeeping DAG: model versions first, then the files they freed.

:func:`plan` reads the registry (and, when ``retention.versions`` is set, the deploy target's
plans) and decides; :func:`execute` deletes the versions (``version_retention``), reads the
registry again and removes the snapshots and files (``monitoring.retention``) that are still
unneeded, so a version whose deletion failed keeps the snapshot it was trained on. It lives in
the deploy layer because only the deploy target knows which versions its plans serve.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelyard.core.catalog import all_versions
from modelyard.deploy.rollout import version_retention
from modelyard.monitoring import retention

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from modelyard.core.config import Config
    from modelyard.core.config.retention import RetentionSettings
    from modelyard.deploy.rollout.helm_release import HelmReleases

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prune:
    """What one prune removes: model versions (None when versions are kept) and files."""

    chosen: list[tuple[str, str, str]]
    settings: RetentionSettings
    versions: version_retention.VersionPlan | None
    files: retention.PrunePlan

    @property
    def empty(self) -> bool:
        return not self.files.removals and not (self.versions and self.versions.removals)

    def describe(self) -> str:
        """``2 model versions of 1 model, 2 snapshots (452.4 kB); kept 6 snapshots, ...; kept 5 model versions, ...``"""
        parts = []
        if self.versions is not None and self.versions.removals:
            parts.append(version_retention.describe(self.versions.removals))
        if self.files.removals or not parts:
            parts.append(retention.describe(self.files.removals))
        kept = [retention.describe_kept(self.files)]
        kept += [version_retention.describe_kept(self.versions)] if self.versions is not None else []
        return f"{', '.join(parts)}; {'; '.join(kept)}"


@dataclass(frozen=True)
class PruneResult:
    versions: version_retention.VersionOutcome
    files: retention.PruneOutcome

    @property
    def failed(self) -> int:
        return len(self.versions.failed) + len(self.files.failed)


def plan(
    config: Config,
    client: MlflowClient,
    tracking_uri: str,
    *,
    families: list[str] | None = None,
    regions: list[str] | None = None,
    keep: int | None = None,
    sample_days: int | None = None,
    versions: int | None = None,
    monitoring_days: int | None = None,
    releaser: HelmReleases | None = None,
    option: str = "sample_days",
) -> Prune:
    """Decide what a prune removes; nothing is removed.

    Raises:
        RetentionError: a bad retention.
        ServedUnknownError: ``versions`` is set and the deploy target's plans cannot be read.
    """
    chosen_settings = retention.settings(
        config, keep, sample_days, option=option, versions=versions, monitoring_days=monitoring_days
    )
    chosen = retention.folders(config, families, regions)
    keep_versions = chosen_settings.versions
    # The deploy target first: when it cannot be read, nothing else is asked.
    served = version_retention.served_versions(config, tracking_uri, releaser) if keep_versions else None
    every = all_versions(client, [name for _, _, name in chosen])  # one registry read for the three plans
    version_plan = None
    if keep_versions is not None and served is not None:
        version_plan = version_retention.plan_versions(client, chosen, served, keep_versions, every)
    deleting = version_plan.deleted() if version_plan is not None else set()
    needed = retention.trained_on(client, chosen, deleting, every)
    days, limit = chosen_settings.monitoring_days, chosen_settings.monitoring_runs_per_prune
    runs = retention.old_monitoring_runs(client, config, chosen, days, every=every, limit=limit)
    files = retention.plan_prune(config, chosen, needed, chosen_settings, runs=runs)
    return Prune(chosen, chosen_settings, version_plan, files)


def execute(config: Config, client: MlflowClient, prune: Prune) -> PruneResult:
    """Delete the planned versions, then remove the files that are still unneeded (read the registry again)."""
    if prune.versions is None or not prune.versions.removals:
        return PruneResult(version_retention.VersionOutcome(), retention.prune(config, prune.files, client))
    deleted = version_retention.delete_versions(config, client, prune.versions)
    files = retention.still_unneeded(prune.files, retention.trained_on(client, prune.chosen))
    return PruneResult(deleted, retention.prune(config, files, client))


def run(
    config: Config,
    tracking_uri: str,
    *,
    families: list[str] | None = None,
    regions: list[str] | None = None,
    keep: int | None = None,
    sample_days: int | None = None,
    versions: int | None = None,
    monitoring_days: int | None = None,
    dry_run: bool = False,
    releaser: HelmReleases | None = None,
) -> dict[str, object]:
    """The housekeeping DAG's prune: plan, log each removal, remove (unless ``dry_run``).

    Returns:
        What was (or would be) removed and kept, for the task's XCom.

    Raises:
        RetentionError: a bad retention, or some removals failed (the others are done).
        ServedUnknownError: versions are pruned and the deploy target cannot be read (nothing is removed).
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri, tracking_uri)
    chosen = plan(
        config, client, tracking_uri, families=families, regions=regions, keep=keep, sample_days=sample_days,
        versions=versions, monitoring_days=monitoring_days, releaser=releaser,
    )  # fmt: skip
    verb = "would remove" if dry_run else "removing"
    for version in chosen.versions.removals if chosen.versions is not None else ():
        log.info("%s model version %s v%s (%s/%s): %s", verb, version.model, version.version, version.family,
                 version.region, version.detail)  # fmt: skip
    for removal in chosen.files.removals:
        size = "in MLflow" if removal.kind == "runs" else retention.size_text(removal.size)
        log.info("%s %s %s/%s %s: %s (%s)", verb, removal.kind, removal.family, removal.region, removal.name,
                 removal.detail, size)  # fmt: skip
    summary: dict[str, object] = {
        "kept": len(chosen.files.kept), "kept_for_versions": chosen.files.kept_for_versions, "dry_run": dry_run,
        "versions_kept": None if chosen.versions is None else len(chosen.versions.kept),
    }  # fmt: skip
    planned_versions = len(chosen.versions.removals) if chosen.versions is not None else 0
    if dry_run:
        log.info("dry run: would remove %s", chosen.describe())
        return {**summary, "removed": 0, "bytes": chosen.files.size, "versions_removed": 0,
                "versions_planned": planned_versions}  # fmt: skip
    result = execute(config, client, chosen)
    removed = retention.describe(result.files.removed)
    if result.versions.removed:
        versions_removed = version_retention.describe(result.versions.removed)
        removed = versions_removed if not result.files.removed else f"{versions_removed}, {removed}"
    log.info("removed %s; %s", removed, retention.describe_kept(chosen.files))
    for skipped, why in result.versions.skipped:
        log.info("%s v%s: %s", skipped.model, skipped.version, why)
    for removal, why in result.files.skipped:
        log.info("%s/%s %s: %s", removal.family, removal.region, removal.name, why)
    if result.failed:
        failed = [f"{r.model} v{r.version}: {why}" for r, why in result.versions.failed]
        failed += [f"{r.family}/{r.region} {r.kind} {r.name}: {why}" for r, why in result.files.failed]
        raise retention.RetentionError(f"{result.failed} removals failed (the others were done): {'; '.join(failed)}")
    return {
        **summary,
        "removed": sum(r.kind != "runs" for r in result.files.removed),  # snapshots and groups of files
        "bytes": sum(r.size for r in result.files.removed),
        "versions_removed": len(result.versions.removed),
        "versions_planned": planned_versions,
        "monitoring_runs_removed": sum(len(r.runs) for r in result.files.removed),
    }
