"""The deferrable waits against the Kubernetes API emulator over real HTTP.

``RolloutReadyTrigger`` and ``CanaryAnalysisTrigger`` run as the triggerer (and ``airflow dags
test``) runs them: built from their ``serialize()`` output, the first event of ``run()``
taken in an event loop. They reach the emulator with the credentials of the
``kubernetes_default`` Connection (``KubernetesHook.get_async_client``). The worker's side —
``HelmReleaseTarget.begin`` before and ``finish`` after — runs on the same emulator, so a
rollout through the trigger is verified or rolled back exactly like the synchronous one.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import kmock
import pytest
from kube_emulator import NAMESPACE, TICK, Cluster, EmulatedHelm, image_tag

from modelyard.deploy.rollout.helm_target import HelmReleaseTarget, deployment_name
from modelyard.deploy.rollout.kube_api import AsyncKubeClient
from modelyard.deploy.rollout.kube_smoke import SmokeRequest
from modelyard.deploy.rollout.strategies import TargetError
from modelyard.deploy.serving.plan import parse_plan
from modelyard.plugins.triggers.rollout import CanaryAnalysisTrigger, RolloutReadyTrigger

RELEASE = "sea-west"
NAME = deployment_name(RELEASE)
BASE_VALUES: dict[str, Any] = {
    "mlflow": {"existingSecret": "modelyard-mlflow"},
    "autoscaling": {"enabled": False},
    "replicaCount": 2,
}
CHECKPOINT = {"request": {"target": "kubernetes"}, "rollout": {"position": 1}}
THRESHOLDS = {"max_error_rate": 0.01, "max_p99_ms": 500.0, "min_requests": 5, "analysis_seconds": 3.0}
pytestmark = pytest.mark.timeout(120)


def make_plan(version: int) -> Any:
    return parse_plan(
        {
            "version": 1,
            "services": [
                {
                    "family": "driver_acceptance",
                    "region": "jakarta",
                    "timezone": "Asia/Jakarta",
                    "variants": [
                        {"name": "champion", "model_uri": f"models:/driver_acceptance-jakarta/{version}", "weight": 100}
                    ],
                }
            ],
        }
    )


@pytest.fixture
def connection(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> str:
    """``kubernetes_default`` with an inline kubeconfig for the emulator and a bearer token."""
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": cluster.url}}],
        "users": [{"name": "deployer", "user": {"token": "tr1gger"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "deployer"}}],
        "current-context": "emulator",
    }
    extra = {"kube_config": json.dumps(kubeconfig), "namespace": NAMESPACE}
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps({"conn_type": "kubernetes", "extra": extra}))
    return "kubernetes_default"


def release_target(cluster: Cluster, helm: EmulatedHelm, tag: str = "good", timeout: float = 5) -> HelmReleaseTarget:
    smoke = [SmokeRequest("driver_acceptance", "jakarta", {"instances": [{"pickup_distance_km": 1.2}]})]
    return HelmReleaseTarget(
        helm, cluster.api, NAMESPACE, RELEASE, ("jakarta", "surabaya"),
        base_values={**BASE_VALUES, "image": {"tag": tag}}, timeout_seconds=timeout, poll_seconds=TICK,
        smoke_requests=smoke,
    )  # fmt: skip


def fire(trigger: Any) -> dict[str, Any]:
    """Rebuild the trigger from ``serialize()`` (as the triggerer does) and take its first event."""
    from airflow.sdk._shared.module_loading import import_string
    from airflow.sdk.serde import deserialize, serialize

    classpath, kwargs = trigger.serialize()
    rebuilt = import_string(classpath)(**deserialize(serialize(kwargs)))

    async def first() -> Any:
        return await anext(rebuilt.run())

    event = asyncio.run(first())
    payload: dict[str, Any] = event.payload
    assert payload["checkpoint"] == CHECKPOINT, "the event must hand the checkpoint back"
    return payload


def test_ready_trigger_reports_a_complete_rollout_and_the_task_smoke_tests_it(
    cluster: Cluster, emulated_helm: EmulatedHelm, connection: str
) -> None:
    target = release_target(cluster, emulated_helm)
    changed, wait = target.begin(make_plan(1))
    assert changed
    assert wait is not None
    assert wait["deployment"] == NAME

    outcome = fire(RolloutReadyTrigger(wait, CHECKPOINT, connection))["outcome"]

    assert outcome["status"] == "complete", outcome
    assert "2/2 updated, 2 ready, 2 available" in outcome["message"]
    reads = [r for r in list(cluster.emulator) if r.url.path.endswith(f"/deployments/{NAME}")]
    assert reads[-1].headers.get("Authorization") == "Bearer tr1gger"  # the Connection's credentials
    target.finish(make_plan(1), wait, outcome)  # smoke test through the service: passes
    assert any(p.endswith("/proxy/readyz") for p in cluster.proxy_requests())  # the served digest is checked


def test_ready_trigger_times_out_at_the_deadline_and_the_task_rolls_back(
    cluster: Cluster, emulated_helm: EmulatedHelm, connection: str
) -> None:
    release_target(cluster, emulated_helm).apply(make_plan(1))
    target = release_target(cluster, emulated_helm, tag="never-ready", timeout=1.0)
    _, wait = target.begin(make_plan(2))
    assert wait is not None

    started = time.monotonic()
    outcome = fire(RolloutReadyTrigger(wait, CHECKPOINT, connection))["outcome"]

    assert time.monotonic() - started < 10
    assert outcome["status"] == "timeout", outcome
    with pytest.raises(TargetError) as failure:
        target.finish(make_plan(2), wait, outcome)
    message = str(failure.value)
    assert "rolled back to revision 1" in message
    assert "timed out after 1s" in message
    assert "Startup probe failed: HTTP probe failed with statuscode: 503" in message  # read by the task
    assert emulated_helm.rollbacks == [1]
    assert image_tag(cluster.get("deployments", NAME)) == "good"


def test_ready_trigger_fails_fast_on_pods_that_cannot_start(
    cluster: Cluster, emulated_helm: EmulatedHelm, connection: str
) -> None:
    release_target(cluster, emulated_helm).apply(make_plan(1))
    target = release_target(cluster, emulated_helm, tag="bad-image", timeout=60)
    _, wait = target.begin(make_plan(2))
    assert wait is not None

    started = time.monotonic()
    outcome = fire(RolloutReadyTrigger(wait, CHECKPOINT, connection))["outcome"]

    assert time.monotonic() - started < 10, "an image pull error must not wait for the deadline"
    assert outcome["status"] == "failed"
    assert any('waiting: ImagePullBackOff: Back-off pulling image "bad-image"' in r for r in outcome["reasons"])


def test_ready_trigger_keeps_the_deadline_it_was_given(
    cluster: Cluster, emulated_helm: EmulatedHelm, connection: str
) -> None:
    """A trigger restarted after its deadline (another triggerer picked it up late) looks once and reports."""
    target = release_target(cluster, emulated_helm, tag="never-ready", timeout=60)
    _, wait = target.begin(make_plan(1))
    assert wait is not None
    started = time.monotonic()
    outcome = fire(RolloutReadyTrigger({**wait, "deadline": time.time() - 1}, CHECKPOINT, connection))["outcome"]
    assert time.monotonic() - started < 5
    assert outcome["status"] == "timeout"


def analysis_wait(seconds: float, min_requests: int, baseline: str = "") -> dict[str, Any]:
    return {
        "keys": [["driver_acceptance", "jakarta"]],
        "baseline": baseline,
        "seconds": seconds,
        "deadline": time.time() + seconds,
        "thresholds": {**THRESHOLDS, "min_requests": min_requests, "analysis_seconds": seconds},
    }


def test_analysis_trigger_breaches_early_on_the_summed_pod_metrics(
    cluster: Cluster, emulated_helm: EmulatedHelm, connection: str
) -> None:
    target = release_target(cluster, emulated_helm)
    target.apply(make_plan(1))
    source = target.metrics_source()

    started = time.monotonic()
    payload = fire(CanaryAnalysisTrigger(analysis_wait(30, 5), source, CHECKPOINT, connection, poll_seconds=TICK))

    assert time.monotonic() - started < 10, "a clear breach must not wait for the end of the window"
    # Two ready pods, each 10 ok and 1 error since the (empty) baseline: 2 errors in 22 requests.
    assert payload["outcome"]["breach"] == (
        "canary of driver_acceptance/jakarta: error rate 9.1% (2/22 requests) > max_error_rate 1.0%"
    )
    assert sorted(set(cluster.scrapes)) == [f"{NAME}-g1-0", f"{NAME}-g1-1"]


def test_analysis_trigger_passes_a_quiet_canary_at_the_end_of_the_window(
    cluster: Cluster, emulated_helm: EmulatedHelm, connection: str
) -> None:
    target = release_target(cluster, emulated_helm)
    target.apply(make_plan(1))

    started = time.monotonic()
    wait = analysis_wait(0.5, 1000)
    outcome = fire(CanaryAnalysisTrigger(wait, target.metrics_source(), CHECKPOINT, connection, TICK))["outcome"]

    assert time.monotonic() - started >= 0.4, "the window is held to its end"
    assert outcome["breach"] is None
    assert "driver_acceptance/jakarta: 22 req (too few to judge)" in outcome["detail"]


def test_analysis_trigger_reads_a_plain_http_endpoint(cluster: Cluster, emulated_helm: EmulatedHelm) -> None:
    """The local target's source: one ``/metrics`` URL (here a pod's, through the emulator's proxy)."""
    release_target(cluster, emulated_helm).apply(make_plan(1))
    url = f"{cluster.url}/api/v1/namespaces/{NAMESPACE}/pods/{NAME}-g1-0:8000/proxy/metrics"
    wait = analysis_wait(5, 5)
    outcome = fire(CanaryAnalysisTrigger(wait, {"kind": "http", "url": url}, CHECKPOINT, poll_seconds=TICK))["outcome"]
    assert (
        outcome["breach"]
        == "canary of driver_acceptance/jakarta: error rate 9.1% (1/11 requests) > max_error_rate 1.0%"
    )


