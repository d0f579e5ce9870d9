"""Retention of model versions: which registered versions a prune deletes, and what keeps the others (ADR 0036).

Only when ``retention.versions`` (or the run's own ``--versions``) is set. Per registered model of
the selection (each pair's, and each region group's pooled model), a version stays when:

- an **alias** holds it (``champion``, ``challenger``, ``previous-champion``, a team's own);
- it is one of the **newest** ``versions`` (a version training has just registered, before its alias);
- a **plan the deploy target holds** names it. A server loads its plan's versions from the registry
  when it starts, so a version can serve long after its alias moved on. Read here: on the local
  target, the plan the server serves (its admin API), its plan file and the ``last-good`` copy it
  falls back to; on Kubernetes, the plan of every revision in each release's Helm history (what
  ``helm rollback`` can restore, and what the pods of a rollout under way still serve).

**It fails closed.** If the deploy target cannot be read (no cluster access, helm fails, the
local server refuses the token, a plan file is unreadable), :class:`ServedUnknownError` is raised
and no version is deleted. Each deletion holds the model's promotion lock and reads its aliases
again first, so a promotion or a rollback in the meantime keeps what it points at.

What a deletion removes is the registry entry (``delete_model_version``): the training run, its
metrics, plots and logged model stay in the experiment, for review. The version's snapshot is then
no longer needed, and the same prune removes it (``monitoring.retention``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.core.catalog import aliases_of, all_versions
from modelyard.core.contracts.registry import PROMOTION_TAG
from modelyard.core.errors import ModelyardError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from modelyard.core.config import Config
    from modelyard.deploy.rollout.helm_release import HelmReleases
    from modelyard.deploy.serving.plan import Plan

log = logging.getLogger(__name__)

# model name -> version -> where a plan names it ("local plan file", "release r1 revision 3")
Served = dict[str, dict[str, list[str]]]
SERVED_REASONS = ("served at", "local ", "release ")


class ServedUnknownError(ModelyardError, ConnectionError):
    """The deploy target's plans cannot be read, so no version is deleted; the message says what failed."""


@dataclass(frozen=True)
class VersionRemoval:
    """One registered version a prune deletes."""

    family: str
    region: str  # a region, or a region group for a pooled model
    model: str
    version: str
    detail: str


@dataclass(frozen=True)
class VersionPlan:
    """The versions to delete and, per kept version, why it stays."""

    removals: tuple[VersionRemoval, ...]
    kept: dict[tuple[str, str], list[str]]  # (model, version) -> reasons

    def deleted(self) -> set[tuple[str, str]]:
        return {(removal.model, removal.version) for removal in self.removals}


@dataclass
class VersionOutcome:
    """What was deleted, what an alias moved onto since the plan (kept), and what failed."""

    removed: list[VersionRemoval] = field(default_factory=list)
    skipped: list[tuple[VersionRemoval, str]] = field(default_factory=list)
    failed: list[tuple[VersionRemoval, str]] = field(default_factory=list)


# ---------------------------------------------------------------- what the deploy target serves


def served_versions(config: Config, tracking_uri: str, releaser: HelmReleases | None = None) -> Served:
    """Every version a plan of the deploy target names, and where.

    The local target's plan files are read on every target (they are cheap and a laptop may hold
    some); the Kubernetes releases of :func:`kubernetes_releases` (``releaser``: the DAG's, from
    ``HelmHook``; else helm with the kubeconfig's current context).

    Raises:
        ServedUnknownError: a plan cannot be read.
    """
    plans = local_plans(config, tracking_uri)
    if releases := kubernetes_releases(config):
        plans += asyncio.run(release_plans(config, releaser, releases))
    return served_by(plans)


