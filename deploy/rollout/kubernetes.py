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

The Kubernetes calls use the official client (sync); ``deploy_shard`` runs them in a thread.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from modelyard.deploy.rollout.helm_release import HelmReleaseError, UpgradeResult
from modelyard.deploy.rollout.releases import Shard, release_values, split_plan
from modelyard.deploy.serving.plan import Plan
from modelyard.pipeline.errors import ModelyardError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

CHART_NAME = "modelyard-serving"
# Waiting reasons a pod does not recover from without a new rollout.
FATAL_WAITING_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"}
)


class RolloutError(ModelyardError, RuntimeError):
    """A rollout did not complete; ``reasons`` are what the cluster said about it."""

    def __init__(self, message: str, reasons: Sequence[str] = ()) -> None:
        self.reasons = list(reasons)
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


def read_rollout(api: ApiClient, namespace: str, name: str) -> RolloutStatus:
    """Read the rollout fields of ``deployment/name``."""
    from kubernetes import client

    deployment = client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
    status = deployment.status or client.V1DeploymentStatus()
    conditions = tuple(
        (c.type or "", c.status or "", c.reason or "", c.message or "") for c in (status.conditions or [])
    )
    return RolloutStatus(
        name=name,
        generation=(deployment.metadata.generation if deployment.metadata else None) or 0,
        observed_generation=status.observed_generation or 0,
        desired=deployment.spec.replicas if deployment.spec.replicas is not None else 1,
        replicas=status.replicas or 0,
        updated=status.updated_replicas or 0,
        ready=status.ready_replicas or 0,
        available=status.available_replicas or 0,
        conditions=conditions,
    )


def wait_for_rollout(
    api: ApiClient,
    namespace: str,
    name: str,
    *,
    timeout_seconds: float,
    poll_seconds: float = 2.0,
    max_restarts: int = 3,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> RolloutStatus:
    """Wait until ``deployment/name`` has fully rolled out.

    Raises:
        RolloutFailedError: the progress deadline passed, or a pod cannot start (image or
            config errors, or a crash loop past ``max_restarts``); carries the reasons.
        RolloutTimeoutError: not complete after ``timeout_seconds``; carries the reasons.
    """
    deadline = clock() + timeout_seconds
    while True:
        status = read_rollout(api, namespace, name)
        if status.complete:
            return status
        exceeded = status.deadline_exceeded
        if exceeded:
            raise RolloutFailedError(status.describe(), [exceeded, *failure_reasons(api, namespace, name)])
        fatal = fatal_pod_reasons(api, namespace, name, max_restarts)
        if fatal:
            raise RolloutFailedError(status.describe(), [*fatal, *failure_reasons(api, namespace, name)])
        if clock() >= deadline:
            raise RolloutTimeoutError(
                f"timed out after {timeout_seconds:g}s: {status.describe()}", failure_reasons(api, namespace, name)
            )
        sleep(poll_seconds)


def pods_of(api: ApiClient, namespace: str, name: str) -> list[Any]:
    """The pods selected by ``deployment/name`` (label selector, re-checked client-side)."""
    from kubernetes import client

    deployment = client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
    selector: dict[str, str] = deployment.spec.selector.match_labels or {}
    label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=label_selector).items
    return [p for p in pods if p.metadata and selector.items() <= (p.metadata.labels or {}).items()]


def fatal_pod_reasons(api: ApiClient, namespace: str, name: str, max_restarts: int) -> list[str]:
    """Reasons of pods that will not start without a new rollout."""
    reasons = []
    for pod in pods_of(api, namespace, name):
        for container in (pod.status.container_statuses or []) if pod.status else []:
            waiting = container.state.waiting if container.state else None
            if waiting is None:
                continue
            crash_looping = waiting.reason == "CrashLoopBackOff" and (container.restart_count or 0) >= max_restarts
            if waiting.reason in FATAL_WAITING_REASONS or crash_looping:
                reasons.append(_describe_waiting(pod.metadata.name, container, waiting))
    return reasons


def failure_reasons(api: ApiClient, namespace: str, name: str) -> list[str]:
    """Why pods of ``deployment/name`` are not ready: container states, pod conditions, Warning events."""
    from kubernetes import client

    reasons: list[str] = []
    pods = pods_of(api, namespace, name)
    for pod in pods:
        reasons.extend(_pod_reasons(pod))
    pod_names = {p.metadata.name for p in pods} | {name}
    events = client.CoreV1Api(api).list_namespaced_event(namespace).items
    for event in events:
        involved = event.involved_object.name if event.involved_object else None
        if event.type == "Warning" and involved in pod_names:
            reasons.append(f"{involved}: event {event.reason}: {event.message}")
    return list(dict.fromkeys(reasons))


def _pod_reasons(pod: Any) -> list[str]:
    reasons = []
    name = pod.metadata.name
    for container in (pod.status.container_statuses or []) if pod.status else []:
        state = container.state
        if state and state.waiting and state.waiting.reason:
            reasons.append(_describe_waiting(name, container, state.waiting))
        last = container.last_state.terminated if container.last_state else None
        if last is not None:
            reasons.append(
                f"{name}: container {container.name} last exited {last.exit_code} ({last.reason or 'Error'})"
            )
    for condition in (pod.status.conditions or []) if pod.status else []:
        if condition.status == "False" and (condition.reason or condition.message):
            detail = f"{condition.reason or ''} {condition.message or ''}".strip()
            reasons.append(f"{name}: {condition.type} is False: {detail}")
    return reasons


def _describe_waiting(pod: str, container: Any, waiting: Any) -> str:
    message = f": {waiting.message}" if waiting.message else ""
    restarts = f" after {container.restart_count} restarts" if container.restart_count else ""
    return f"{pod}: container {container.name} waiting: {waiting.reason}{restarts}{message}"


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

        Raises:
            TargetError: the upgrade, rollout or smoke test failed (the release was rolled back).
        """
        from modelyard.deploy.rollout.strategies import TargetError

        shard = Shard(self.name, self.regions, plan)
        try:
            result = asyncio.run(
                deploy_shard(
                    self.releaser, self.api, self.namespace, shard,
                    base_values=self.base_values, timeout_seconds=self.timeout_seconds,
                    poll_seconds=self.poll_seconds, smoke_requests=self.smoke_requests,
                )
            )  # fmt: skip
        except RolledBackError as exc:
            raise TargetError(str(exc)) from exc
        return result.changed

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
    for pod in pods_of(api, namespace, name):
        if not _pod_ready(pod):
            continue
        port = _http_port(pod)
        resource_path = f"/api/v1/namespaces/{{namespace}}/pods/{{name}}/proxy/{path}"
        params = {"namespace": namespace, "name": f"{pod.metadata.name}:{port}"}
        status, body = _proxy(api, resource_path, params, "GET", None, 30)
        if status == 200:
            texts.append(body.decode())
    return texts


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


def _pod_ready(pod: Any) -> bool:
    conditions = (pod.status.conditions or []) if pod.status else []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _http_port(pod: Any) -> int | str:
    for container in pod.spec.containers if pod.spec else []:
        for port in container.ports or []:
            if port.name == "http":
                return int(port.container_port)
    return "http"


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
