"""The Kubernetes target against a Kubernetes API emulator over real HTTP.

What runs for real: the chart rendered by the real helm binary (pyhelm3), the official
kubernetes client talking HTTP to kmock's KubernetesEmulator, ``deploy.kubernetes`` (rollout
watch, failure reasons, smoke test through the service proxy, rollback decision) and
``deploy.releases`` (shards and values).

What is simulated, because no cluster can run here:

* a small controller inside the emulator that plays the Deployment controller and the
  kubelet: it bumps ``metadata.generation`` when a Deployment's spec changes and advances
  its status (and pods, and Warning events) according to the pod image tag
  (``good``, ``never-ready``, ``bad-image``, ``deadline``, ``predict-500``);
* the service proxy: it answers like the serving pods would, from the plan ConfigMap the
  release wrote (``/readyz`` reports that plan's digest; the admin API is off, as without a token);
* Helm's cluster side (``EmulatedHelm``): helm cannot install into kmock (client-go sends
  the release Secret as protobuf), so upgrade/rollback render the chart with the real helm
  and apply the objects through the kubernetes client, keeping the revision history in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import kmock
import pytest
import yaml
from kubernetes import client

from modelyard.deploy.rollout.helm_release import (
    HelmReleaseError,
    HelmReleases,
    Revision,
    UpgradeResult,
    last_good_revision,
    make_command,
)
from modelyard.deploy.rollout.kubernetes import (
    HelmReleaseTarget,
    RolledBackError,
    RolloutFailedError,
    RolloutTimeoutError,
    SmokeRequest,
    apply_plan,
    deploy_shard,
    deployment_name,
    read_rollout,
    wait_for_rollout,
)
from modelyard.deploy.rollout.releases import Shard, split_plan
from modelyard.deploy.rollout.strategies import TargetError, parse_metrics
from modelyard.deploy.serving.plan import parse_plan, parse_plan_text
from modelyard.plugins.hooks.kubernetes import KubernetesHook

NAMESPACE = "modelyard"
RELEASE = "sea-west"
NAME = deployment_name(RELEASE)
TICK = 0.05
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


# ------------------------------------------------------------------------------ the emulator


@dataclass
class Cluster:
    """kmock's KubernetesEmulator served over HTTP from a background event loop."""

    emulator: kmock.KubernetesEmulator
    url: str
    loop: asyncio.AbstractEventLoop
    api: client.ApiClient
    generations: dict[str, int] = field(default_factory=dict)
    scrapes: list[str] = field(default_factory=list)

    def find(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored object, or None (looked up by plural: keys are parsed resources)."""
        for (resource, ns, obj_name), obj in list(self.emulator.objects.items()):
            if resource.plural == plural and ns == namespace and obj_name == name and not obj.deleted:
                return dict(obj.raw)
        return None

    def get(self, plural: str, name: str) -> dict[str, Any]:
        found = self.find(plural, NAMESPACE, name)
        assert found is not None, f"{plural}/{name} is not in the emulator"
        return found

    def proxy_requests(self) -> list[str]:
        return [f"{r.method.value.upper()} {r.url.path}" for r in list(self.emulator) if "/proxy/" in r.url.path]

    def count(self, method: str, resource: str) -> int:
        return sum(1 for r in list(self.emulator) if r.method.value.upper() == method and resource in r.url.path)


def _image_tag(deployment: dict[str, Any]) -> str:
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    return str(image.rsplit(":", 1)[-1])


class SimulatedController:
    """Plays the Deployment controller and kubelet for the emulator (runs in its event loop)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.spec_hashes: dict[str, str] = {}
        self.changed_at: dict[str, float] = {}

    async def run(self) -> None:
        while True:
            for (resource, namespace, name), obj in list(self.cluster.emulator.objects.items()):
                if resource.plural == "deployments" and not obj.deleted:
                    self.step(namespace, name, obj)
            await asyncio.sleep(TICK)

    def observe_write(self, namespace: str, name: str) -> None:
        """Like the API server: a spec change bumps metadata.generation within the same write."""
        for (resource, ns, obj_name), obj in list(self.cluster.emulator.objects.items()):
            if resource.plural == "deployments" and (ns, obj_name) == (namespace, name) and not obj.deleted:
                self.bump_generation(name, obj)

    def bump_generation(self, name: str, obj: Any) -> int:
        raw = obj.raw
        spec_hash = hashlib.sha256(json.dumps(raw["spec"], sort_keys=True).encode()).hexdigest()
        generation = int(raw.get("metadata", {}).get("generation", 0))
        if self.spec_hashes.get(name) != spec_hash:
            self.spec_hashes[name] = spec_hash
            generation += 1
            obj.patch({"metadata": {"generation": generation}})
            self.changed_at[name] = time.monotonic()
            self.cluster.generations[name] = generation
        return generation

    def step(self, namespace: str, name: str, obj: Any) -> None:
        generation = self.bump_generation(name, obj)
        raw = obj.raw
        if time.monotonic() - self.changed_at[name] < 3 * TICK:
            return  # the controller has not observed the new generation yet
        desired = int(raw["spec"].get("replicas", 1))
        behaviour = _image_tag(raw)
        ready = behaviour in ("good", "predict-500")
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "replicas": desired if ready else 2 * desired,
            "updatedReplicas": desired,
            "readyReplicas": desired,  # the old pods keep serving while the new ones are not ready
            "availableReplicas": desired,
            "conditions": [],
        }
        if behaviour == "deadline":
            status["conditions"] = [
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": f'ReplicaSet "{name}-7d9f" has timed out progressing.',
                }
            ]
        obj.patch({"status": status})
        self.pods(namespace, name, raw, generation, behaviour)

    def pods(self, namespace: str, name: str, deployment: dict[str, Any], generation: int, behaviour: str) -> None:
        objects = self.cluster.emulator.objects
        for (resource, ns, pod_name), _ in list(objects.items()):
            if (
                resource.plural == "pods"
                and ns == namespace
                and pod_name.startswith(f"{name}-g")
                and not pod_name.startswith(f"{name}-g{generation}-")
            ):
                del objects[resource, ns, pod_name]  # pods of older generations are gone
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        for index in range(int(deployment["spec"].get("replicas", 1))):
            pod_name = f"{name}-g{generation}-{index}"
            if self.cluster.find("pods", namespace, pod_name) is None:
                self.add_pod(namespace, pod_name, labels, behaviour)

    def add_pod(self, namespace: str, pod_name: str, labels: dict[str, str], behaviour: str) -> None:
        objects = self.cluster.emulator.objects
        state: dict[str, Any] = {"running": {"startedAt": "2026-11-23T10:00:00Z"}}
        conditions = [{"type": "Ready", "status": "True"}]
        if behaviour == "never-ready":
            conditions = [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "ContainersNotReady",
                    "message": "containers with unready status: [serving]",
                }
            ]
            objects["v1/events", namespace, f"{pod_name}.probe"] = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"{pod_name}.probe", "namespace": namespace},
                "involvedObject": {"kind": "Pod", "name": pod_name, "namespace": namespace},
                "type": "Warning",
                "reason": "Unhealthy",
                "message": "Startup probe failed: HTTP probe failed with statuscode: 503",
            }
        if behaviour == "bad-image":
            state = {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "bad-image"'}}
            conditions = [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}]
        ports = [{"name": "http", "containerPort": 8000}]
        objects["v1/pods", namespace, pod_name] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"name": "serving", "image": "x", "ports": ports}]},
            "status": {
                "phase": "Running" if "running" in state else "Pending",
                "conditions": conditions,
                "containerStatuses": [
                    {
                        "name": "serving",
                        "image": "x",
                        "imageID": "",
                        "ready": behaviour == "good",
                        "restartCount": 0,
                        "state": state,
                    }
                ],
            },
        }


