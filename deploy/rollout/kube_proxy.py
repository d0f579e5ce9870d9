"""HTTP to the serving pods through the Kubernetes API server: no ingress, no port-forward.

* :func:`proxy_request`: one request to a Service through the API server's service proxy
  (what the smoke test and ``HelmReleaseTarget.live`` use);
* :func:`scrape_pods`: ``GET /metrics`` on every ready pod through the pod proxy, and
  :func:`merge_expositions` sums them into release-wide counters and histograms (through the
  Service each scrape would hit another pod and counter deltas would mix pods).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from modelyard.deploy.rollout.deployment_status import pod_objects

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


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
    headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes]:
    """One HTTP request to ``service`` through the API server's service proxy (``headers`` added to it).

    Returns:
        The status code and body the service (or the API server) answered.
    """
    quoted = urllib.parse.quote(path.lstrip("/"), safe="/?=&")
    resource_path = f"/api/v1/namespaces/{{namespace}}/services/{{name}}/proxy/{quoted}"
    params = {"namespace": namespace, "name": f"{service}:{port}"}
    return _proxy(api, resource_path, params, method, body, timeout_seconds, headers)


def _proxy(
    api: ApiClient,
    resource_path: str,
    path_params: dict[str, str],
    method: str,
    body: Mapping[str, Any] | None,
    timeout_seconds: float,
    extra_headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes]:
    headers = {"Accept": "application/json, text/plain;q=0.9, */*;q=0.8", **(extra_headers or {})}
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


def scrape_pods(api: ApiClient, namespace: str, name: str, path: str = "metrics") -> list[str]:
    """``GET /<path>`` on every ready pod of ``deployment/name`` through the API server's pod proxy."""
    texts = []
    for pod in ready_pods(pod_objects(api, namespace, name)):
        resource_path = f"/api/v1/namespaces/{{namespace}}/pods/{{name}}/proxy/{path}"
        params = {"namespace": namespace, "name": f"{pod['metadata']['name']}:{http_port(pod)}"}
        status, body = _proxy(api, resource_path, params, "GET", None, 30)
        if status == 200:
            texts.append(body.decode())
    return texts


def ready_pods(pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The pods (JSON) whose ``Ready`` condition is True: the ones that serve traffic."""
    return [
        pod
        for pod in pods
        if any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (pod.get("status") or {}).get("conditions") or []
        )
    ]


def http_port(pod: Mapping[str, Any]) -> int | str:
    """The container port named ``http`` (the pod proxy needs the number), else the name."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == "http":
                return int(port["containerPort"])
    return "http"


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
