"""The Kubernetes deploy target: one Helm release, upgraded, watched, smoke-tested, rolled back.

1. ``helm upgrade --install --rollback-on-failure --wait`` (``deploy.rollout.helm_release``);
   the same values twice make no new revision and nothing else happens.
2. The Deployment's rollout is watched until complete (``deploy.rollout.deployment_status``).
3. The smoke test goes through the Service (``deploy.rollout.kube_smoke``).
4. On a failure the release goes back to its last good revision (``helm rollback``) and
   :class:`RolledBackError` says why.

:class:`HelmReleaseTarget` is the ``Target`` a rollout strategy drives; it splits a step into
``begin`` (upgrade), the wait (here, or deferred to ``RolloutReadyTrigger``) and ``finish``
(smoke test or rollback). :func:`deploy_shard` and :func:`apply_plan` apply a shard or a whole
plan in one go (the Kubernetes calls run in a thread).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from modelyard.core.errors import ModelyardError
from modelyard.deploy.rollout.deployment_status import (
    RolloutError,
    RolloutFailedError,
    RolloutStatus,
    RolloutTimeoutError,
    failure_reasons,
    wait_for_rollout,
)
from modelyard.deploy.rollout.helm_release import HelmReleaseError, UpgradeResult
from modelyard.deploy.rollout.kube_proxy import merge_expositions, proxy_request, scrape_pods
from modelyard.deploy.rollout.kube_smoke import SmokeRequest, SmokeTestError, active_plan_digest, smoke_test
from modelyard.deploy.rollout.releases import Shard, release_values, split_plan
from modelyard.deploy.serving.plan import Plan

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

CHART_NAME = "modelyard-serving"


class RolledBackError(ModelyardError, RuntimeError):
    """A deploy failed and the release was rolled back (or could not be); the message says why."""

    def __init__(self, release: str, reason: str, restored_revision: int | None, *, by_helm: bool = False) -> None:
        self.release = release
        self.reason = reason
        self.restored_revision = restored_revision
        self.by_helm = by_helm
        if by_helm:
            action = "was rolled back by helm (--rollback-on-failure) to its previous revision, if it had one"
        elif restored_revision is not None:
            action = f"rolled back to revision {restored_revision}"
        else:
            action = "NOT rolled back: no earlier good revision (fix the cause, then deploy again or uninstall)"
        super().__init__(f"release '{release}' {action}; reason: {reason}")


@dataclass(frozen=True)
class KubernetesDeployResult:
    """The outcome of applying one shard."""

    release: str
    revision: int
    changed: bool
    plan_digest: str
    rollout: RolloutStatus | None = None


class Releaser(Protocol):
    """What the target needs from Helm (``deploy.rollout.helm_release.HelmReleases`` provides it)."""

    async def upgrade(self, release: str, values: dict[str, Any], *, description: str = "") -> UpgradeResult: ...

    async def last_good_revision(self, release: str) -> int | None: ...

    async def rollback(self, release: str, revision: int) -> None: ...


def deployment_name(release: str, chart: str = CHART_NAME) -> str:
    """The name the chart gives its objects (mirrors ``modelyard-serving.fullname``)."""
    name = release if chart in release else f"{release}-{chart}"
    return name[:63].rstrip("-")


async def deploy_shard(
    releaser: Releaser,
    api: ApiClient,
    namespace: str,
    shard: Shard,
    *,
    base_values: Mapping[str, Any] | None = None,
    timeout_seconds: float = 600,
    poll_seconds: float = 2.0,
    smoke_requests: Sequence[SmokeRequest] = (),
) -> KubernetesDeployResult:
    """Apply one shard as a Helm release, verify it, and roll back if it fails.

    Raises:
        RolledBackError: the upgrade, the rollout or the smoke test failed; the message
            says why and which revision is serving now.
    """
    values = release_values(shard, base_values)
    try:
        upgrade = await releaser.upgrade(shard.release, values, description=f"plan {shard.plan_digest}")
    except HelmReleaseError as exc:
        # --rollback-on-failure: helm has already restored the previous revision.
        reasons = await asyncio.to_thread(_reasons_or_empty, api, namespace, deployment_name(shard.release))
        raise RolledBackError(shard.release, _join(str(exc), reasons), None, by_helm=True) from exc
    if not upgrade.changed:
        return KubernetesDeployResult(shard.release, upgrade.revision, False, shard.plan_digest)
    name = deployment_name(shard.release)
    try:
        rollout = await asyncio.to_thread(
            wait_for_rollout, api, namespace, name, timeout_seconds=timeout_seconds, poll_seconds=poll_seconds
        )
        await asyncio.to_thread(
            smoke_test, api, namespace, name, expected_plan_digest=shard.plan_digest, requests=smoke_requests
        )  # fmt: skip
    except (RolloutError, SmokeTestError) as exc:
        raise await _roll_back(releaser, shard.release, str(exc)) from exc
    return KubernetesDeployResult(shard.release, upgrade.revision, True, shard.plan_digest, rollout)


class HelmReleaseTarget:
    """One Helm release as a ``deploy.rollout.strategies.Target``: canary steps, blue-green and shadow plans
    go through the same verified upgrade (``deploy_shard``); a failure is a ``TargetError``.

    Args:
        releaser: The Helm side (``HelmReleases``, e.g. from ``HelmHook.get_releases``).
        api: A kubernetes ApiClient (``KubernetesHook.get_conn``).
        namespace: Namespace of the release.
        release: Release name; ``regions`` the regions it serves.
    """

    def __init__(
        self,
        releaser: Releaser,
        api: ApiClient,
        namespace: str,
        release: str,
        regions: Sequence[str],
        *,
        base_values: Mapping[str, Any] | None = None,
        timeout_seconds: float = 600,
        poll_seconds: float = 2.0,
        smoke_requests: Sequence[SmokeRequest] = (),
    ) -> None:
        self.name = release
        self.releaser = releaser
        self.api = api
        self.namespace = namespace
        self.regions = tuple(regions)
        self.base_values = dict(base_values or {})
        self.timeout_seconds = timeout_seconds
        self.poll_seconds = poll_seconds
        self.smoke_requests = [r for r in smoke_requests if r.region in self.regions]

    def apply(self, plan: Plan) -> bool:
        """Make ``plan`` live on this release, verified; True if a new revision was rolled out.

        The synchronous form of ``begin`` -> ``wait_ready`` -> ``finish`` (the CLI; the DAG
        defers the wait to a trigger instead).

        Raises:
            TargetError: the upgrade, rollout or smoke test failed (the release was rolled back).
        """
        changed, wait = self.begin(plan)
        if wait is not None:
            self.finish(plan, wait, self.wait_ready(wait))
        return changed

    def begin(self, plan: Plan) -> tuple[bool, dict[str, Any] | None]:
        """Upgrade the release to ``plan``; (changed, what to wait for) — no wait when nothing changed.

        The wait is JSON: ``namespace``, ``deployment``, ``timeout_seconds``, ``deadline`` (epoch
        seconds, so a restarted trigger keeps the same deadline), ``poll_seconds``, ``max_restarts``.

        Raises:
            TargetError: helm failed (with ``--rollback-on-failure`` it restored the previous revision).
        """
        from modelyard.deploy.rollout.strategies import RestoredError, TargetError

        shard = Shard(self.name, self.regions, plan)
        values = release_values(shard, self.base_values)
        try:
            upgrade = asyncio.run(self.releaser.upgrade(shard.release, values, description=f"plan {shard.plan_digest}"))
        except HelmReleaseError as exc:
            reasons = _reasons_or_empty(self.api, self.namespace, deployment_name(shard.release))
            error = RolledBackError(shard.release, _join(str(exc), reasons), None, by_helm=True)
            # --rollback-on-failure (helm waits) restored the previous revision; without it nothing did.
            restored = getattr(self.releaser, "wait", True)
            raise (RestoredError if restored else TargetError)(str(error)) from exc
        if not upgrade.changed:
            return False, None
        return True, {
            "namespace": self.namespace,
            "deployment": deployment_name(self.name),
            "timeout_seconds": self.timeout_seconds,
            "deadline": time.time() + self.timeout_seconds,
            "poll_seconds": self.poll_seconds,
            "max_restarts": 3,
        }

    def wait_ready(self, wait: Mapping[str, Any]) -> dict[str, Any]:
        """Watch the rollout here (blocking): the same outcome ``RolloutReadyTrigger`` reports."""
        try:
            status = wait_for_rollout(
                self.api, wait["namespace"], wait["deployment"],
                timeout_seconds=max(0.0, float(wait["deadline"]) - time.time()),
                poll_seconds=float(wait["poll_seconds"]), max_restarts=int(wait["max_restarts"]),
            )  # fmt: skip
        except RolloutTimeoutError as exc:
            line = exc.status.describe() if exc.status else exc.summary
            return {"status": "timeout", "message": line, "reasons": exc.reasons}
        except RolloutError as exc:
            return {"status": "failed", "message": exc.summary, "reasons": exc.reasons}
        return {"status": "complete", "message": status.describe(), "reasons": []}

    def finish(self, plan: Plan, wait: Mapping[str, Any], outcome: Mapping[str, Any]) -> None:
        """After the wait: a failed or timed-out rollout rolls back; a complete one is smoke-tested.

        ``outcome`` is ``{"status": "complete" | "failed" | "timeout", "message", "reasons"}``;
        the reasons read from the cluster now (pods, Warning events) are added to it.

        Raises:
            TargetError: the rollout or the smoke test failed (the release was rolled back).
        """
        from modelyard.deploy.rollout.strategies import RestoredError, TargetError

        name = wait["deployment"]
        try:
            if outcome["status"] != "complete":
                reasons = list(
                    dict.fromkeys([*outcome.get("reasons", []), *_reasons_or_empty(self.api, self.namespace, name)])
                )
                message = str(outcome.get("message") or "the rollout did not complete")
                if outcome["status"] == "timeout":
                    raise RolloutTimeoutError(
                        f"timed out after {float(wait['timeout_seconds']):g}s: {message}", reasons
                    )
                raise RolloutFailedError(message, reasons)
            smoke_test(self.api, self.namespace, name, expected_plan_digest=plan.digest(), requests=self.smoke_requests)
        except (RolloutError, SmokeTestError) as exc:
            error = asyncio.run(_roll_back(self.releaser, self.name, str(exc)))
            raise (RestoredError if error.restored_revision is not None else TargetError)(str(error)) from exc

    def metrics_source(self) -> dict[str, Any]:
        """Where a trigger scrapes this release's metrics: every ready pod through the pod proxy."""
        return {"kind": "kubernetes", "namespace": self.namespace, "deployment": deployment_name(self.name)}

    def metrics_text(self) -> str:
        """The summed Prometheus metrics of every ready pod (scraped through the pod proxy).

        Through the Service each scrape would hit a different pod and counter deltas would mix
        pods; summing all pods gives release-wide counters and histograms.

        Raises:
            TargetError: no ready pod answered.
        """
        from modelyard.deploy.rollout.strategies import TargetError

        texts = scrape_pods(self.api, self.namespace, deployment_name(self.name))
        if not texts:
            raise TargetError(f"release '{self.name}': no ready pod answered /metrics")
        return merge_expositions(texts)

    def live_digest(self) -> str | None:
        """The digest of the plan the release's pods serve (``/readyz`` through the service proxy); None
        when nothing answers."""
        try:
            status, body = proxy_request(self.api, self.namespace, deployment_name(self.name), "readyz")
            return active_plan_digest(json.loads(body)) if status == 200 else None
        except Exception:  # the API server, the release or its pods are not there: nothing is live
            return None

    def live(self) -> Plan | None:
        """The plan the release serves, None when nothing answers.

        The pods report only the plan digest (``/readyz``, public); the plan itself is the one in
        the release's ConfigMap, which the pods read. They must agree: a release whose pods
        serve another plan (a rollout under way) has no plan we can read back.
        """
        from kubernetes import client

        from modelyard.deploy.serving.plan import PlanError, parse_plan_text

        name = deployment_name(self.name)
        try:
            status, body = proxy_request(self.api, self.namespace, name, "readyz")
            configmap = client.CoreV1Api(self.api).read_namespaced_config_map(f"{name}-plan", self.namespace)
            serving = active_plan_digest(json.loads(body)) if status == 200 else None
            plan = parse_plan_text((configmap.data or {}).get("plan.yaml", ""), f"configmap/{name}-plan")
        except PlanError:
            return None
        except Exception:  # the API server, the release or its pods are not there: nothing is live
            return None
        return plan if serving == plan.digest() else None


