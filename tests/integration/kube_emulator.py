"""A Kubernetes API emulator with a simulated controller, for tests that need a cluster.

kmock's KubernetesEmulator over real HTTP, plus what no cluster here can provide:

* ``SimulatedController`` plays the Deployment controller and the kubelet: it bumps
  ``metadata.generation`` when a Deployment's spec changes and advances its status (and pods,
  and Warning events) according to the pod image tag (``good``, ``never-ready``,
  ``bad-image``, ``deadline``, ``predict-500``);
* the service proxy answers like the serving pods would, from the plan ConfigMap the release
  wrote (``/admin/plan`` reports that plan's digest); the pod proxy serves each pod's
  ``/metrics`` (10 ok and 1 failed canary request);
* ``EmulatedHelm`` is Helm's cluster side: helm cannot install into kmock (client-go sends the
  release Secret as protobuf), so upgrade/rollback render the chart with the real helm and
  apply the objects through the kubernetes client, keeping the revision history in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import kmock
from kubernetes import client

from modelyard.deploy.rollout.helm_release import (
    HelmReleaseError,
    HelmReleases,
    Revision,
    UpgradeResult,
    last_good_revision,
)
from modelyard.deploy.serving.plan import parse_plan_text

NAMESPACE = "modelyard"
TICK = 0.05


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

    def proxy_headers(self, method: str, path_part: str) -> list[dict[str, str]]:
        """The headers of each proxied ``method`` request whose path contains ``path_part`` (lower-cased names)."""
        return [
            {k.lower(): v for k, v in r.headers.items()}
            for r in list(self.emulator)
            if "/proxy/" in r.url.path and path_part in r.url.path and r.method.value.upper() == method
        ]

    def count(self, method: str, resource: str) -> int:
        return sum(1 for r in list(self.emulator) if r.method.value.upper() == method and resource in r.url.path)


def image_tag(deployment: dict[str, Any]) -> str:
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
        behaviour = image_tag(raw)
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
    if match := re.fullmatch(r"v1/models/([a-z_]+)/([a-z_]+)", path):  # what each served version takes
        service_entry = plan.service(match[1], match[2])
        if service_entry is None:
            return kmock.Response(status=404, payload={"error": {"code": "unknown_service"}})
        return {
            "family": service_entry.family,
            "region": service_entry.region,
            "variants": [
                {"variant": v.name, "uri": v.model_uri, "weight": v.weight, "inputs": [{"name": "distance_km"}]}
                for v in service_entry.variants
            ],
            "shadows": [{"shadow": s.name, "uri": s.model_uri, "inputs": []} for s in service_entry.shadows],
            "plan_digest": plan.digest(),
        }
    if match := re.fullmatch(r"v1/predict/([a-z_]+)/([a-z_]+)", path):
        if image_tag(deployment) == "predict-500":
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


@contextlib.contextmanager
def running_cluster() -> Iterator[Cluster]:
    """The emulator with the simulated controller, served over HTTP from a background thread."""
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
