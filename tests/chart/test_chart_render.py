"""The chart renders valid Kubernetes objects for every values combination we ship.

Each case is rendered with the real ``helm template``; every object is validated against
the strict Kubernetes JSON schemas of the oldest supported (1.30) and newest (1.37)
versions, except CRD kinds, which kubernetes-validate cannot know and which are asserted
on explicitly below.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from modelyard.deploy.serving.plan import parse_plan

from .conftest import CHART, RELEASE, ROLLING_PLAN, Render, merge

KUBERNETES_VERSIONS = ("1.30", "1.37")
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/version",
    "helm.sh/chart",
)

CANARY_PLAN: dict[str, Any] = {
    "version": 1,
    "services": [
        {
            "family": "driver_acceptance",
            "region": "jakarta",
            "timezone": "Asia/Jakarta",
            "variants": [
                {"name": "champion", "model_uri": "models:/driver_acceptance-jakarta/7", "weight": 90},
                {"name": "canary", "model_uri": "models:/driver_acceptance-jakarta/8", "weight": 10},
            ],
        }
    ],
}
SHADOW_PLAN: dict[str, Any] = {
    "version": 1,
    "services": [
        {
            "family": "pickup_eta",
            "region": "surabaya",
            "timezone": "Asia/Jakarta",
            "variants": [{"name": "champion", "model_uri": "models:/pickup_eta-surabaya/3", "weight": 100}],
            "shadows": [{"name": "challenger", "model_uri": "models:/pickup_eta-surabaya/4"}],
            "rules": [{"name": "evening", "variant": "champion", "hours": {"start": 17, "end": 21}}],
        }
    ],
}

CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "canary": {"plan": CANARY_PLAN, "planDigest": "sha256:1f2e"},
    "shadow": {"plan": SHADOW_PLAN},
    "ingress": {"ingress": {"enabled": True, "className": "nginx", "tls": True, "hostname": "serving.example.com"}},
    "hpa-off": {"autoscaling": {"enabled": False}, "replicaCount": 3},
    "sharded": {"shard": {"name": "sea-east", "regions": ["ho_chi_minh", "hanoi", "bangkok"]}},
    "servicemonitor": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}}},
    "networkpolicy": {
        "networkPolicy": {
            "enabled": True,
            "allowExternal": False,
            "ingressFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway"}}}],
            "allowExternalEgress": False,
            "extraEgress": [{"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"port": 5000}]}],
        }
    },
    "everything": {
        "plan": CANARY_PLAN,
        "commonLabels": {"team": "ml-platform"},
        "commonAnnotations": {"owner": "ml-platform"},
        "image": {"digest": "sha256:" + "a" * 64, "pullSecrets": ["registry"]},
        "mlflow": {"usernameKey": "username", "passwordKey": "password"},
        "autoscaling": {
            "targetMemory": 80,
            "customMetrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": "modelyard_requests_per_second"},
                        "target": {"type": "AverageValue", "averageValue": "200"},
                    },
                }
            ],
        },
        "pdb": {"minAvailable": "", "maxUnavailable": "25%"},
        "ingress": {"enabled": True},
        "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
        "networkPolicy": {"enabled": True},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "nodeSelector": {"kubernetes.io/arch": "amd64"},
        "podLabels": {"cost-center": "ml"},
        "serving": {
            "workers": 4,
            "adminTokenSecret": {"name": "modelyard-admin"},
            "extraEnv": [{"name": "MODELYARD_BATCH_MAX", "value": "32"}],
        },
    },
}
EXPECTED_KINDS = {
    "defaults": {
        "Deployment",
        "Service",
        "ConfigMap",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceAccount",
        "Pod",  # the `helm test` pod
    },
}


@pytest.mark.parametrize("plan", [ROLLING_PLAN, CANARY_PLAN, SHADOW_PLAN])
def test_test_plans_are_real_plans(plan: dict[str, Any]) -> None:
    parse_plan(plan, "test plan")  # the matrix renders what the deploy stage really produces


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.fixture(scope="module")
def rendered(render: Render) -> dict[str, list[dict[str, Any]]]:
    return {name: render(values) for name, values in CASES.items()}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_is_valid_kubernetes(rendered: dict[str, list[dict[str, Any]]], case: str, version: str) -> None:
    checked = 0
    for obj in rendered[case]:
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            continue  # asserted on in test_servicemonitor and test_chart_monitoring.py
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(
                f"{case}: {obj['kind']}/{obj['metadata']['name']} invalid for {version} at {path}: {exc.message}"
            )
        checked += 1
    assert checked >= 5  # Deployment, Service, ConfigMap, PDB, ServiceAccount at least


def test_default_objects(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert {o["kind"] for o in rendered["defaults"]} == EXPECTED_KINDS["defaults"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_object_is_labelled_and_namespaced(rendered: dict[str, list[dict[str, Any]]], case: str) -> None:
    for obj in rendered[case]:
        labels = obj["metadata"]["labels"]
        missing = [key for key in STANDARD_LABELS if key not in labels]
        assert not missing, f"{obj['kind']} lacks labels {missing}"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert obj["metadata"]["namespace"] == "modelyard"


def test_selector_matches_pod_labels_and_service(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["defaults"]
    deployment = one(objects, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert one(objects, "Service")["spec"]["selector"] == selector
    assert one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
    # Nothing that changes between upgrades may be part of the immutable selector.
    assert "app.kubernetes.io/version" not in selector
    assert "helm.sh/chart" not in selector


def test_probes_gate_traffic_on_loaded_models(rendered: dict[str, list[dict[str, Any]]]) -> None:
    serving = container(rendered["defaults"])
    startup, readiness, liveness = serving["startupProbe"], serving["readinessProbe"], serving["livenessProbe"]
    assert readiness["httpGet"] == {"path": "/readyz", "port": "http"}
    assert liveness["httpGet"] == {"path": "/healthz", "port": "http"}
    assert startup["httpGet"]["path"] == "/readyz"
    # The startup budget covers a model download of at least ten minutes before liveness kicks in.
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 600


def test_startup_budget_is_configurable(render: Render) -> None:
    serving = container(render({"startupProbe": {"failureThreshold": 180, "periodSeconds": 10}}))
    assert serving["startupProbe"]["failureThreshold"] * serving["startupProbe"]["periodSeconds"] == 1800


def test_rollout_never_drops_capacity_and_drains(rendered: dict[str, list[dict[str, Any]]]) -> None:
    deployment = one(rendered["defaults"], "Deployment")
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert strategy["rollingUpdate"]["maxSurge"] >= 1
    pod = deployment["spec"]["template"]["spec"]
    sleep = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert 0 < sleep < pod["terminationGracePeriodSeconds"]


def test_command_serves_the_mounted_plan(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["everything"]
    serving = container(objects)
    assert serving["command"] == ["modelyard"]
    args = serving["args"]
    assert args[0] == "serve"
    assert args[args.index("--plan") + 1] == "/etc/modelyard/plan.yaml"
    assert args[args.index("--port") + 1] == "8000"
    assert args[args.index("--workers") + 1] == "4"
    mounts = {m["name"]: m for m in serving["volumeMounts"]}
    assert mounts["plan"]["mountPath"] == "/etc/modelyard"
    volumes = {v["name"]: v for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    configmap = one(objects, "ConfigMap")
    assert volumes["plan"]["configMap"]["name"] == configmap["metadata"]["name"]
    assert yaml.safe_load(configmap["data"]["plan.yaml"]) == CANARY_PLAN


def test_pod_is_hardened_with_writable_cache(rendered: dict[str, list[dict[str, Any]]]) -> None:
    pod = one(rendered["defaults"], "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    security = pod["containers"][0]["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    # A read-only root needs writable scratch: the model cache and /tmp are emptyDirs.
    assert "emptyDir" in volumes[mounts["/var/cache/modelyard"]]
    assert "emptyDir" in volumes[mounts["/tmp"]]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["MODELYARD_SERVE_MODEL_CACHE"]["value"] == "/var/cache/modelyard"
    assert "MODELYARD_SERVE_ADMIN_TOKEN" not in env  # no adminTokenSecret: the admin API stays off


def test_model_artifacts_run_no_code_unless_the_values_allow_it(render: Render) -> None:
    def env(values: dict[str, Any]) -> dict[str, Any]:
        pod = one(render(values), "Deployment")["spec"]["template"]["spec"]
        return {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}

    defaults = env({})
    assert defaults["MODELYARD_SERVE_ALLOWED_FUNCTION_MODULES"] == ""
    assert defaults["MODELYARD_SERVE_ALLOW_PICKLE"] == "0"
    allowed = env({"serving": {"allowedFunctionModules": ["acme.features", "acme_extra"], "allowPickle": True}})
    assert allowed["MODELYARD_SERVE_ALLOWED_FUNCTION_MODULES"] == "acme.features,acme_extra"
    assert allowed["MODELYARD_SERVE_ALLOW_PICKLE"] == "1"


def test_prediction_log_writes_to_the_claimed_volume(render: Render) -> None:
    values = {"predictionLog": {"enabled": True, "existingClaim": "modelyard-storage", "sampleRate": 0.2}}
    pod = one(render(values), "Deployment")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["MODELYARD_SERVE_LOG_DIR"] == "/var/lib/modelyard/samples"
    assert env["MODELYARD_SERVE_SAMPLE_RATE"] == "0.2"
    assert env["MODELYARD_SERVE_SAMPLE_ROTATE_SECONDS"] == "300"
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "prediction-log")
    assert (mount["mountPath"], mount["subPath"]) == ("/var/lib/modelyard/samples", "monitoring/samples")
    volume = next(v for v in pod["volumes"] if v["name"] == "prediction-log")
    assert volume["persistentVolumeClaim"] == {"claimName": "modelyard-storage"}


def test_prediction_log_ships_to_an_object_store_from_an_empty_dir_spool(render: Render) -> None:
    url = "s3://ml-platform/modelyard/monitoring/samples"
    values = {"predictionLog": {"enabled": True, "url": url, "options": {"endpoint_url": "${S3_ENDPOINT}"}}}
    pod = one(render(values), "Deployment")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["MODELYARD_SERVE_LOG_DIR"] == "/var/lib/modelyard/samples"
    assert env["MODELYARD_SERVE_LOG_URL"] == url
    assert json.loads(env["MODELYARD_SERVE_LOG_OPTIONS"]) == {"endpoint_url": "${S3_ENDPOINT}"}
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "prediction-log")
    assert "subPath" not in mount
    volume = next(v for v in pod["volumes"] if v["name"] == "prediction-log")
    assert volume == {"name": "prediction-log", "emptyDir": {"sizeLimit": "1Gi"}}


def test_prediction_log_is_off_by_default(rendered: dict[str, list[dict[str, Any]]]) -> None:
    pod = one(rendered["defaults"], "Deployment")["spec"]["template"]["spec"]
    assert "MODELYARD_SERVE_SAMPLE_RATE" not in {e["name"] for e in pod["containers"][0]["env"]}
    assert "prediction-log" not in {v["name"] for v in pod["volumes"]}


def test_resources_and_topology_spread(rendered: dict[str, list[dict[str, Any]]]) -> None:
    pod = one(rendered["defaults"], "Deployment")["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["requests"]["cpu"]
    assert resources["requests"]["memory"]
    assert resources["limits"]["memory"]
    keys = [c["topologyKey"] for c in pod["topologySpreadConstraints"]]
    assert keys == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    selector = one(rendered["defaults"], "Deployment")["spec"]["selector"]["matchLabels"]
    assert all(c["labelSelector"]["matchLabels"] == selector for c in pod["topologySpreadConstraints"])


def test_checksum_rolls_pods_only_when_the_plan_changes(render: Render) -> None:
    def checksum(values: dict[str, Any]) -> str:
        annotations = one(render(values), "Deployment")["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/plan"])

    baseline = checksum({})
    assert len(baseline) == 64
    assert checksum({}) == baseline
    assert checksum({"replicaCount": 5, "service": {"port": 8080}}) == baseline
    bumped = merge(ROLLING_PLAN, {})
    bumped["services"][0]["variants"][0]["model_uri"] = "models:/driver_acceptance-jakarta/8"
    assert checksum({"plan": bumped}) != baseline
    assert checksum({"plan": CANARY_PLAN}) != baseline


def test_mlflow_credentials_only_by_secret_reference(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["everything"]
    assert not [o for o in objects if o["kind"] == "Secret"]
    env = {e["name"]: e for e in container(objects)["env"]}
    for name, key in [
        ("MLFLOW_TRACKING_URI", "tracking-uri"),
        ("MLFLOW_TRACKING_USERNAME", "username"),
        ("MLFLOW_TRACKING_PASSWORD", "password"),
    ]:
        assert "value" not in env[name]
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "modelyard-mlflow", "key": key}
    assert "MLFLOW_TRACKING_TOKEN" not in env  # its key is empty: not referenced at all
    token = env["MODELYARD_SERVE_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token == {"name": "modelyard-admin", "key": "admin-token"}


def strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return [node] if isinstance(node, str) else []


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_secret_values_anywhere(rendered: dict[str, list[dict[str, Any]]], case: str) -> None:
    objects = rendered[case]
    assert not [o for o in objects if o["kind"] == "Secret"]
    own = f"http://{one(objects, 'Service')['metadata']['name']}.modelyard.svc:"  # the helm test pod's target
    urls = [s for o in objects for s in strings(o) if "://" in s and not s.startswith(own)]
    assert not urls, f"{case}: an endpoint is rendered in clear: {urls}"
    for env in container(objects)["env"]:
        if any(word in env["name"] for word in ("MLFLOW", "PASSWORD", "TOKEN", "SECRET")):
            assert set(env) == {"name", "valueFrom"}, env
            assert "secretKeyRef" in env["valueFrom"], env


def test_hpa_owns_replicas(rendered: dict[str, list[dict[str, Any]]]) -> None:
    with_hpa = rendered["defaults"]
    assert "replicas" not in one(with_hpa, "Deployment")["spec"]
    hpa = one(with_hpa, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": one(with_hpa, "Deployment")["metadata"]["name"],
    }
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]

    without = rendered["hpa-off"]
    assert not [o for o in without if o["kind"] == "HorizontalPodAutoscaler"]
    assert one(without, "Deployment")["spec"]["replicas"] == 3


def test_hpa_custom_metrics(rendered: dict[str, list[dict[str, Any]]]) -> None:
    metrics = one(rendered["everything"], "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert [m["type"] for m in metrics] == ["Resource", "Resource", "Pods"]
    assert metrics[2]["pods"]["metric"]["name"] == "modelyard_requests_per_second"


def test_pdb(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert one(rendered["defaults"], "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    pdb = one(rendered["everything"], "PodDisruptionBudget")["spec"]
    assert pdb["maxUnavailable"] == "25%"
    assert "minAvailable" not in pdb


def test_ingress(rendered: dict[str, list[dict[str, Any]]]) -> None:
    ingress = one(rendered["ingress"], "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "serving.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": one(rendered["ingress"], "Service")["metadata"]["name"], "port": {"name": "http"}}
    assert ingress["spec"]["tls"] == [{"hosts": ["serving.example.com"], "secretName": "serving.example.com-tls"}]
    assert not [o for o in rendered["defaults"] if o["kind"] == "Ingress"]


def test_servicemonitor(rendered: dict[str, list[dict[str, Any]]]) -> None:
    monitor = one(rendered["servicemonitor"], "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    service = one(rendered["servicemonitor"], "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["modelyard"]}
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] == "http"
    assert endpoint["path"] == "/metrics"
    assert set(monitor["spec"]) == {"jobLabel", "namespaceSelector", "selector", "endpoints"}
    assert set(endpoint) == {"port", "path", "interval", "scrapeTimeout"}
    assert not [o for o in rendered["defaults"] if o["kind"] == "ServiceMonitor"]


def test_networkpolicy_restricts_sources_and_egress(rendered: dict[str, list[dict[str, Any]]]) -> None:
    policy = one(rendered["networkpolicy"], "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    sources = policy["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway"}}} in sources
    assert policy["ingress"][0]["ports"] == [{"port": 8000, "protocol": "TCP"}]
    egress = policy["egress"]
    assert {"port": 53, "protocol": "UDP"} in egress[0]["ports"]
    assert egress[1]["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    assert {} not in egress
    open_policy = one(rendered["everything"], "NetworkPolicy")["spec"]
    assert "from" not in open_policy["ingress"][0]
    assert open_policy["egress"] == [{}]


def test_sharded_release_is_labelled(render: Render, rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["sharded"]
    for obj in objects:
        assert obj["metadata"]["labels"]["modelyard.io/shard"] == "sea-east"
    deployment = one(objects, "Deployment")
    assert deployment["metadata"]["annotations"]["modelyard.io/regions"] == "ho_chi_minh,hanoi,bangkok"
    assert "modelyard.io/shard" not in deployment["spec"]["selector"]["matchLabels"]
    # Two releases in one namespace never share object names or selectors.
    other = render({"shard": {"name": "sea-west"}}, release="sea-west")
    east = render({"shard": {"name": "sea-east"}}, release="sea-east")
    assert {o["metadata"]["name"] for o in other}.isdisjoint({o["metadata"]["name"] for o in east})
    assert one(other, "Deployment")["spec"]["selector"] != one(east, "Deployment")["spec"]["selector"]


def test_plan_digest_and_image_digest(rendered: dict[str, list[dict[str, Any]]]) -> None:
    deployment = one(rendered["canary"], "Deployment")
    assert deployment["metadata"]["annotations"]["modelyard.io/plan-digest"] == "sha256:1f2e"
    assert deployment["spec"]["template"]["metadata"]["annotations"]["modelyard.io/plan-digest"] == "sha256:1f2e"
    assert container(rendered["defaults"])["image"] == "ghcr.io/modelyard/modelyard-serving:0.1.0"
    assert container(rendered["everything"])["image"] == "ghcr.io/modelyard/modelyard-serving@sha256:" + "a" * 64


def test_helm_test_pod_checks_the_plan_through_the_service(
    render: Render, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    objects = rendered["defaults"]
    pod, service = one(objects, "Pod"), one(objects, "Service")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    selector = service["spec"]["selector"]
    assert not selector.items() <= pod["metadata"]["labels"].items(), "the Service would send traffic to the test pod"
    (check,) = pod["spec"]["containers"]
    assert check["image"] == container(objects)["image"]
    assert check["command"] == ["python", "-m", "modelyard.deploy.serving.check"]
    url = check["args"][check["args"].index("--url") + 1]
    assert url == f"http://{service['metadata']['name']}.modelyard.svc:{service['spec']['ports'][0]['port']}"
    plan = check["args"][check["args"].index("--plan") + 1]
    assert plan == container(objects)["args"][container(objects)["args"].index("--plan") + 1]
    (volume,) = pod["spec"]["volumes"]
    assert volume["configMap"]["name"] == one(objects, "ConfigMap")["metadata"]["name"]
    assert check["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False
    # A NetworkPolicy that admits only named peers admits the test pod too.
    peers = one(rendered["networkpolicy"], "NetworkPolicy")["spec"]["ingress"][0]["from"]
    test_pod = one(rendered["networkpolicy"], "Pod")["metadata"]["labels"]
    assert any(
        p.get("podSelector", {}).get("matchLabels", {}).items() <= test_pod.items() for p in peers if "podSelector" in p
    )
    assert not [o for o in render({"tests": {"enabled": False}}) if o["kind"] == "Pod"]


def test_helm_lint_strict(helm: Path, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(json.dumps(merge({"plan": ROLLING_PLAN, "mlflow": {"existingSecret": "s"}}, CASES["everything"])))
    result = subprocess.run(
        [str(helm), "lint", str(CHART), "--strict", "--values", str(values)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout
