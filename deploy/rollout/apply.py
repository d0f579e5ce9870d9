"""The deploy entry point: pick the target (local process or Helm releases) and deploy to it.

``deploy(config, request)`` plans from the MLflow registry, reads what is live on the
target, runs the strategy's rollout (rolling back on failure) and says what happened, per
release (the local target is the one release ``local``). ``deploy_local`` is the short
form the demo uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard.deploy.rollout.request import LOCAL_RELEASE, DeployChoices, DeployRequest
from modelyard.deploy.rollout.staged_deploy import DeployResult, StagedDeploy, propose
from modelyard.deploy.rollout.strategies import DeployError, Target

if TYPE_CHECKING:
    from modelyard.core.config import Config
    from modelyard.deploy.rollout.kube_deploy import TargetFactory


def deploy(config: Config, request: DeployRequest, tracking_uri: str) -> list[DeployResult]:
    """Deploy to the requested target: one result per release (``local`` is one release).

    Raises:
        DeployError: the request cannot be planned (unknown names, no champion anywhere) or
            the target is unreachable before anything changed.
    """
    if request.target == "kubernetes":
        from modelyard.deploy.rollout.kube_deploy import deploy_kubernetes

        return deploy_kubernetes(config, request, tracking_uri)
    return [deploy_local(config, request, tracking_uri)]


def release_names(config: Config, request: DeployRequest) -> list[str]:
    """The releases a request deploys to: ``local``, or the selected Helm releases.

    Raises:
        DeployError: the release map is invalid or names an unknown release.
    """
    if request.target == "local":
        return [LOCAL_RELEASE]
    from modelyard.deploy.rollout.kube_deploy import release_regions

    return list(release_regions(config, request))


def deploy_release(config: Config, request: DeployRequest, release: str, tracking_uri: str) -> DeployResult:
    """Deploy one release, waiting here (the CLI; the DAG stages it and defers the waits).

    Raises:
        DeployError: the request cannot be planned or the target is unreachable.
    """
    staged = stage_release(config, request, release, tracking_uri)
    if staged.rollout is not None:
        staged.rollout.run()
    return staged.result_so_far()


def release_target(config: Config, request: DeployRequest, release: str, tracking_uri: str,
                   kube_targets: TargetFactory | None = None) -> Target:  # fmt: skip
    """The target of one release: the local process, or the release's ``HelmReleaseTarget``.

    Raises:
        DeployError: the release map is invalid or names an unknown release.
    """
    if request.target == "local":
        from modelyard.deploy.rollout.local_target import LocalTarget

        return LocalTarget.from_config(config, tracking_uri, port=request.port)
    from modelyard.deploy.rollout.kube_deploy import helm_targets, release_regions, served_regions

    regions = release_regions(config, request.for_release(release))[release]
    return (kube_targets or helm_targets(config))(release, served_regions(config, release, regions))


def stage_release(
    config: Config,
    request: DeployRequest,
    release: str,
    tracking_uri: str,
    kube_targets: TargetFactory | None = None,
) -> StagedDeploy:
    """Plan one release on top of what it serves; the rollout is ready to ``advance``.

    Raises:
        DeployError: the request cannot be planned or the target is unreachable.
    """
    if request.target == "local":
        return stage_local(config, request, tracking_uri)
    from modelyard.deploy.rollout.kube_deploy import helm_targets, release_regions
    from modelyard.deploy.rollout.kube_deploy import stage_release as stage_kube

    narrowed = request.for_release(release)
    regions = release_regions(config, narrowed)[release]
    return stage_kube(config, narrowed, release, regions, tracking_uri, kube_targets or helm_targets(config))


def deploy_local(config: Config, request: DeployRequest | None = None, tracking_uri: str | None = None) -> DeployResult:
    """Plan from the registry and roll out to the local serving process (started if not running).

    Without a request, the config's choices for the local target.

    Raises:
        DeployError: the request cannot be planned.
    """
    from modelyard.core.tracking import resolve_tracking_uri

    request = request or DeployRequest.resolve(config, DeployChoices(target="local"))
    staged = stage_local(config, request, tracking_uri or resolve_tracking_uri(config))
    if staged.rollout is not None:
        staged.rollout.run()
    return staged.result_so_far()


def stage_local(config: Config, request: DeployRequest, tracking_uri: str) -> StagedDeploy:
    """Plan for the local serving process on top of what it serves.

    Raises:
        DeployError: the request cannot be planned.
    """
    from modelyard.deploy.rollout.local_target import LocalTarget
    from modelyard.deploy.rollout.planner import PlannerError

    target = LocalTarget.from_config(config, tracking_uri, port=request.port)
    live = target.live()
    try:
        proposal = propose(config, request.plan_options(), live, tracking_uri)
    except PlannerError as exc:
        raise DeployError(str(exc)) from exc
    return StagedDeploy.start(target, live, proposal, request.model_copy(update={"target": "local"}), LOCAL_RELEASE)
