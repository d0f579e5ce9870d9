"""The waits of a rollout step as Airflow triggers (async, in the triggerer).

* :class:`RolloutReadyTrigger`: after ``helm upgrade``, watch the Deployment through the
  Kubernetes API (httpx with ``KubernetesHook``'s credentials) until it is complete, cannot
  complete (progress deadline, pods that cannot start), or the deadline passes;
* :class:`CanaryAnalysisTrigger`: hold a canary step's analysis window, scraping the serving
  metrics every ``poll_seconds`` and ending early on a clear breach.

Both carry the deploy's checkpoint (``StagedDeploy.checkpoint()``) and hand it back in their
event with the outcome: the task resumes from the event alone (``airflow dags test`` replaces
the deferral's ``kwargs`` with the event). The outcome is what the synchronous waits
(``HelmReleaseTarget.wait_ready``, ``Rollout._analyze``) return, so the rollout goes on the same
way in both paths. Deadlines are epoch seconds in the arguments: a trigger restarted on another
triggerer keeps them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, cast

import tenacity
from airflow.triggers.base import BaseTrigger, TriggerEvent

from modelyard.deploy.rollout.deployment_status import RolloutStatus, rollout_status, rollout_verdict
from modelyard.deploy.rollout.kube_proxy import http_port, merge_expositions, ready_pods
from modelyard.deploy.rollout.strategies import Thresholds, judge_window, parse_metrics, window_outcome
from modelyard.plugins.hooks.kubernetes import KubernetesHook

if TYPE_CHECKING:
    from modelyard.deploy.rollout.kube_api import AsyncKubeClient

MODULE = __name__


class RolloutReadyTrigger(BaseTrigger):
    """Fire once the Deployment of ``wait`` rolled out, failed, or ran out of time.

    Args:
        wait: ``HelmReleaseTarget.begin``'s wait: namespace, deployment, deadline, poll_seconds,
            max_restarts, timeout_seconds.
        checkpoint: The deploy to resume, returned as is in the event.
        kubernetes_conn_id: The cluster (``KubernetesHook``).
    """

    def __init__(
        self, wait: dict[str, Any], checkpoint: dict[str, Any], kubernetes_conn_id: str = "kubernetes_default"
    ) -> None:
        super().__init__()
        self.wait = wait
        self.checkpoint = checkpoint
        self.kubernetes_conn_id = kubernetes_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{MODULE}.RolloutReadyTrigger", {
            "wait": self.wait,
            "checkpoint": self.checkpoint,
            "kubernetes_conn_id": self.kubernetes_conn_id,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = KubernetesHook(self.kubernetes_conn_id)
        try:
            async with await hook.get_async_client() as kube:
                outcome = await watch_rollout(kube, self.wait)
        except Exception as exc:  # the API server did not answer (after retries): the worker rolls back
            outcome = {"status": "failed", "message": f"watching the rollout failed: {exc}", "reasons": []}
        self.log.info("rollout of %s: %s: %s", self.wait["deployment"], outcome["status"], outcome["message"])
        yield TriggerEvent({"outcome": outcome, "checkpoint": self.checkpoint})


async def watch_rollout(kube: AsyncKubeClient, wait: Mapping[str, Any]) -> dict[str, Any]:
    """Poll the Deployment until complete, failed or past ``wait['deadline']``; the outcome as JSON."""
    namespace, name = str(wait["namespace"]), str(wait["deployment"])
    max_restarts = int(wait.get("max_restarts", 3))

    async def look() -> tuple[RolloutStatus, list[str] | None]:
        status = rollout_status(await kube.deployment(namespace, name), name)
        if status.complete:
            return status, None
        return status, rollout_verdict(status, await kube.pods_of(namespace, name), max_restarts)

    retrying = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_delay(max(0.0, float(wait["deadline"]) - time.time())),
        wait=tenacity.wait_fixed(float(wait.get("poll_seconds", 2.0))),
        retry=tenacity.retry_if_result(lambda look: not look[0].complete and look[1] is None),
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )
    status, failed = cast("tuple[RolloutStatus, list[str] | None]", await retrying(look))
    if status.complete:
        return {"status": "complete", "message": status.describe(), "reasons": []}
    if failed:
        return {"status": "failed", "message": status.describe(), "reasons": failed}
    return {"status": "timeout", "message": status.describe(), "reasons": []}


class CanaryAnalysisTrigger(BaseTrigger):
    """Fire at the end of a canary analysis window, or at its first breach.

    Args:
        wait: ``Rollout``'s analysis wait: keys, baseline (metrics text), deadline, thresholds.
        source: Where the metrics are: ``{"kind": "http", "url"}`` (the local process) or
            ``{"kind": "kubernetes", "namespace", "deployment"}`` (every ready pod, summed).
        checkpoint: The deploy to resume, returned as is in the event.
        kubernetes_conn_id: The cluster, for a ``kubernetes`` source.
        poll_seconds: How often the window is judged.
    """

    def __init__(
        self,
        wait: dict[str, Any],
        source: dict[str, Any],
        checkpoint: dict[str, Any],
        kubernetes_conn_id: str = "kubernetes_default",
        poll_seconds: float = 1.0,
    ) -> None:
        super().__init__()
        self.wait = wait
        self.source = source
        self.checkpoint = checkpoint
        self.kubernetes_conn_id = kubernetes_conn_id
        self.poll_seconds = poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{MODULE}.CanaryAnalysisTrigger", {
            "wait": self.wait,
            "source": self.source,
            "checkpoint": self.checkpoint,
            "kubernetes_conn_id": self.kubernetes_conn_id,
            "poll_seconds": self.poll_seconds,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            outcome = await self._judge()
        except Exception as exc:  # no metrics, no verdict: the canary cannot be trusted
            outcome = {"breach": f"the canary's metrics could not be read: {exc}", "detail": ""}
        self.log.info("canary analysis: %s", outcome["breach"] or f"passed: {outcome['detail']}")
        yield TriggerEvent({"outcome": outcome, "checkpoint": self.checkpoint})

    async def _judge(self) -> dict[str, Any]:
        keys = [(str(family), str(region)) for family, region in self.wait["keys"]]
        thresholds = Thresholds(**self.wait["thresholds"])
        baseline = parse_metrics(str(self.wait["baseline"]))
        deadline = float(self.wait["deadline"])
        while True:
            await asyncio.sleep(max(0.0, min(self.poll_seconds, deadline - time.time())))
            current = parse_metrics(await self._scrape())
            breach, stats = judge_window(baseline, current, keys, thresholds)
            if breach or time.time() >= deadline:
                return window_outcome(breach, stats, thresholds)

    async def _scrape(self) -> str:
        if self.source["kind"] == "http":
            import httpx

            async with httpx.AsyncClient(timeout=30) as client:
                response = await client.get(self.source["url"])
                response.raise_for_status()
                return response.text
        hook = KubernetesHook(self.kubernetes_conn_id)
        async with await hook.get_async_client() as kube:
            return await scrape_ready_pods(kube, self.source["namespace"], self.source["deployment"])


async def scrape_ready_pods(kube: AsyncKubeClient, namespace: str, name: str, path: str = "metrics") -> str:
    """Every ready pod's ``/metrics`` through the pod proxy, summed (release-wide counters).

    Raises:
        RuntimeError: no ready pod answered.
    """
    texts = []
    for pod in ready_pods(await kube.pods_of(namespace, name)):
        status, body = await kube.pod_proxy(namespace, pod["metadata"]["name"], http_port(pod), path)
        if status == 200:
            texts.append(body.decode())
    if not texts:
        raise RuntimeError(f"deployment/{name}: no ready pod answered /{path}")
    return merge_expositions(texts)
