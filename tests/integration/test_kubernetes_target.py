"""The Kubernetes target against a Kubernetes API emulator over real HTTP.

What runs for real: the chart rendered by the real helm binary (pyhelm3), the official
kubernetes client talking HTTP to kmock's KubernetesEmulator, ``deploy.rollout.helm_target`` (rollout
watch, failure reasons, smoke test through the service proxy, rollback decision) and
``deploy.rollout.releases`` (shards and values).

What is simulated, because no cluster can run here:

the Deployment controller, the serving pods behind the service and pod proxies, and Helm's
cluster side: see ``kube_emulator.py`` (``/readyz`` reports the plan's digest; the admin API is
off, as without a token).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import yaml
from kube_emulator import NAMESPACE, TICK, Cluster, EmulatedHelm, image_tag

from modelyard.deploy.rollout.deployment_status import (
    RolloutFailedError,
    RolloutTimeoutError,
    read_rollout,
    wait_for_rollout,
)
from modelyard.deploy.rollout.helm_target import (
    HelmReleaseTarget,
    RolledBackError,
    apply_plan,
    deploy_shard,
    deployment_name,
)
from modelyard.deploy.rollout.kube_smoke import SmokeRequest
from modelyard.deploy.rollout.releases import Shard, split_plan
from modelyard.deploy.rollout.strategies import TargetError, parse_metrics
from modelyard.deploy.serving.plan import parse_plan, parse_plan_text
from modelyard.plugins.hooks.kubernetes import KubernetesHook

RELEASE = "sea-west"
NAME = deployment_name(RELEASE)
BASE_VALUES: dict[str, Any] = {
    "mlflow": {"existingSecret": "modelyard-mlflow"},
    "autoscaling": {"enabled": False},
    "replicaCount": 2,
    "image": {"tag": "good"},
}


def make_plan(version: int, regions: tuple[str, ...] = ("jakarta", "surabaya")) -> Any:
    return parse_plan(
        {
            "version": 1,
            "services": [
                {
                    "family": "driver_acceptance",
                    "region": region,
                    "timezone": "Asia/Jakarta",
                    "variants": [
                        {
                            "name": "champion",
                            "model_uri": f"models:/driver_acceptance-{region}/{version}",
                            "weight": 100,
                        }
                    ],
                }
                for region in regions
            ],
        }
    )


def shard_for(version: int) -> Shard:
    (shard,) = split_plan(make_plan(version), {RELEASE: ["jakarta", "surabaya", "singapore"]})
    return shard


def deploy(cluster: Cluster, helm: EmulatedHelm, shard: Shard, tag: str = "good", timeout: float = 5) -> Any:
    values = {**BASE_VALUES, "image": {"tag": tag}}
    smoke = [SmokeRequest("driver_acceptance", "jakarta", {"instances": [{"pickup_distance_km": 1.2}]})]
    return asyncio.run(
        deploy_shard(
            helm, cluster.api, NAMESPACE, shard,
            base_values=values, timeout_seconds=timeout, poll_seconds=TICK, smoke_requests=smoke,
        )
    )  # fmt: skip


# ------------------------------------------------------------------------------ the tests


def test_rollout_is_watched_then_smoke_tested_through_the_service(
    cluster: Cluster, emulated_helm: EmulatedHelm
) -> None:
    shard = shard_for(1)
    result = deploy(cluster, emulated_helm, shard)

    assert result.changed is True
    assert result.revision == 1
    assert result.plan_digest == shard.plan_digest
    assert result.rollout is not None
    assert result.rollout.complete
    assert result.rollout.observed_generation == cluster.generations[NAME] == 1
    assert (result.rollout.updated, result.rollout.ready, result.rollout.available) == (2, 2, 2)
    base = f"/api/v1/namespaces/{NAMESPACE}/services/{NAME}:http/proxy"
    assert cluster.proxy_requests() == [
        f"GET {base}/readyz",
        f"POST {base}/v1/predict/driver_acceptance/jakarta",
    ]
    # The smoke prediction says it is a probe, so the server keeps its row of zeros out of the prediction log.
    assert [h.get("x-modelyard-probe") for h in cluster.proxy_headers("POST", "/v1/predict/")] == ["smoke"]
    # The plan the pods read is the shard's plan, so the digest they report is the one recorded.
    configmap = cluster.get("configmaps", f"{NAME}-plan")
    assert parse_plan(yaml.safe_load(configmap["data"]["plan.yaml"])).digest() == shard.plan_digest


def test_the_same_plan_twice_changes_nothing(cluster: Cluster, emulated_helm: EmulatedHelm) -> None:
    first = deploy(cluster, emulated_helm, shard_for(1))
    writes = cluster.count("PATCH", "/deployments/") + cluster.count("POST", "/deployments")
    proxied = len(cluster.proxy_requests())

    again = deploy(cluster, emulated_helm, shard_for(1))

    assert again.changed is False
    assert again.revision == first.revision
    assert [r.revision for r in emulated_helm.history] == [1]
    assert cluster.count("PATCH", "/deployments/") + cluster.count("POST", "/deployments") == writes
    assert len(cluster.proxy_requests()) == proxied


def test_a_new_plan_rolls_the_pods(cluster: Cluster, emulated_helm: EmulatedHelm) -> None:
    deploy(cluster, emulated_helm, shard_for(1))
    checksum_1 = cluster.get("deployments", NAME)["spec"]["template"]["metadata"]
    checksum_1 = checksum_1["annotations"]["checksum/plan"]

    result = deploy(cluster, emulated_helm, shard_for(2))

    deployment = cluster.get("deployments", NAME)
    assert deployment["spec"]["template"]["metadata"]["annotations"]["checksum/plan"] != checksum_1
    assert result.revision == 2
    assert result.rollout is not None
    assert result.rollout.observed_generation == 2


def test_rollout_that_never_becomes_ready_times_out_and_rolls_back(
    cluster: Cluster, emulated_helm: EmulatedHelm
) -> None:
    deploy(cluster, emulated_helm, shard_for(1))

    started = time.monotonic()
    with pytest.raises(RolledBackError) as failure:
        deploy(cluster, emulated_helm, shard_for(2), tag="never-ready", timeout=1.0)

    assert time.monotonic() - started < 10
    error = failure.value
    assert error.release == RELEASE
    assert error.restored_revision == 1
    assert emulated_helm.rollbacks == [1]
    message = str(error)
    assert "rolled back to revision 1" in message
    assert "timed out after 1s" in message
    assert "2/2 updated, 2 ready, 2 available, 4 total" in message
    assert "Startup probe failed: HTTP probe failed with statuscode: 503" in message
    assert "Ready is False: ContainersNotReady" in message
    # The rollback restored the good pods and the old plan.
    restored = cluster.get("deployments", NAME)
    assert image_tag(restored) == "good"
    configmap = cluster.get("configmaps", f"{NAME}-plan")
    assert parse_plan_text(configmap["data"]["plan.yaml"]).digest() == shard_for(1).plan_digest
    assert [r.status for r in emulated_helm.history] == ["superseded", "superseded", "deployed"]


def test_pods_that_cannot_pull_their_image_fail_fast(cluster: Cluster, emulated_helm: EmulatedHelm) -> None:
    deploy(cluster, emulated_helm, shard_for(1))
    started = time.monotonic()
    with pytest.raises(RolledBackError) as failure:
        deploy(cluster, emulated_helm, shard_for(2), tag="bad-image", timeout=60)
    assert time.monotonic() - started < 10, "an image pull error must not wait for the timeout"
    assert 'waiting: ImagePullBackOff: Back-off pulling image "bad-image"' in str(failure.value)
    assert failure.value.restored_revision == 1


def test_progress_deadline_exceeded_is_a_failure(cluster: Cluster, emulated_helm: EmulatedHelm) -> None:
    deploy(cluster, emulated_helm, shard_for(1))
    with pytest.raises(RolledBackError) as failure:
        deploy(cluster, emulated_helm, shard_for(2), tag="deadline", timeout=60)
    assert "has timed out progressing" in str(failure.value)


def test_failed_smoke_prediction_rolls_back(cluster: Cluster, emulated_helm: EmulatedHelm) -> None:
    deploy(cluster, emulated_helm, shard_for(1))
    with pytest.raises(RolledBackError) as failure:
        deploy(cluster, emulated_helm, shard_for(2), tag="predict-500")
    message = str(failure.value)
    assert f"service/{NAME} POST /v1/predict/driver_acceptance/jakarta answered 500" in message
    assert "inference_failed" in message
    assert failure.value.restored_revision == 1


def test_first_install_that_fails_has_nothing_to_roll_back_to(cluster: Cluster, emulated_helm: EmulatedHelm) -> None:
    with pytest.raises(RolledBackError) as failure:
        deploy(cluster, emulated_helm, shard_for(1), tag="never-ready", timeout=0.5)
    assert failure.value.restored_revision is None
    assert "NOT rolled back: no earlier good revision" in str(failure.value)
    assert emulated_helm.rollbacks == []


def test_watcher_waits_for_the_controller_to_observe_the_new_generation(
    cluster: Cluster, emulated_helm: EmulatedHelm
) -> None:
    deploy(cluster, emulated_helm, shard_for(1))
    # Right after a spec change the old status still says "all ready": that must not count.
    asyncio.run(emulated_helm.upgrade(RELEASE, {**BASE_VALUES, "plan": shard_for(3).plan.model_dump(mode="json")}))
    status = wait_for_rollout(cluster.api, NAMESPACE, NAME, timeout_seconds=5, poll_seconds=TICK)
    assert status.observed_generation == status.generation == 2


def test_timeout_error_carries_reasons(cluster: Cluster, emulated_helm: EmulatedHelm) -> None:
    asyncio.run(
        emulated_helm.upgrade(
            RELEASE, {**BASE_VALUES, "image": {"tag": "never-ready"}, "plan": shard_for(1).plan.model_dump(mode="json")}
        )
    )
    with pytest.raises(RolloutTimeoutError) as failure:
        wait_for_rollout(cluster.api, NAMESPACE, NAME, timeout_seconds=0.5, poll_seconds=TICK)
    assert any("Startup probe failed" in r for r in failure.value.reasons)
    assert not isinstance(failure.value, RolloutFailedError)


def test_the_airflow_connection_reaches_the_cluster(
    cluster: Cluster, emulated_helm: EmulatedHelm, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy(cluster, emulated_helm, shard_for(1))
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": cluster.url}}],
        "users": [{"name": "deployer", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "deployer"}}],
        "current-context": "emulator",
    }
    extra = {"kube_config": json.dumps(kubeconfig), "namespace": NAMESPACE}
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps({"conn_type": "kubernetes", "extra": extra}))
    api = KubernetesHook().get_conn()
    try:
        assert read_rollout(api, NAMESPACE, NAME).complete
    finally:
        api.close()
    deployment_reads = [r for r in list(cluster.emulator) if r.url.path.endswith(f"/deployments/{NAME}")]
    assert deployment_reads[-1].headers.get("Authorization") == "Bearer t0ken"


def test_apply_plan_stops_at_the_first_failing_release(cluster: Cluster, emulated_helm: EmulatedHelm) -> None:
    plan = make_plan(1, regions=("jakarta", "hanoi"))
    groups = {"sea-west": ["jakarta"], "sea-east": ["hanoi"]}
    values = {**BASE_VALUES, "image": {"tag": "never-ready"}}
    with pytest.raises(RolledBackError) as failure:
        asyncio.run(
            apply_plan(
                emulated_helm, cluster.api, NAMESPACE, plan, groups,
                base_values=values, timeout_seconds=0.5, poll_seconds=TICK,
            )
        )  # fmt: skip
    assert failure.value.release == "sea-west"
    assert cluster.find("deployments", NAMESPACE, deployment_name("sea-east")) is None  # never touched


def test_helm_wait_failure_is_reported_as_helms_rollback(cluster: Cluster, emulated_helm: EmulatedHelm) -> None:
    deploy(cluster, emulated_helm, shard_for(1))
    with pytest.raises(RolledBackError) as failure:
        deploy(cluster, emulated_helm, shard_for(2), tag="helm-wait-fails")
    assert failure.value.by_helm is True
    assert "UPGRADE FAILED: context deadline exceeded" in str(failure.value)
    assert "rolled back by helm (--rollback-on-failure)" in str(failure.value)
    assert emulated_helm.rollbacks == []  # helm did it; modelyard does not roll back twice


def target(cluster: Cluster, helm: EmulatedHelm, tag: str = "good", timeout: float = 5) -> HelmReleaseTarget:
    smoke = [SmokeRequest("driver_acceptance", "jakarta", {"instances": [{"pickup_distance_km": 1.2}]})]
    return HelmReleaseTarget(
        helm, cluster.api, NAMESPACE, RELEASE, ("jakarta", "surabaya", "singapore"),
        base_values={**BASE_VALUES, "image": {"tag": tag}}, timeout_seconds=timeout, poll_seconds=TICK,
        smoke_requests=smoke,
    )  # fmt: skip


def test_release_target_for_the_rollout_strategies(cluster: Cluster, emulated_helm: EmulatedHelm) -> None:
    release = target(cluster, emulated_helm)
    assert release.live() is None  # nothing deployed yet
    assert release.apply(make_plan(1)) is True
    assert release.apply(make_plan(1)) is False  # idempotent
    live = release.live()
    assert live is not None
    assert live.digest() == make_plan(1).digest()
    metrics = parse_metrics(release.metrics_text())
    # Two ready pods, each counting 10 ok and 1 error: the release-wide counters are the sums.
    assert metrics.requests[("driver_acceptance", "jakarta", "canary", "ok")] == 20
    assert metrics.requests[("driver_acceptance", "jakarta", "canary", "error")] == 2
    assert sorted(cluster.scrapes) == [f"{NAME}-g1-0", f"{NAME}-g1-1"]

    with pytest.raises(TargetError, match="rolled back to revision 1"):
        target(cluster, emulated_helm, tag="never-ready", timeout=0.5).apply(make_plan(2))
    assert release.live().digest() == make_plan(1).digest()  # type: ignore[union-attr]