def test_analysis_trigger_without_metrics_is_a_breach(cluster: Cluster, connection: str) -> None:
    source = {"kind": "kubernetes", "namespace": NAMESPACE, "deployment": "nothing-here"}
    outcome = fire(CanaryAnalysisTrigger(analysis_wait(5, 5), source, CHECKPOINT, connection, TICK))["outcome"]
    assert outcome["breach"].startswith("the canary's metrics could not be read")


def test_api_reads_are_retried_after_the_servers_retry_after(cluster: Cluster, connection: str) -> None:
    """429 with ``Retry-After`` twice, then the API server answers: the read succeeds, having waited."""
    from kubernetes import client

    from modelyard.plugins.hooks.kubernetes import KubernetesHook

    client.CoreV1Api(cluster.api).create_namespaced_config_map(
        NAMESPACE, {"metadata": {"name": "probe"}, "data": {"a": "1"}}
    )
    throttled: list[float] = []

    def throttle(request: Any) -> Any:
        if len(throttled) < 2:
            throttled.append(time.monotonic())
            return kmock.Response(status=429, headers={"Retry-After": "1"}, payload={"kind": "Status", "code": 429})
        # kmock keeps the last status a reaction returned: answer the stored object explicitly.
        return kmock.Response(status=200, payload=cluster.get("configmaps", "probe"))

    cluster.emulator["get", "/api/v1/namespaces/modelyard/configmaps/probe"] << throttle

    async def read() -> dict[str, Any]:
        async with await KubernetesHook(connection).get_async_client() as kube:
            assert isinstance(kube, AsyncKubeClient)
            return await kube.get_json(f"/api/v1/namespaces/{NAMESPACE}/configmaps/probe")

    started = time.monotonic()
    answer = asyncio.run(read())
    assert answer["data"] == {"a": "1"}
    assert len(throttled) == 2
    assert time.monotonic() - started >= 2, "each 429 waits the Retry-After second"
