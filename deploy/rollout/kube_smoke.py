"""The smoke test of a release through its Service: the plan just deployed answers.

``/readyz`` must answer 200 and report the plan digest just deployed as active (the pods'
admin API is off unless a token is configured, so nothing here needs it); optional
predictions must answer 200.

A smoke prediction is built from what the SERVED versions take (``GET /v1/models/<family>/<region>``:
each variant's own feature spec), never from today's config: a family's features may have
changed since the version that serves was trained (a version owns its spec). A request whose
``payload`` is None is built that way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelyard.core.contracts.prediction_log import PROBE_HEADER
from modelyard.core.errors import ModelyardError
from modelyard.deploy.rollout.kube_proxy import proxy_request

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


class SmokeTestError(ModelyardError, RuntimeError):
    """The endpoint behind the Service did not answer as the deployed plan should."""


@dataclass(frozen=True)
class SmokeRequest:
    """A prediction the smoke test sends through the Service."""

    family: str
    region: str
    payload: Mapping[str, Any] | None = None  # None: built from the served versions' own features


@dataclass
class SmokeReport:
    """What the smoke test saw."""

    plan_digest: str
    predictions: list[dict[str, Any]] = field(default_factory=list)


def smoke_test(
    api: ApiClient,
    namespace: str,
    service: str,
    *,
    expected_plan_digest: str,
    requests: Sequence[SmokeRequest] = (),
    port: str = "http",
) -> SmokeReport:
    """Check the deployed endpoint through the Service.

    Raises:
        SmokeTestError: ``/readyz`` is not 200 or reports another active plan digest, or a
            prediction fails; the message names the URL path and what came back.
    """
    status, body = proxy_request(api, namespace, service, "readyz", port=port)
    if status != 200:
        raise SmokeTestError(f"service/{service} /readyz answered {status}: {_excerpt(body)}")
    serving = active_plan_digest(_json(body, f"service/{service} /readyz"))
    if serving != expected_plan_digest:
        raise SmokeTestError(
            f"service/{service} serves plan {serving}, expected {expected_plan_digest} (pods still old?)"
        )
    report = SmokeReport(plan_digest=expected_plan_digest)
    for request in requests:
        path = f"v1/predict/{request.family}/{request.region}"
        payload = request.payload
        if payload is None:
            payload = smoke_record(_served(api, namespace, service, request, port))
        status, body = proxy_request(
            api, namespace, service, path, port=port, method="POST", body=payload, headers={PROBE_HEADER: "smoke"}
        )
        if status != 200:
            raise SmokeTestError(f"service/{service} POST /{path} answered {status}: {_excerpt(body)}")
        report.predictions.append(_json(body, f"service/{service} /{path}"))
    return report


def smoke_record(service_detail: Mapping[str, Any]) -> dict[str, Any]:
    """A prediction record every served version of a service accepts: zeros for each version's own features.

    ``service_detail`` is the server's ``GET /v1/models/<family>/<region>`` answer; a version with a
    feature spec lists its features under ``raw_fields.or_features`` (the server takes precomputed
    features too), one without lists its signature's columns as ``inputs``. Zeros for the union of
    the variants' (and shadows') features suits each of them: a server ignores fields a version
    does not read.
    """
    names: list[str] = []
    for model in [*service_detail.get("variants", []), *service_detail.get("shadows", [])]:
        raw = model.get("raw_fields") or {}
        names += raw.get("or_features") or [spec["name"] for spec in model.get("inputs", []) if "name" in spec]
    return dict.fromkeys(names, 0)


def _served(api: ApiClient, namespace: str, service: str, request: SmokeRequest, port: str) -> dict[str, Any]:
    path = f"v1/models/{request.family}/{request.region}"
    status, body = proxy_request(api, namespace, service, path, port=port)
    if status != 200:
        raise SmokeTestError(f"service/{service} GET /{path} answered {status}: {_excerpt(body)}")
    return _json(body, f"service/{service} /{path}")


def active_plan_digest(readyz: Mapping[str, Any]) -> str | None:
    """The active plan digest a server reports on ``/readyz`` (``plan.active_digest``)."""
    plan = readyz.get("plan")
    digest = plan.get("active_digest") if isinstance(plan, Mapping) else None
    return str(digest) if digest else None


def _json(body: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise SmokeTestError(f"{what} did not answer JSON: {_excerpt(body)}") from exc
    if not isinstance(data, dict):
        raise SmokeTestError(f"{what} answered {type(data).__name__}, expected an object")
    return data


def _excerpt(body: bytes, limit: int = 300) -> str:
    text = body.decode(errors="replace").strip()
    return text if len(text) <= limit else text[:limit] + "..."
