"""Every ``/v2`` path of the Open Inference Protocol, ``GET /openapi.json`` and ``GET /v1/models/{family}/{region}``.

v2 errors answer ``{"error": "<message>"}`` (a 4xx about one record or field names the
input tensor and row); health answers 200 for true and 400 for false, as the protocol asks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from importlib import metadata as package_metadata
from typing import TYPE_CHECKING

from modelyard.deploy.serving import openapi
from modelyard.deploy.serving.asgi import Response, Scope, allow, json_response
from modelyard.deploy.serving.errors import RequestError, ServingError, UnknownPath
from modelyard.deploy.serving.protocol_v2.infer import V2Predictions, v2_error
from modelyard.deploy.serving.protocol_v2.metadata import model_metadata, service_detail, variant_of
from modelyard.deploy.serving.protocol_v2.tensors import datatype_of

if TYPE_CHECKING:
    from modelyard.deploy.serving.manager import PlanManager
    from modelyard.deploy.serving.metrics import ServingMetrics
    from modelyard.deploy.serving.runtime import ServedModel

SERVER_NAME = "modelyard"


def handles(parts: list[str]) -> bool:
    """Whether a path (split on ``/``) is one of these routes (the app's one hook)."""
    return parts[0] in ("v2", "openapi.json") or parts[:2] == ["v1", "models"]


class StandardRoutes:
    """The standard faces of the server: v2, the OpenAPI document, per-model metadata."""

    def __init__(self, metrics: ServingMetrics, manager: Callable[[], PlanManager]) -> None:
        self._manager = manager
        self.v2 = V2Predictions(metrics, manager)
        self._output_types: dict[str, str] = {}  # model URI -> the datatype of its predictions

    async def answer(self, method: str, parts: list[str], body: bytes, scope: Scope) -> Response:
        """Answer one request whose path ``handles`` (a ``/v1`` problem raises, a ``/v2`` one is answered)."""
        if parts[0] == "openapi.json":
            allow(method, "/openapi.json", "GET")
            return json_response(200, openapi.document())
        if parts[0] == "v1":
            return self._v1_model(method, parts)
        try:
            return await self._v2(method, parts[1:], body, scope)
        except ServingError as exc:
            return v2_error(exc)

    def _v1_model(self, method: str, parts: list[str]) -> Response:
        path = "/" + "/".join(parts)
        if len(parts) != 4 or not all(parts):
            manager = self._manager_or_none()
            served = manager.active.served_note() if manager is not None and manager.active is not None else ""
            hint = f"model detail is GET /v1/models/{{family}}/{{region}}{served}"
            raise UnknownPath(path, openapi.ENDPOINTS, hint)
        allow(method, path, "GET")
        active = self.v2.active()
        handle = active.services.get((parts[2], parts[3]))
        if handle is None:
            raise RequestError(
                f"no service {parts[2]}/{parts[3]}{active.served_note()}",
                field="path",
                status=404,
                code="unknown_service",
            )
        return json_response(200, service_detail(handle, active))

    async def _v2(self, method: str, parts: list[str], body: bytes, scope: Scope) -> Response:
        if not parts:
            allow(method, "/v2", "GET")
            return json_response(200, {"name": SERVER_NAME, "version": _package_version(), "extensions": []})
        if parts[0] == "health" and len(parts) == 2 and parts[1] in ("live", "ready"):
            allow(method, f"/v2/health/{parts[1]}", "GET")
            return self._health(parts[1])
        if parts[0] != "models" or len(parts) < 2:
            raise RequestError(f"no v2 endpoint /v2/{'/'.join(parts)}", status=404, code="not_found")
        path, name, rest = f"/v2/{'/'.join(parts)}", parts[1], parts[2:]
        version = None
        if rest[:1] == ["versions"] and len(rest) >= 2:
            version, rest = rest[1], rest[2:]
        if rest == ["infer"]:
            return await self.v2.infer(method, path, name, version, body, scope)
        if rest in ([], ["ready"]):
            allow(method, path, "GET")
            return await self._model(name, version, ready=bool(rest))
        raise RequestError(f"no v2 endpoint /v2/{'/'.join(parts)}", status=404, code="not_found")

    def _health(self, which: str) -> Response:
        if which == "live":
            return json_response(200, {"live": True})
        manager = self._manager_or_none()
        ready = manager is not None and manager.readiness()[0]
        return json_response(200 if ready else 400, {"ready": ready})

    async def _model(self, name: str, version: str | None, *, ready: bool) -> Response:
        active = self.v2.active()
        handle = self.v2.service(active, name)
        variants = [variant_of(handle, name, version)] if version is not None else list(handle.variants.values())
        if ready:
            is_ready = all(v.model.status.state == "ready" for v in variants)
            return json_response(200 if is_ready else 400, {"name": name, "ready": is_ready})
        for variant in variants:
            await self._learn_output_type(variant.model)
        return json_response(200, model_metadata(name, handle, variants, self._output_types))

    async def _learn_output_type(self, model: ServedModel) -> None:
        """The datatype of a model's predictions, from one prediction on its input example (once per model)."""
        if model.uri in self._output_types or not model.example:
            return
        try:
            output = await asyncio.to_thread(lambda: model.predict(model.prepare(model.example[:1])))
        except ServingError:
            return
        if len(self._output_types) > 10_000:  # models of retired plans
            self._output_types.clear()
        self._output_types[model.uri] = datatype_of(output)

    def _manager_or_none(self) -> PlanManager | None:
        try:
            return self._manager()
        except RequestError:  # the server is starting
            return None


def _package_version() -> str:
    try:
        return package_metadata.version("modelyard")
    except package_metadata.PackageNotFoundError:
        return "unknown"
