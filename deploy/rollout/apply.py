"""The deploy entry point: pick the target (local process or Helm releases) and deploy to it.

``deploy(config, request)`` plans from the MLflow registry, reads what is live on the
target, runs the strategy's rollout (rolling back on failure) and says what happened, per
release (the local target is the one release ``local``). ``deploy_local`` is the short
form the demo uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard.deploy.rollout.request import LOCAL_RELEASE, DeployRequest, DeployResult, propose, rollout_to
from modelyard.deploy.rollout.strategies import DeployError

if TYPE_CHECKING:
    from modelyard.pipeline.config import Config


def deploy(config: Config, request: DeployRequest, tracking_uri: str) -> list[DeployResult]:
    """Deploy to the requested target: one result per release (``local`` is one release).

    Raises:
        DeployError: the request cannot be planned (unknown names, no champion anywhere) or
            the target is unreachable before anything changed.
    """
    if request.target_name(config) == "kubernetes":
        from modelyard.deploy.rollout.kube_target import deploy_kubernetes

        return deploy_kubernetes(config, request, tracking_uri)
    return [deploy_local(config, request, tracking_uri)]


def release_names(config: Config, request: DeployRequest) -> list[str]:
    """The releases a request deploys to: ``local``, or the selected Helm releases.

    Raises:
        DeployError: the release map is invalid or names an unknown release.
    """
    if request.target_name(config) == "local":
        return [LOCAL_RELEASE]
    from modelyard.deploy.rollout.kube_target import release_regions

    return list(release_regions(config, request))


def deploy_release(config: Config, request: DeployRequest, release: str, tracking_uri: str) -> DeployResult:
    """Deploy one release (the DAG maps this over ``release_names``).

    Raises:
        DeployError: the request cannot be planned or the target is unreachable.
    """
    if request.target_name(config) == "local":
        return deploy_local(config, request, tracking_uri)
    from modelyard.deploy.rollout.kube_target import deploy_kubernetes

    return deploy_kubernetes(config, request.model_copy(update={"releases": [release]}), tracking_uri)[0]


def deploy_local(config: Config, request: DeployRequest | None = None, tracking_uri: str | None = None) -> DeployResult:
    """Plan from the registry and roll out to the local serving process (started if not running).

    Raises:
        DeployError: the request cannot be planned.
    """
    from modelyard.deploy.rollout.local_target import LocalTarget
    from modelyard.deploy.rollout.planner import PlannerError
    from modelyard.training.train import resolve_tracking_uri

    request = request or DeployRequest(target="local")
    uri = tracking_uri or resolve_tracking_uri(config)
    target = LocalTarget.from_config(config, uri, port=request.port)
    live = target.live()
    try:
        proposal = propose(config, request.options(config), live, uri)
    except PlannerError as exc:
        raise DeployError(str(exc)) from exc
    return rollout_to(target, live, proposal, request.model_copy(update={"target": "local"}), config, LOCAL_RELEASE)