def serve_proxy(cluster: Cluster, request: Any) -> Any:
    """Answer like the serving pods behind ``service/<name>`` (the API server's service proxy)."""
    service = str(request.name).split(":", 1)[0]
    path = str(request.url.path).split("/proxy/", 1)[1]
    deployment = cluster.find("deployments", request.namespace, service)
    if deployment is None:
        return kmock.Response(status=404, payload={"kind": "Status", "message": f'services "{service}" not found'})
    if int(deployment.get("status", {}).get("readyReplicas", 0)) == 0:
        return kmock.Response(status=503, payload={"kind": "Status", "message": "no endpoints available for service"})
    configmap = cluster.find("configmaps", request.namespace, f"{service}-plan") or {}
    plan = parse_plan_text(configmap["data"]["plan.yaml"])
    if path == "readyz":
        return {"ready": True, "plan": {"active_digest": plan.digest()}}
    if path == "admin/plan":  # the chart sets no admin token: the admin API is off
        return kmock.Response(status=403, payload={"error": "admin_disabled", "message": "the admin API is off"})
    if match := re.fullmatch(r"v1/predict/([a-z_]+)/([a-z_]+)", path):
        if _image_tag(deployment) == "predict-500":
            return kmock.Response(status=500, payload={"error": {"code": "inference_failed", "message": "boom"}})
        service_entry = plan.service(match[1], match[2])
        if service_entry is None:
            return kmock.Response(status=404, payload={"error": {"code": "unknown_service"}})
        return {"predictions": [0.5], "model_uri": service_entry.variants[0].model_uri}
    return kmock.Response(status=404, payload={"error": {"code": "not_found"}})