def kubernetes_releases(config: Config) -> dict[str, list[str]]:
    """``{namespace: [release, ...]}`` whose plans a prune reads: every release a deploy recorded
    (``release_records``: the form deploys to Kubernetes whatever ``deploy.target`` says), and the
    configured ones when ``deploy.target`` is ``kubernetes``.

    Raises:
        ServedUnknownError: the records cannot be read.
    """
    from modelyard.deploy.rollout import release_records
    from modelyard.deploy.rollout.releases import ShardingError, release_groups

    try:
        releases = release_records.recorded(config)
    except OSError as exc:
        where = release_records.records_dir(config)
        raise ServedUnknownError(
            f"cannot read which Kubernetes releases modelyard deployed ({where}: {exc}), so no version is deleted"
        ) from exc
    if config.deploy.target == "kubernetes":
        namespace = config.deploy.kubernetes.namespace
        try:
            configured = release_groups(config)
        except ShardingError as exc:
            raise ServedUnknownError(f"cannot tell the configured releases, so no version is deleted: {exc}") from exc
        releases[namespace] = sorted({*releases.get(namespace, []), *configured})
    return releases


def served_by(plans: Iterable[tuple[Plan, str]]) -> Served:
    """``{model name: {version: [where, ...]}}`` of the versions the ``(plan, where)`` name (aliases are left out)."""
    served: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for plan, where in plans:
        for uri in plan.model_uris():
            name, _, version = uri.removeprefix("models:/").rpartition("/")
            if name and version.isdigit() and where not in served[name][version]:
                served[name][version].append(where)
    return {name: dict(versions) for name, versions in served.items()}


def local_plans(config: Config, tracking_uri: str) -> list[tuple[Plan, str]]:
    """The local server's plan (admin API), its plan file and its ``last-good`` copy, those there are.

    Raises:
        ServedUnknownError: a server answers but refuses the token, or a plan file is unreadable.
    """
    from modelyard.deploy.rollout.local_target import LocalTarget
    from modelyard.deploy.rollout.strategies import TargetError
    from modelyard.deploy.serving.plan import PlanError, last_good_path, load_plan

    target = LocalTarget.from_config(config, tracking_uri, port=config.deploy.local.port)
    plans = []
    try:
        live = target.live()
    except TargetError as exc:
        raise ServedUnknownError(f"cannot read the plan the local server serves: {exc}") from exc
    if live is not None:
        plans.append((live, f"served at {target.url}"))
    for path, where in ((target.plan_file, "local plan file"), (last_good_path(target.plan_file), "local last-good")):
        if not Path(path).exists():
            continue
        try:
            plans.append((load_plan(path), where))
        except PlanError as exc:
            raise ServedUnknownError(f"{path}: cannot read the plan, so no version is deleted: {exc}") from exc
    return plans


async def release_plans(
    config: Config, releaser: HelmReleases | None = None, releases: Mapping[str, list[str]] | None = None
) -> list[tuple[Plan, str]]:
    """The plan of every revision in the Helm history of each release.

    ``releases``: ``{namespace: [release, ...]}`` (default: ``deploy.kubernetes.releases`` in its
    namespace). ``releaser`` reads them (another namespace: the same helm and cluster). A release
    never installed, or uninstalled since, has no history and names nothing.

    Raises:
        ServedUnknownError: helm cannot read a release's history or values, or a revision holds no readable plan.
    """
    from modelyard.deploy.rollout.helm_release import HelmReleaseError, HelmReleases, make_command
    from modelyard.deploy.rollout.kube_deploy import chart_path
    from modelyard.deploy.rollout.releases import ShardingError, release_groups
    from modelyard.deploy.serving.plan import PlanError, parse_plan

    settings = config.deploy.kubernetes
    helm = releaser or HelmReleases(
        make_command(timeout_seconds=settings.timeout_seconds),
        settings.namespace,
        chart_path(config),
        settings.timeout_seconds,
    )
    plans = []
    try:
        for namespace, names in (releases or {settings.namespace: list(release_groups(config))}).items():
            reader = helm if namespace == helm.namespace else helm.in_namespace(namespace)
            for release in names:
                named = release if namespace == settings.namespace else f"{namespace}/{release}"
                for revision in await reader.history(release):
                    values = await reader.values(release, revision.revision)
                    where = f"release {named} revision {revision.revision}"
                    if "plan" not in values:
                        raise ServedUnknownError(f"{where}: its values hold no plan (was it installed by modelyard?)")
                    plans.append((parse_plan(values["plan"], where), where))
    except (HelmReleaseError, ShardingError, PlanError) as exc:
        raise ServedUnknownError(
            f"cannot read what the Kubernetes releases serve, so no version is deleted: {exc}. Run the prune "
            "where helm reaches the cluster (the housekeeping DAG uses the connection kubernetes_default), "
            "or leave retention.versions unset"
        ) from exc
    return plans


