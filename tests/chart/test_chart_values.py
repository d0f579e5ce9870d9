"""Bad values fail ``helm template`` with a message that names the key and the fix.

Two layers: ``values.schema.json`` (types, unknown keys, enums) and the chart's
``modelyard-serving.validateValues`` helper (rules across keys).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import CHART, Render, RenderError

SCHEMA_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("typo at the top", {"replicaCont": 3}, ["additional properties 'replicaCont' not allowed"]),
    ("typo nested", {"autoscaling": {"maxReplica": 3}}, ["/autoscaling", "'maxReplica' not allowed"]),
    (
        "tracking uri as a value",
        {"mlflow": {"trackingUri": "http://mlflow:5000"}},
        ["/mlflow", "'trackingUri' not allowed"],
    ),
    ("password as a value", {"mlflow": {"password": "hunter2"}}, ["/mlflow", "'password' not allowed"]),
    (
        "credential through extraEnv",
        {"serving": {"extraEnv": [{"name": "MLFLOW_TRACKING_PASSWORD", "value": "hunter2"}]}},
        ["/serving/extraEnv/0/name"],
    ),
    ("pull policy", {"image": {"pullPolicy": "Sometimes"}}, ["/image/pullPolicy", "Always", "IfNotPresent"]),
    ("port type", {"serving": {"port": "eighty"}}, ["/serving/port", "integer"]),
    ("port range", {"service": {"port": 70000}}, ["/service/port", "maximum"]),
    ("surge shape", {"updateStrategy": {"maxSurge": "lots"}}, ["/updateStrategy/maxSurge"]),
    ("escalation", {"containerSecurityContext": {"allowPrivilegeEscalation": True}}, ["allowPrivilegeEscalation"]),
    ("plan type", {"plan": ["not", "a", "mapping"]}, ["/plan", "object"]),
    ("cpu target", {"autoscaling": {"targetCPU": 150}}, ["/autoscaling/targetCPU", "maximum"]),
    ("image digest", {"image": {"digest": "latest"}}, ["/image/digest"]),
    ("sample rate", {"predictionLog": {"sampleRate": 5}}, ["/predictionLog/sampleRate", "maximum"]),
    ("log url with a password", {"predictionLog": {"url": "s3://k:s@bucket/x"}}, ["/predictionLog/url"]),
    ("online url with a password", {"online": {"url": "redis://u:pw@redis:6379/0"}}, ["/online/url"]),
    ("online url not redis", {"online": {"url": "http://redis:6379"}}, ["/online/url"]),
    ("online timeout", {"online": {"timeoutMs": 0}}, ["/online/timeoutMs"]),
]


@pytest.mark.parametrize(("case", "values", "expected"), SCHEMA_CASES, ids=[c[0] for c in SCHEMA_CASES])
def test_schema_rejects_bad_values(
    render_error: RenderError, case: str, values: dict[str, Any], expected: list[str]
) -> None:
    message = render_error(values)
    assert "don't meet the specifications of the schema" in message, message
    for fragment in expected:
        assert fragment in message, f"{case}: {fragment!r} not in {message}"


VALIDATION_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("no plan", {"plan": {}}, ["modelyard-serving: plan", "The plan is empty", "modelyard plan"]),
    ("no secret", {"mlflow": {"existingSecret": ""}}, ["mlflow.existingSecret", "kubectl create secret generic"]),
    ("surge zero", {"updateStrategy": {"maxSurge": 0}}, ["updateStrategy.maxSurge", "maxSurge is 0"]),
    ("surge zero percent", {"updateStrategy": {"maxSurge": "0%"}}, ["updateStrategy.maxSurge"]),
    ("unavailable", {"updateStrategy": {"maxUnavailable": 1}}, ["updateStrategy.maxUnavailable", "must be 0"]),
    (
        "hpa min above max",
        {"autoscaling": {"minReplicas": 12, "maxReplicas": 4}},
        ["autoscaling.minReplicas", "minReplicas (12) is above maxReplicas (4)"],
    ),
    ("hpa without metric", {"autoscaling": {"targetCPU": 0}}, ["The HPA has no metric"]),
    (
        "grace below sleep",
        {"preStopSleepSeconds": 30, "terminationGracePeriodSeconds": 30},
        ["terminationGracePeriodSeconds (30) must be above preStopSleepSeconds (30)"],
    ),
    (
        "pdb both",
        {"pdb": {"minAvailable": 1, "maxUnavailable": 1}},
        ["Both pdb.minAvailable (1) and pdb.maxUnavailable (1)"],
    ),
    ("pdb neither", {"pdb": {"minAvailable": ""}}, ["Set one of pdb.minAvailable and pdb.maxUnavailable"]),
    ("ingress host", {"ingress": {"enabled": True, "hostname": ""}}, ["ingress.hostname"]),
    (
        "prediction log without a volume",
        {"predictionLog": {"enabled": True}},
        ["predictionLog.existingClaim", "ReadWriteMany", "predictionLog.url"],
    ),
    (
        "literal secret in extraEnv",
        {
            "serving": {
                "extraEnv": [
                    {"name": "MODELYARD_BATCH_MAX", "value": "32"},
                    {"name": "AWS_SECRET_ACCESS_KEY", "value": "x"},
                ]
            }
        },
        ["serving.extraEnv[1]", "AWS_SECRET_ACCESS_KEY holds a secret", "valueFrom.secretKeyRef"],
    ),
    (
        "literal secret in the log options",
        {"predictionLog": {"enabled": True, "url": "s3://b/x", "options": {"key": "AKIA", "endpoint_url": "${E}"}}},
        ["predictionLog.options.key", "reference the pod's environment"],
    ),
    (
        "nested literal secret in the log options",
        {
            "predictionLog": {
                "enabled": True,
                "url": "s3://b/x",
                "options": {"client_kwargs": {"aws_secret_access_key": "x"}},
            }
        },
        ["predictionLog.options.client_kwargs.aws_secret_access_key"],
    ),
]


@pytest.mark.parametrize(("case", "values", "expected"), VALIDATION_CASES, ids=[c[0] for c in VALIDATION_CASES])
def test_validate_values_explains_the_fix(
    render_error: RenderError, case: str, values: dict[str, Any], expected: list[str]
) -> None:
    message = render_error(values)
    assert "VALUES VALIDATION" in message, message
    for fragment in expected:
        assert fragment in message, f"{case}: {fragment!r} not in {message}"


def test_every_problem_is_reported_at_once(render_error: RenderError) -> None:
    message = render_error({"plan": {}, "mlflow": {"existingSecret": ""}, "updateStrategy": {"maxSurge": 0}})
    assert message.count("modelyard-serving: ") == 3


def test_nothing_required_is_left_out_of_the_defaults(render_error: RenderError) -> None:
    # The bare chart refuses to render: a plan and a Secret are the two things an operator must decide.
    message = render_error({}, base=False)
    assert "modelyard-serving: plan" in message
    assert "mlflow.existingSecret" in message


def test_every_value_is_documented_and_in_the_schema() -> None:
    values_text = (CHART / "values.yaml").read_text()
    schema = json.loads((CHART / "values.schema.json").read_text())
    documented = {line.split()[2] for line in values_text.splitlines() if line.lstrip().startswith("## @param ")}

    def leaves(node: dict[str, Any], prefix: str = "") -> set[str]:
        found: set[str] = set()
        for key, spec in node.get("properties", {}).items():
            path = f"{prefix}{key}"
            children = spec.get("properties") if spec.get("additionalProperties") is False else None
            found |= leaves(spec, f"{path}.") if children else {path}
        return found

    assert leaves(schema) - {"global"} == documented


def test_schema_closes_every_object() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    open_objects: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        if node.get("type") == "object" and "properties" in node and node.get("additionalProperties") is not False:
            open_objects.append(path)
        for key, child in node.get("properties", {}).items():
            walk(child, f"{path}.{key}")

    walk(schema, "")
    assert open_objects == [], f"objects without additionalProperties: false: {open_objects}"


def test_secrets_from_the_environment_and_secret_refs_render(render: Render) -> None:
    values = {
        "serving": {
            "extraEnv": [{"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
        },
        "predictionLog": {
            "enabled": True,
            "url": "s3://b/x",
            "options": {"key": "${AWS_KEY}", "client_kwargs": {"token": "${T}"}},
        },
    }
    assert render(values)


def test_topology_constraints_are_not_evaluated_as_templates(render: Render) -> None:
    constraint = {
        "maxSkew": 1,
        "topologyKey": "{{ .Values.mlflow.existingSecret }}",
        "whenUnsatisfiable": "DoNotSchedule",
    }
    objects = render({"topologySpreadConstraints": [constraint]})
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "{{ .Values.mlflow.existingSecret }}"


def _serving_env(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["containers"][0]["env"]}


def test_online_store_reaches_the_pods(render: Render) -> None:
    """No store by default (online features take their declared default); a URL, or a Secret's, when given."""
    default = _serving_env(render())
    assert "MODELYARD_SERVE_ONLINE_URL" not in default
    assert default["MODELYARD_SERVE_ONLINE_PREFIX"] == "modelyard"
    assert default["MODELYARD_SERVE_ONLINE_TIMEOUT_MS"] == "20"

    plain = _serving_env(render({"online": {"url": "redis://redis:6379/0", "prefix": "ml", "timeoutMs": 5}}))
    assert plain["MODELYARD_SERVE_ONLINE_URL"] == "redis://redis:6379/0"
    assert (plain["MODELYARD_SERVE_ONLINE_PREFIX"], plain["MODELYARD_SERVE_ONLINE_TIMEOUT_MS"]) == ("ml", "5")

    secret = _serving_env(render({"online": {"url": "redis://ignored:6379", "existingSecret": "online-redis"}}))
    assert secret["MODELYARD_SERVE_ONLINE_URL"] == {"secretKeyRef": {"name": "online-redis", "key": "url"}}