def with_status(answer: Any) -> Any:
    """Always answer with an explicit status: kmock keeps the last status a reaction returned."""
    return answer if isinstance(answer, kmock.Response) else kmock.Response(status=200, payload=answer)


def serve_pod_metrics(cluster: Cluster, request: Any) -> Any:
    """Each pod's own /metrics: 10 ok and 1 failed canary request so far."""
    pod, port = str(request.name).rsplit(":", 1)
    if port != "8000" or cluster.find("pods", request.namespace, pod) is None:
        return kmock.Response(status=503, payload={"kind": "Status", "message": f"pod {pod}:{port} unavailable"})
    cluster.scrapes.append(pod)
    return (
        b"# TYPE modelyard_requests counter\n"
        b'modelyard_requests_total{family="driver_acceptance",region="jakarta",variant="canary",status="ok"} 10\n'
        b'modelyard_requests_total{family="driver_acceptance",region="jakarta",variant="canary",status="error"} 1\n'
    )


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def serve() -> None:
        async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
            for resource in ("apps/v1/deployments", "v1/pods", "v1/events", "v1/services", "v1/configmaps"):
                emulator.resources[resource] = {}
            configuration = client.Configuration()
            configuration.host = str(server.url).rstrip("/")
            cluster = Cluster(emulator, configuration.host, asyncio.get_running_loop(), client.ApiClient(configuration))
            emulator["get", re.compile(r"/api/v1/namespaces/[^/]+/services/[^/]+/proxy/.*")] << (
                lambda request: with_status(serve_proxy(cluster, request))
            )
            emulator["get", re.compile(r"/api/v1/namespaces/[^/]+/pods/[^/]+/proxy/metrics")] << (
                lambda request: with_status(serve_pod_metrics(cluster, request))
            )
            emulator["post", re.compile(r"/api/v1/namespaces/[^/]+/services/[^/]+/proxy/.*")] << (
                lambda request: with_status(serve_proxy(cluster, request))
            )
            simulated = SimulatedController(cluster)
            for method, pattern in (("post", r"/deployments$"), ("patch", r"/deployments/[^/]+$")):
                # A catcher (returns None): the emulator then answers the write as usual.
                emulator[method, re.compile(r"/apis/apps/v1/namespaces/[^/]+" + pattern)] << (
                    lambda request: simulated.observe_write(
                        request.namespace, request.name or (request.data or {}).get("metadata", {}).get("name")
                    )
                )
            controller = asyncio.create_task(simulated.run())
            holder["cluster"], holder["stop"] = cluster, asyncio.Event()
            started.set()
            await holder["stop"].wait()
            controller.cancel()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), name="kmock", daemon=True)
    thread.start()
    assert started.wait(15), "the Kubernetes emulator did not start"
    cluster: Cluster = holder["cluster"]
    try:
        yield cluster
    finally:
        cluster.api.close()
        cluster.loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(15)


