"""The Kubernetes target: apply a shard with Helm, watch the rollout, smoke-test, roll back.

1. ``helm upgrade --install --rollback-on-failure --wait`` (``deploy.helm_release``); the
   same values twice make no new revision and nothing else happens.
2. :func:`wait_for_rollout` reads the Deployment through the Kubernetes API until the
   controller has observed the new generation and every replica is updated, ready and
   available. A deadline, a ``ProgressDeadlineExceeded`` condition or a pod that cannot
   start (image, config, crash loop) ends the wait with the reasons read from pod
   statuses, conditions and Warning events.
3. :func:`smoke_test` goes through the Service via the API server's service proxy:
   ``/readyz`` must answer 200 and report the plan digest just deployed as active
   (the pods' admin API is off unless a token is configured, so nothing here needs it);
   optional predictions must answer 200.
4. On a failure the release goes back to its last good revision (``helm rollback``) and
   :class:`RolledBackError` says why.

The Kubernetes calls use the official client (sync, retried on transient errors); ``deploy_shard``
runs them in a thread. ``HelmReleaseTarget`` splits a step into ``begin`` (upgrade), the wait
(here, or deferred to ``RolloutReadyTrigger``) and ``finish`` (smoke test or rollback).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import tenacity

from modelyard.core.errors import ModelyardError
from modelyard.deploy.rollout.helm_release import HelmReleaseError, UpgradeResult
from modelyard.deploy.rollout.kube_api import api_retry
from modelyard.deploy.rollout.releases import Shard, release_values, split_plan
from modelyard.deploy.serving.plan import Plan

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

CHART_NAME = "modelyard-serving"
# Waiting reasons a pod does not recover from without a new rollout.
FATAL_WAITING_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"}
)


class RolloutError(ModelyardError, RuntimeError):
    """A rollout did not complete; ``reasons`` are what the cluster said about it."""

    def __init__(self, message: str, reasons: Sequence[str] = (), status: RolloutStatus | None = None) -> None:
        self.summary = message
        self.reasons = list(reasons)
        self.status = status
        detail = "".join(f"\n  - {r}" for r in self.reasons)
        super().__init__(message + detail)


class RolloutTimeoutError(RolloutError):
    """The rollout did not complete within the timeout."""


class RolloutFailedError(RolloutError):
    """The rollout cannot complete (deadline exceeded, pods that cannot start)."""


class SmokeTestError(ModelyardError, RuntimeError):
    """The endpoint behind the Service did not answer as the deployed plan should."""


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
class RolloutStatus:
    """The rollout fields of a Deployment."""

    name: str
    generation: int
    observed_generation: int
    desired: int
    replicas: int
    updated: int
    ready: int
    available: int
    conditions: tuple[tuple[str, str, str, str], ...] = ()  # (type, status, reason, message)

    @property
    def complete(self) -> bool:
        """Same test as ``kubectl rollout status``, plus every replica ready and available."""
        return (
            self.observed_generation >= self.generation
            and self.updated == self.desired
            and self.replicas == self.updated
            and self.ready == self.desired
            and self.available == self.desired
        )

    @property
    def deadline_exceeded(self) -> str | None:
        """The message of a ``ProgressDeadlineExceeded`` condition, if any."""
        for kind, status, reason, message in self.conditions:
            if kind == "Progressing" and status == "False" and reason == "ProgressDeadlineExceeded":
                return message or reason
        return None

    def describe(self) -> str:
        """One line for logs and errors."""
        return (
            f"deployment/{self.name}: generation {self.observed_generation}/{self.generation} observed, "
            f"{self.updated}/{self.desired} updated, {self.ready} ready, {self.available} available, "
            f"{self.replicas} total"
        )


@dataclass(frozen=True)
class SmokeRequest:
    """A prediction the smoke test sends through the Service."""

    family: str
    region: str
    payload: Mapping[str, Any]


@dataclass
class SmokeReport:
    """What the smoke test saw."""

    digest: str
    predictions: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class KubernetesDeployResult:
    """The outcome of applying one shard."""

    release: str
    revision: int
    changed: bool
    digest: str
    rollout: RolloutStatus | None = None


class Releaser(Protocol):
    """What the target needs from Helm (``deploy.helm_release.HelmReleases`` provides it)."""

    async def upgrade(self, release: str, values: dict[str, Any], *, description: str = "") -> UpgradeResult: ...

    async def last_good_revision(self, release: str) -> int | None: ...

    async def rollback(self, release: str, revision: int) -> None: ...


def deployment_name(release: str, chart: str = CHART_NAME) -> str:
    """The name the chart gives its objects (mirrors ``modelyard-serving.fullname``)."""
    name = release if chart in release else f"{release}-{chart}"
    return name[:63].rstrip("-")


@api_retry
def read_rollout(api: ApiClient, namespace: str, name: str) -> RolloutStatus:
    """Read the rollout fields of ``deployment/name``."""
    from kubernetes import client

    deployment = client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
    return rollout_status(api.sanitize_for_serialization(deployment), name)


def rollout_status(deployment: Mapping[str, Any], name: str) -> RolloutStatus:
    """The rollout fields of a Deployment as the API serves it (JSON, camelCase)."""
    status = deployment.get("status") or {}
    conditions = tuple(
        (c.get("type") or "", c.get("status") or "", c.get("reason") or "", c.get("message") or "")
        for c in status.get("conditions") or []
    )
    replicas = (deployment.get("spec") or {}).get("replicas")
    return RolloutStatus(
        name=name,
        generation=(deployment.get("metadata") or {}).get("generation") or 0,
        observed_generation=status.get("observedGeneration") or 0,
        desired=replicas if replicas is not None else 1,
        replicas=status.get("replicas") or 0,
        updated=status.get("updatedReplicas") or 0,
        ready=status.get("readyReplicas") or 0,
        available=status.get("availableReplicas") or 0,
        conditions=conditions,
    )


def rollout_verdict(status: RolloutStatus, pods: Sequence[Mapping[str, Any]], max_restarts: int) -> list[str] | None:
    """Why the rollout cannot complete (deadline exceeded, pods that cannot start), or None if it still can."""
    exceeded = status.deadline_exceeded
    if exceeded:
        return [exceeded]
    fatal = fatal_reasons(pods, max_restarts)
    return fatal or None


def check_rollout(api: ApiClient, namespace: str, name: str, max_restarts: int = 3) -> RolloutStatus:
    """One look at ``deployment/name``: its status, complete or still progressing.

    Raises:
        RolloutFailedError: the rollout cannot complete; carries the reasons.
    """
    status = read_rollout(api, namespace, name)
    if status.complete:
        return status
    failed = rollout_verdict(status, pod_objects(api, namespace, name), max_restarts)
    if failed:
        raise RolloutFailedError(status.describe(), [*failed, *failure_reasons(api, namespace, name)])
    return status


def wait_for_rollout(
    api: ApiClient,
    namespace: str,
    name: str,
    *,
    timeout_seconds: float,
    poll_seconds: float = 2.0,
    max_restarts: int = 3,
    sleep: Callable[[float], None] = time.sleep,
) -> RolloutStatus:
    """Wait until ``deployment/name`` has fully rolled out (the synchronous wait; the deferrable
    one is ``modelyard.plugins.triggers.rollout.RolloutReadyTrigger``).

    Raises:
        RolloutFailedError: the progress deadline passed, or a pod cannot start (image or
            config errors, or a crash loop past ``max_restarts``); carries the reasons.
        RolloutTimeoutError: not complete after ``timeout_seconds``; carries the reasons.
    """
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout_seconds),
        wait=tenacity.wait_fixed(poll_seconds),
        retry=tenacity.retry_if_result(lambda status: not status.complete),
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        sleep=sleep,
    )
    status: RolloutStatus = retrying(check_rollout, api, namespace, name, max_restarts)
    if not status.complete:
        raise timeout_error(api, namespace, name, timeout_seconds, status)
    return status


def timeout_error(
    api: ApiClient, namespace: str, name: str, timeout_seconds: float, status: RolloutStatus
) -> RolloutTimeoutError:
    """The error of a rollout not complete at its deadline, with the reasons read from the cluster."""
    return RolloutTimeoutError(
        f"timed out after {timeout_seconds:g}s: {status.describe()}", failure_reasons(api, namespace, name), status
    )


@api_retry
def pods_of(api: ApiClient, namespace: str, name: str) -> list[Any]:
    """The pods selected by ``deployment/name`` (label selector, re-checked client-side)."""
    from kubernetes import client

    deployment = client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
    selector: dict[str, str] = deployment.spec.selector.match_labels or {}
    label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=label_selector).items
    return [p for p in pods if p.metadata and selector.items() <= (p.metadata.labels or {}).items()]


def pod_objects(api: ApiClient, namespace: str, name: str) -> list[dict[str, Any]]:
    """``pods_of`` as the API serves them (JSON, camelCase): what the async watcher reads too."""
    return [api.sanitize_for_serialization(p) for p in pods_of(api, namespace, name)]


def fatal_pod_reasons(api: ApiClient, namespace: str, name: str, max_restarts: int) -> list[str]:
    """Reasons of pods that will not start without a new rollout."""
    return fatal_reasons(pod_objects(api, namespace, name), max_restarts)


def fatal_reasons(pods: Sequence[Mapping[str, Any]], max_restarts: int) -> list[str]:
    """Reasons of ``pods`` (JSON) that will not start without a new rollout."""
    reasons = []
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting")
            if waiting is None:
                continue
            reason = waiting.get("reason")
            crash_looping = reason == "CrashLoopBackOff" and (container.get("restartCount") or 0) >= max_restarts
            if reason in FATAL_WAITING_REASONS or crash_looping:
                reasons.append(_describe_waiting(pod["metadata"]["name"], container, waiting))
    return reasons


def failure_reasons(api: ApiClient, namespace: str, name: str) -> list[str]:
    """Why pods of ``deployment/name`` are not ready: container states, pod conditions, Warning events."""
    reasons: list[str] = []
    pods = pod_objects(api, namespace, name)
    for pod in pods:
        reasons.extend(_pod_reasons(pod))
    pod_names = {p["metadata"]["name"] for p in pods} | {name}
    for event in _events(api, namespace):
        involved = event.involved_object.name if event.involved_object else None
        if event.type == "Warning" and involved in pod_names:
            reasons.append(f"{involved}: event {event.reason}: {event.message}")
    return list(dict.fromkeys(reasons))


@api_retry
def _events(api: ApiClient, namespace: str) -> list[Any]:
    from kubernetes import client

    return list(client.CoreV1Api(api).list_namespaced_event(namespace).items)


def _pod_reasons(pod: Mapping[str, Any]) -> list[str]:
    reasons = []
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            reasons.append(_describe_waiting(name, container, waiting))
        last = (container.get("lastState") or {}).get("terminated")
        if last is not None:
            reasons.append(
                f"{name}: container {container['name']} last exited {last.get('exitCode')} "
                f"({last.get('reason') or 'Error'})"
            )
    for condition in status.get("conditions") or []:
        if condition.get("status") == "False" and (condition.get("reason") or condition.get("message")):
            detail = f"{condition.get('reason') or ''} {condition.get('message') or ''}".strip()
            reasons.append(f"{name}: {condition.get('type')} is False: {detail}")
    return reasons


def _describe_waiting(pod: str, container: Mapping[str, Any], waiting: Mapping[str, Any]) -> str:
    message = f": {waiting['message']}" if waiting.get("message") else ""
    restarts = f" after {container['restartCount']} restarts" if container.get("restartCount") else ""
    return f"{pod}: container {container['name']} waiting: {waiting.get('reason')}{restarts}{message}"


def proxy_request(
    api: ApiClient,
    namespace: str,
    service: str,
    path: str,
    *,
    port: str = "http",
    method: str = "GET",
    body: Mapping[str, Any] | None = None,
    timeout_seconds: float = 30,
) -> tuple[int, bytes]:
    """One HTTP request to ``service`` through the API server's service proxy.

    Returns:
        The status code and body the service (or the API server) answered.
    """
    quoted = urllib.parse.quote(path.lstrip("/"), safe="/?=&")
    resource_path = f"/api/v1/namespaces/{{namespace}}/services/{{name}}/proxy/{quoted}"
    params = {"namespace": namespace, "name": f"{service}:{port}"}
    return _proxy(api, resource_path, params, method, body, timeout_seconds)


def _proxy(
    api: ApiClient,
    resource_path: str,
    path_params: dict[str, str],
    method: str,
    body: Mapping[str, Any] | None,
    timeout_seconds: float,
) -> tuple[int, bytes]:
    headers = {"Accept": "application/json, text/plain;q=0.9, */*;q=0.8"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    method_, url, header_params, serialized, post = api.param_serialize(
        method=method,
        resource_path=resource_path,
        path_params=path_params,
        header_params=headers,
        body=dict(body) if body is not None else None,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method_, url, header_params, serialized, post, _request_timeout=timeout_seconds)
    response.read()
    return int(response.status), bytes(response.data or b"")


def smoke_test(
    api: ApiClient,
    namespace: str,
    service: str,
    *,
    expected_digest: str,
    requests: Sequence[SmokeRequest] = (),
    port: str = "http",
) -> SmokeReport:
    """Check the deployed endpoint through the Service.

    Raises:
        SmokeTestError: ``/readyz`` is not 200 or reports another active digest, or a
            prediction fails; the message names the URL path and what came back.
    """
    status, body = proxy_request(api, namespace, service, "readyz", port=port)
    if status != 200:
        raise SmokeTestError(f"service/{service} /readyz answered {status}: {_excerpt(body)}")
    digest = active_digest(_json(body, f"service/{service} /readyz"))
    if digest != expected_digest:
        raise SmokeTestError(f"service/{service} serves plan {digest}, expected {expected_digest} (pods still old?)")
    report = SmokeReport(digest=expected_digest)
    for request in requests:
        path = f"v1/predict/{request.family}/{request.region}"
        status, body = proxy_request(api, namespace, service, path, port=port, method="POST", body=request.payload)
        if status != 200:
            raise SmokeTestError(f"service/{service} POST /{path} answered {status}: {_excerpt(body)}")
        report.predictions.append(_json(body, f"service/{service} /{path}"))
    return report


def active_digest(readyz: Mapping[str, Any]) -> str | None:
    """The active plan digest a server reports on ``/readyz`` (``plan.active_digest``)."""
    plan = readyz.get("plan")
    digest = plan.get("active_digest") if isinstance(plan, Mapping) else None
    return str(digest) if digest else None


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
        upgrade = await releaser.upgrade(shard.release, values, description=f"plan {shard.digest}")
    except HelmReleaseError as exc:
        # --rollback-on-failure: helm has already restored the previous revision.
        reasons = await asyncio.to_thread(_reasons_or_empty, api, namespace, deployment_name(shard.release))
        raise RolledBackError(shard.release, _join(str(exc), reasons), None, by_helm=True) from exc
    if not upgrade.changed:
        return KubernetesDeployResult(shard.release, upgrade.revision, False, shard.digest)
    name = deployment_name(shard.release)
    try:
        rollout = await asyncio.to_thread(
            wait_for_rollout, api, namespace, name, timeout_seconds=timeout_seconds, poll_seconds=poll_seconds
        )
        await asyncio.to_thread(
            smoke_test, api, namespace, name, expected_digest=shard.digest, requests=smoke_requests
        )  # fmt: skip
    except (RolloutError, SmokeTestError) as exc:
        raise await _roll_back(releaser, shard.release, str(exc)) from exc
    return KubernetesDeployResult(shard.release, upgrade.revision, True, shard.digest, rollout)


class HelmReleaseTarget:
    """One Helm release as a ``deploy.rollout.Target``: canary steps, blue-green and shadow plans
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
            upgrade = asyncio.run(self.releaser.upgrade(shard.release, values, description=f"plan {shard.digest}"))
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
            smoke_test(self.api, self.namespace, name, expected_digest=plan.digest(), requests=self.smoke_requests)
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

    def live(self) -> Plan | None:
        """The plan the release serves, None when nothing answers.

        The pods report only the digest (``/readyz``, public); the plan itself is the one in
        the release's ConfigMap, which the pods read. They must agree: a release whose pods
        serve another plan (a rollout under way) has no plan we can read back.
        """
        from kubernetes import client

        from modelyard.deploy.serving.plan import PlanError, parse_plan_text

        name = deployment_name(self.name)
        try:
            status, body = proxy_request(self.api, self.namespace, name, "readyz")
            configmap = client.CoreV1Api(self.api).read_namespaced_config_map(f"{name}-plan", self.namespace)
            serving = active_digest(json.loads(body)) if status == 200 else None
            plan = parse_plan_text((configmap.data or {}).get("plan.yaml", ""), f"configmap/{name}-plan")
        except PlanError:
            return None
        except Exception:  # the API server, the release or its pods are not there: nothing is live
            return None
        return plan if serving == plan.digest() else None