# ---------------------------------------------------------------- which versions go


def plan_versions(
    client: MlflowClient,
    chosen: Iterable[tuple[str, str, str]],
    served: Mapping[str, Mapping[str, list[str]]],
    keep: int,
    every: Mapping[str, list[ModelVersion]] | None = None,
) -> VersionPlan:
    """The versions of the ``chosen`` models (``(family, region or group, model name)``) to delete.

    ``every``: their versions as :func:`core.catalog.all_versions` read them (None: read here).
    """
    chosen = list(chosen)
    folder_of = {name: (family, region) for family, region, name in chosen}
    held = aliases_of(client, folder_of)
    removals, kept = [], {}
    for name, versions in (every if every is not None else all_versions(client, folder_of)).items():
        family, region = folder_of[name]
        by_alias: dict[str, list[str]] = defaultdict(list)
        for alias, number in held.get(name, {}).items():
            by_alias[number].append(alias)
        ranked = sorted(versions, key=lambda v: int(v.version), reverse=True)
        for rank, version in enumerate(ranked):
            number = str(version.version)
            reasons = [*sorted(by_alias.get(number, [])), *([f"newest {keep}"] if rank < keep else [])]
            reasons += served.get(name, {}).get(number, [])
            if reasons:
                kept[(name, number)] = reasons
                continue
            removals.append(VersionRemoval(family, region, name, number, _detail(version)))
    return VersionPlan(tuple(removals), kept)


def _detail(version: ModelVersion) -> str:
    registered = dt.datetime.fromtimestamp((version.creation_timestamp or 0) / 1000, dt.UTC)
    outcome = (version.tags or {}).get(f"{PROMOTION_TAG}outcome")
    return f"registered {registered:%Y-%m-%d %H:%M} UTC" + (f"; {outcome}" if outcome else "; never decided")


def delete_versions(config: Config, client: MlflowClient, plan: VersionPlan) -> VersionOutcome:
    """Delete what ``plan`` lists, each model under its promotion lock, re-reading its aliases first.

    A version an alias points at now (a promotion or rollback since the plan) is kept; a deletion
    that fails is reported and the others go on.
    """
    from mlflow.exceptions import MlflowException

    from modelyard.promotion.aliases import aliases, pair_lock
    from modelyard.promotion.decision import PromotionError

    outcome = VersionOutcome()
    by_model: dict[str, list[VersionRemoval]] = defaultdict(list)
    for removal in plan.removals:
        by_model[removal.model].append(removal)
    for name, removals in by_model.items():
        try:
            with pair_lock(config, name):
                held = set(aliases(client, name).values())
                for removal in removals:
                    if removal.version in held:
                        outcome.skipped.append((removal, "an alias points at it again (since the plan); kept"))
                        continue
                    try:
                        client.delete_model_version(name, removal.version)
                    except MlflowException as exc:
                        outcome.failed.append((removal, exc.message))
                        continue
                    outcome.removed.append(removal)
        except (PromotionError, MlflowException) as exc:
            outcome.failed += [(removal, str(exc)) for removal in removals]
    return outcome


def describe(removals: Iterable[VersionRemoval]) -> str:
    """``3 model versions of 2 models``; ``nothing``."""
    removals = list(removals)
    if not removals:
        return "no model version"
    models = len({removal.model for removal in removals})
    return f"{_counted(len(removals), 'model version')} of {_counted(models, 'model')}"


def describe_kept(plan: VersionPlan) -> str:
    """``kept 12 model versions, 3 of them only because a plan names them``."""
    only_served = sum(all(why.startswith(SERVED_REASONS) for why in reasons) for reasons in plan.kept.values())
    return f"kept {_counted(len(plan.kept), 'model version')}, {only_served} of them only because a plan names them"


def _counted(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"
