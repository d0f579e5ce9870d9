"""Deploy: the deploy target's settings (local or Kubernetes), the rollout strategy and time windows."""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from modelyard.core.config.base import Section

log = logging.getLogger(__name__)


class LocalTargetConfig(Section):
    """The ``local`` deploy target: the embedded serving process on this host."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)


class KubernetesTargetConfig(Section):
    """The ``kubernetes`` deploy target: Helm releases of the serving chart, each serving a group of regions."""

    namespace: str = "modelyard"
    # A relative path names a chart shipped inside the package; an absolute one, a chart of your own.
    chart: str = "helm/modelyard-serving"
    timeout_seconds: int = Field(600, ge=1)
    releases: dict[str, list[str]] = {}
    # Chart values every release gets (image, mlflow.existingSecret, resources, ...); the plan is added per release.
    values: dict[str, Any] = {}


class RolloutSettings(Section):
    """How a new plan is rolled out (strategy, canary steps) and when a step counts as failed."""

    strategy: Literal["rolling", "canary", "blue-green", "shadow"] = "rolling"
    canary_steps: list[int] = [10, 50, 100]
    analysis_seconds: float = Field(20, ge=0)
    max_error_rate: float = Field(0.01, ge=0, le=1)
    max_p99_ms: float = Field(100, gt=0)
    # A canary step is judged only once the canary variant answered this many requests.
    min_requests: int = Field(20, ge=1)

    @field_validator("canary_steps")
    @classmethod
    def _increasing_percentages(cls, steps: list[int]) -> list[int]:
        if not steps or steps != sorted(set(steps)) or steps[0] <= 0 or steps[-1] != 100:
            raise ValueError("canary_steps must be increasing percentages ending at 100, e.g. [10, 50, 100]")
        return steps


class DeployWindow(Section):
    """Route a (family, region) to the version an MLflow alias names while a local-time window holds.

    Conditions combine with AND: ``festivals`` (the region's festival dates), ``weekdays``,
    ``hours`` ([start, end) local hours; start > end wraps past midnight). A model without
    the alias is served as usual. A festival window is planned with the region's festivals not
    over yet; with none left it is left out (and the aliased version is not loaded).
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_\-]*$")
    alias: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    families: list[str] = []
    regions: list[str] = []
    festivals: bool = False
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = []
    hours: tuple[int, int] | None = None

    @model_validator(mode="after")
    def _has_condition(self) -> DeployWindow:
        if not (self.festivals or self.weekdays or self.hours):
            raise ValueError(f"window '{self.name}' has no condition: set festivals, weekdays and/or hours")
        if self.hours and not (
            0 <= self.hours[0] <= 23 and 1 <= self.hours[1] <= 24 and self.hours[0] != self.hours[1]
        ):
            raise ValueError(f"window '{self.name}': hours must be [start 0-23, end 1-24] with start != end")
        return self


class DeploySettings(Section):
    """Where plans are applied (the deploy target), how they roll out, and the time windows."""

    target: Literal["local", "kubernetes"] = "local"
    local: LocalTargetConfig = LocalTargetConfig()
    kubernetes: KubernetesTargetConfig = KubernetesTargetConfig()
    rollout: RolloutSettings = RolloutSettings()
    windows: list[DeployWindow] = []


def follow_regions(deploy: DeploySettings, regions: list[str]) -> DeploySettings:
    """``deploy`` with a release map that names only configured regions.

    Without ``deploy.kubernetes.releases`` every region is served by one release (see
    ``deploy/rollout/releases.py``). A release naming a region that is no longer configured
    fails for the ``kubernetes`` target (the release would serve nothing there); for the
    ``local`` target the map is unused, so the region is dropped with a logged note (and a
    release left without regions with it), and removing a region stays a one-line change.

    Raises:
        ValueError: the target is ``kubernetes`` and a release names an unknown region.
    """
    releases = deploy.kubernetes.releases
    unknown = {name: sorted(set(listed) - set(regions)) for name, listed in releases.items()}
    unknown = {name: missing for name, missing in unknown.items() if missing}
    if not unknown:
        return deploy
    described = "; ".join(f"'{name}' names {missing}" for name, missing in unknown.items())
    if deploy.target == "kubernetes":
        raise ValueError(
            f"deploy.kubernetes.releases: {described}, which are not in regions ({', '.join(regions)}); "
            "remove them from the release (or delete the releases map to serve every region from one release)"
        )
    log.warning("deploy.kubernetes.releases: %s, which are not in regions; ignored (deploy.target is local)", described)
    kept = {name: [r for r in listed if r in regions] for name, listed in releases.items()}
    kubernetes = deploy.kubernetes.model_copy(update={"releases": {n: rs for n, rs in kept.items() if rs}})
    return deploy.model_copy(update={"kubernetes": kubernetes})