# ------------------------------------------------------------------------------ Helm's cluster side


class EmulatedHelm:
    """Helm's cluster side for the emulator: real ``helm template``, objects applied over HTTP."""

    APPLIED_KINDS = ("ConfigMap", "Service", "Deployment")

    def __init__(self, cluster: Cluster, helm: HelmReleases) -> None:
        self.cluster = cluster
        self.helm = helm
        self.history: list[Revision] = []
        self.values: dict[int, dict[str, Any]] = {}
        self.rollbacks: list[int] = []

    async def upgrade(self, release: str, values: dict[str, Any], *, description: str = "") -> UpgradeResult:
        plain = json.loads(json.dumps(values))
        if plain.get("image", {}).get("tag") == "helm-wait-fails":
            # What `helm upgrade --rollback-on-failure --wait` reports when pods never get ready.
            raise HelmReleaseError(
                f"release '{release}': helm upgrade failed: Error: UPGRADE FAILED: context deadline exceeded"
            )
        if self.history and self.history[-1].status == "deployed" and self.values[self.history[-1].revision] == plain:
            return UpgradeResult(release, self.history[-1].revision, changed=False, status="deployed")
        return await self._apply(release, plain, description)

    async def last_good_revision(self, release: str) -> int | None:
        return last_good_revision(self.history)

    async def rollback(self, release: str, revision: int) -> None:
        self.rollbacks.append(revision)
        await self._apply(release, self.values[revision], f"Rollback to {revision}")

    async def _apply(self, release: str, values: dict[str, Any], description: str) -> UpgradeResult:
        objects = await self.helm.template(release, values)
        await asyncio.to_thread(self._apply_objects, objects)
        self.history = [Revision(r.revision, "superseded", r.description) for r in self.history]
        revision = len(self.history) + 1
        self.history.append(Revision(revision, "deployed", description))
        self.values[revision] = values
        return UpgradeResult(release, revision, changed=True, status="deployed")

    def _apply_objects(self, objects: list[dict[str, Any]]) -> None:
        core, apps = client.CoreV1Api(self.cluster.api), client.AppsV1Api(self.cluster.api)
        for obj in (o for kind in self.APPLIED_KINDS for o in objects if o["kind"] == kind):
            name, kind = obj["metadata"]["name"], obj["kind"]
            create, patch = {
                "ConfigMap": (core.create_namespaced_config_map, core.patch_namespaced_config_map),
                "Service": (core.create_namespaced_service, core.patch_namespaced_service),
                "Deployment": (apps.create_namespaced_deployment, apps.patch_namespaced_deployment),
            }[kind]
            if self.cluster.find(f"{kind.lower()}s", NAMESPACE, name) is not None:
                patch(name, NAMESPACE, obj)
            else:
                create(NAMESPACE, obj)


@pytest.fixture
def helm_releases() -> HelmReleases:
    return HelmReleases(make_command(), NAMESPACE)


@pytest.fixture
def emulated_helm(cluster: Cluster, helm_releases: HelmReleases) -> EmulatedHelm:
    return EmulatedHelm(cluster, helm_releases)


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
    assert result.digest == shard.digest
    assert result.rollout is not None
    assert result.rollout.complete
    assert result.rollout.observed_generation == cluster.generations[NAME] == 1
    assert (result.rollout.updated, result.rollout.ready, result.rollout.available) == (2, 2, 2)
    base = f"/api/v1/namespaces/{NAMESPACE}/services/{NAME}:http/proxy"
    assert cluster.proxy_requests() == [
        f"GET {base}/readyz",
        f"POST {base}/v1/predict/driver_acceptance/jakarta",
    ]
    # The plan the pods read is the shard's plan, so the digest they report is the one recorded.
    configmap = cluster.get("configmaps", f"{NAME}-plan")
    assert parse_plan(yaml.safe_load(configmap["data"]["plan.yaml"])).digest() == shard.digest


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
    assert _image_tag(restored) == "good"
    configmap = cluster.get("configmaps", f"{NAME}-plan")
    assert parse_plan_text(configmap["data"]["plan.yaml"]).digest() == shard_for(1).digest
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
