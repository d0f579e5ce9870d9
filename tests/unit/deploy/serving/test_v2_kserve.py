"""docs/kserve: the ServingRuntime and InferenceService that run modelyard's image under KServe.

The parts that are core Kubernetes (the runtime's containers and volumes, the predictor's env
and resources) are validated against the Kubernetes schema with ``kubernetes-validate``; KServe's
own fields are checked structurally (its CRD schemas are not available offline).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from modelyard.deploy.cli import app

KSERVE = Path(__file__).resolve().parents[4] / "docs" / "kserve"
KUBERNETES_VERSIONS = ("1.30", "1.37")


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((KSERVE / name).read_text())


def _validate_pod(spec: dict[str, Any], version: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"}, "spec": spec}
    try:
        kubernetes_validate.validate(pod, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"invalid for {version} at {'.'.join(str(p) for p in exc.path)}: {exc.message}")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_runtime_containers_and_volumes_are_valid_kubernetes(version):
    runtime = _load("servingruntime.yaml")
    _validate_pod({"containers": runtime["spec"]["containers"], "volumes": runtime["spec"]["volumes"]}, version)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_predictor_env_and_resources_are_valid_kubernetes(version):
    model = _load("inferenceservice.yaml")["spec"]["predictor"]["model"]
    container = {"name": "kserve-container", "image": "x", "env": model["env"], "resources": model["resources"]}
    _validate_pod({"containers": [container]}, version)


def test_the_runtime_speaks_v2_and_serves_the_plan_kserve_downloads():
    runtime = _load("servingruntime.yaml")
    assert (runtime["apiVersion"], runtime["kind"]) == ("serving.kserve.io/v1alpha1", "ServingRuntime")
    spec = runtime["spec"]
    assert spec["protocolVersions"] == ["v2"]
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"  # the name KServe merges the predictor's fields into
    args = container["command"] + container["args"]
    assert args[:2] == ["modelyard", "serve"]
    assert args[args.index("--plan") + 1].startswith("/mnt/models/")  # where KServe puts storageUri
    port = int(args[args.index("--port") + 1])
    assert container["ports"][0]["containerPort"] == port
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": port}
    assert {e["name"] for e in container["env"]} >= {"MLFLOW_TRACKING_URI"}
    assert container["securityContext"]["runAsUser"] == 10001  # the image's user


def test_the_serve_command_takes_those_options():
    text = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200).output
    for option in ("--plan", "--host", "--port"):
        assert option in text


def test_the_inference_service_selects_the_runtime():
    runtime, service = _load("servingruntime.yaml"), _load("inferenceservice.yaml")
    assert (service["apiVersion"], service["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    formats = {(f["name"], f["version"]) for f in runtime["spec"]["supportedModelFormats"]}
    assert (model["modelFormat"]["name"], model["modelFormat"]["version"]) in formats
    assert model["storageUri"].split("://")[0] in ("s3", "gs", "pvc", "https", "hdfs", "azure")
