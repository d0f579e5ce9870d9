"""Deploying to Kubernetes release by release: the flow of ``deploy.rollout.apply`` per Helm release.

For every release of ``deploy.kubernetes.releases`` that the request touches:

1. read the plan the release serves (``/readyz`` and the plan ConfigMap, through its Service);
2. plan that release's regions from the registry (the release's sub-plan);
3. run the strategy through the release's ``HelmReleaseTarget`` (``deploy.rollout.helm_target``):
   each step renders the chart values with the step's plan, skips the upgrade when the release
   already runs that plan digest (no new Helm revision), upgrades with ``--rollback-on-failure
   --wait``, watches the rollout and smoke-tests through the Service; a failure rolls the
   release back and the rollout reports why.

Releases go one after the other and the first failure stops the deploy, so a bad plan
reaches one region group, not the fleet.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.deploy.rollout.planner import PlannerError, PlanOptions
from modelyard.deploy.rollout.request import DeployRequest
from modelyard.deploy.rollout.staged_deploy import DeployResult, StagedDeploy, propose
from modelyard.deploy.rollout.strategies import DeployError, Target
from modelyard.deploy.serving.plan import Plan

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from modelyard.core.config import Config
    from modelyard.deploy.rollout.helm_release import HelmReleases

TargetFactory = Callable[[str, list[str]], Target]


def release_regions(config: Config, request: DeployRequest) -> dict[str, list[str]]:
    """Release -> its regions that the request selects (every release when no region is given).

    Raises:
        DeployError: the release map is invalid, or a requested release is unknown.
    """
    from modelyard.deploy.rollout.releases import ShardingError, release_groups

    try:
        groups = release_groups(config)
    except ShardingError as exc:
        raise DeployError(str(exc)) from exc
    unknown = sorted(set(request.releases) - set(groups))
    if unknown:
        raise DeployError(f"unknown releases {unknown} (deploy.kubernetes.releases: {', '.join(groups)})")
    selected = {}
    for release, regions in groups.items():
        if request.releases and release not in request.releases:
            continue
        chosen = [r for r in regions if not request.regions or r in request.regions]
        if chosen:
            selected[release] = chosen
    return selected


def helm_targets(
    config: Config,
    api: ApiClient | None = None,
    kubeconfig: Path | None = None,
    releaser: HelmReleases | None = None,
) -> TargetFactory:
    """A factory of ``HelmReleaseTarget``s on the configured namespace and chart.

    The DAG passes the clients of ``KubernetesHook``/``HelmHook`` (``kubernetes_default``);
    without them (the CLI) ``api`` is the kubeconfig's current context (or the in-cluster
    service account) and ``releaser`` runs helm with ``--rollback-on-failure --wait``.
    """
    from modelyard.deploy.rollout.helm_release import HelmReleases, make_command
    from modelyard.deploy.rollout.helm_target import HelmReleaseTarget
    from modelyard.deploy.rollout.kube_smoke import SmokeRequest

    settings = config.deploy.kubernetes
    client = api or _api_client(kubeconfig)
    helm = releaser or HelmReleases(
        make_command(kubeconfig=kubeconfig, timeout_seconds=settings.timeout_seconds),
        settings.namespace,
        chart_path(config),
        settings.timeout_seconds,
    )
    smoke = [
        SmokeRequest(f.name, region)  # the record comes from what each served version reads
        for f in config.families
        for region in config.region_names
    ]

    def build(release: str, regions: list[str]) -> Target:
        return HelmReleaseTarget(
            helm, client, settings.namespace, release, regions,
            base_values=settings.values, timeout_seconds=settings.timeout_seconds, smoke_requests=smoke,
        )  # fmt: skip

    return build


def chart_path(config: Config) -> Path:
    """``deploy.kubernetes.chart``: absolute as given, else inside the installed package (the chart ships in it)."""
    from modelyard.deploy.rollout.helm_release import packaged_path

    return packaged_path(config.deploy.kubernetes.chart)


def _api_client(kubeconfig: Path | None) -> ApiClient:
    from kubernetes import config as kube_config

    try:
        return kube_config.new_client_from_config(config_file=str(kubeconfig) if kubeconfig else None)
    except kube_config.ConfigException:
        try:
            kube_config.load_incluster_config()
        except kube_config.ConfigException as exc:
            raise DeployError(
                "no Kubernetes credentials: set KUBECONFIG (or ~/.kube/config), run in a pod with a service "
                "account, or use the Airflow connection kubernetes_default"
            ) from exc
        from kubernetes.client import ApiClient

        return ApiClient()


def live_plans(
    config: Config, request: DeployRequest, targets: TargetFactory | None = None
) -> list[tuple[str, Plan | None, PlanOptions]]:
    """(release, the plan it serves or None, the planner options for it) per selected release."""
    build = targets or helm_targets(config)
    result = []
    for release, regions in release_regions(config, request).items():
        target = build(release, served_regions(config, release, regions))
        live = getattr(target, "live", lambda: None)()
        result.append((release, live, request.plan_options(regions)))
    return result


def deploy_kubernetes(
    config: Config, request: DeployRequest, tracking_uri: str, targets: TargetFactory | None = None
) -> list[DeployResult]:
    """Deploy release by release, waiting here; stop at the first release that was not deployed.

    Raises:
        DeployError: the request cannot be planned, or the cluster is unreachable.
    """
    build = targets or helm_targets(config)
    results: list[DeployResult] = []
    for release, regions in release_regions(config, request).items():
        staged = stage_release(config, request, release, regions, tracking_uri, build)
        if staged.rollout is not None:
            staged.rollout.run()
        result = staged.result_so_far()
        results.append(result)
        if not result.ok:
            break  # later releases keep what they serve
    return results


def stage_release(
    config: Config, request: DeployRequest, release: str, regions: list[str], tracking_uri: str, build: TargetFactory
) -> StagedDeploy:
    """Plan one release from the registry on top of what it serves; the rollout not started yet.

    Raises:
        DeployError: the release cannot be planned.
    """
    target = build(release, served_regions(config, release, regions))
    live: Plan | None = getattr(target, "live", lambda: None)()
    try:
        proposal = propose(config, request.plan_options(regions), live, tracking_uri)
    except PlannerError as exc:
        raise DeployError(f"release '{release}': {exc}") from exc
    if not request.dry_run:
        _record(config, release)
    return StagedDeploy.start(target, live, proposal, request.model_copy(update={"target": "kubernetes"}), release)


def _record(config: Config, release: str) -> None:
    """Record the release before anything changes, so a prune of model versions reads its plans (ADR 0036)."""
    from modelyard.deploy.rollout import release_records

    try:
        release_records.record(config, release)
    except OSError as exc:
        where = release_records.records_dir(config)
        raise DeployError(
            f"release '{release}': cannot record it under {where} ({exc}); nothing was changed. A prune of "
            "model versions reads the releases recorded there: make storage.root writable and deploy again"
        ) from exc


def served_regions(config: Config, release: str, selected: list[str]) -> list[str]:
    """Every region ``release`` serves (its ``selected`` regions when the release map does not list it)."""
    return list(config.deploy.kubernetes.releases.get(release, selected))


def render_release_values(config: Config, release: str, plan: Plan) -> dict[str, Any]:
    """The chart values one release gets for ``plan`` (``deploy.kubernetes.values`` + the sub-plan)."""
    from modelyard.deploy.rollout.releases import Shard, release_values

    regions = tuple(served_regions(config, release, sorted({s.region for s in plan.services})))
    return release_values(Shard(release, regions, plan), config.deploy.kubernetes.values)
