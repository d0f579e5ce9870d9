"""How a Deployment's rollout stands: its status, its pods, the wait until it completes, and why not.

:func:`wait_for_rollout` reads the Deployment through the Kubernetes API until the controller
has observed the new generation and every replica is updated, ready and available. A
deadline, a ``ProgressDeadlineExceeded`` condition or a pod that cannot start (image,
config, crash loop) ends the wait with the reasons read from pod statuses, conditions and
Warning events. The calls use the official client (sync, retried on transient errors); the
deferrable wait (``plugins.triggers.rollout.RolloutReadyTrigger``) judges the same JSON with
:func:`rollout_status` and :func:`rollout_verdict`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import tenacity

from modelyard.core.errors import ModelyardError
from modelyard.deploy.rollout.kube_api import api_retry

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

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