async def apply_plan(
    releaser: Releaser,
    api: ApiClient,
    namespace: str,
    plan: Plan,
    groups: Mapping[str, Sequence[str]],
    *,
    base_values: Mapping[str, Any] | None = None,
    timeout_seconds: float = 600,
    poll_seconds: float = 2.0,
    smoke_requests: Sequence[SmokeRequest] = (),
) -> list[KubernetesDeployResult]:
    """Apply ``plan`` release by release (see ``deploy.rollout.releases.split_plan``).

    Releases go one after the other and the first failure stops the rollout, so a bad plan
    reaches one region group, not the fleet. Smoke requests go to the release serving
    their region.

    Raises:
        RolledBackError: a release failed (it was rolled back; later releases were not touched).
        ShardingError: the plan serves a region no release lists.
    """
    results = []
    for shard in split_plan(plan, groups):
        requests = [r for r in smoke_requests if r.region in shard.regions]
        results.append(
            await deploy_shard(
                releaser, api, namespace, shard,
                base_values=base_values, timeout_seconds=timeout_seconds, poll_seconds=poll_seconds,
                smoke_requests=requests,
            )
        )  # fmt: skip
    return results


async def _roll_back(releaser: Releaser, release: str, reason: str) -> RolledBackError:
    revision = await releaser.last_good_revision(release)
    if revision is None:
        return RolledBackError(release, reason, None)
    try:
        await releaser.rollback(release, revision)
    except HelmReleaseError as exc:
        return RolledBackError(release, f"{reason}; and the rollback failed: {exc}", None)
    return RolledBackError(release, reason, revision)


def _reasons_or_empty(api: ApiClient, namespace: str, name: str) -> list[str]:
    from kubernetes.client.exceptions import ApiException

    try:
        return failure_reasons(api, namespace, name)
    except ApiException:
        return []


def _join(message: str, reasons: Sequence[str]) -> str:
    return message + "".join(f"\n  - {r}" for r in reasons)