def scrape_pods(api: ApiClient, namespace: str, name: str, path: str = "metrics") -> list[str]:
    """``GET /<path>`` on every ready pod of ``deployment/name`` through the API server's pod proxy."""
    texts = []
    for pod in ready_pods(pod_objects(api, namespace, name)):
        resource_path = f"/api/v1/namespaces/{{namespace}}/pods/{{name}}/proxy/{path}"
        params = {"namespace": namespace, "name": f"{pod['metadata']['name']}:{http_port(pod)}"}
        status, body = _proxy(api, resource_path, params, "GET", None, 30)
        if status == 200:
            texts.append(body.decode())
    return texts


def ready_pods(pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The pods (JSON) whose ``Ready`` condition is True: the ones that serve traffic."""
    return [
        pod
        for pod in pods
        if any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (pod.get("status") or {}).get("conditions") or []
        )
    ]


def http_port(pod: Mapping[str, Any]) -> int | str:
    """The container port named ``http`` (the pod proxy needs the number), else the name."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == "http":
                return int(port["containerPort"])
    return "http"


def merge_expositions(texts: Sequence[str]) -> str:
    """Sum the samples of several Prometheus expositions (counters and histogram buckets add up)."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                totals[key] = totals.get(key, 0.0) + sample.value
    lines = []
    for (name, labels), value in totals.items():
        rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
        lines.append(f"{name}{{{rendered}}} {value!r}" if rendered else f"{name} {value!r}")
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


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
    """Apply ``plan`` release by release (see ``deploy.releases.split_plan``).

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


def _json(body: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise SmokeTestError(f"{what} did not answer JSON: {_excerpt(body)}") from exc
    if not isinstance(data, dict):
        raise SmokeTestError(f"{what} answered {type(data).__name__}, expected an object")
    return data


def _excerpt(body: bytes, limit: int = 300) -> str:
    text = body.decode(errors="replace").strip()
    return text if len(text) <= limit else text[:limit] + "..."
