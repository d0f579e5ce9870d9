"""``POST /v2/models/{name}[/versions/{v}]/infer``: v2 tensors through the same plan as ``/v1``.

The tensors become records; then the request takes ``/v1``'s steps on the active plan: the
service's router (time windows, weights, the sticky key from ``parameters.routing_key``, the
``X-Routing-Key`` header or the plan's routing field), the variant's validation and
featurising, its batcher, and off the response path the same counts, instruments, sampled
prediction log and shadows (``Predictions._observe``). A request naming a version goes to the
variant serving it (routed by ``version``).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING, Any

from modelyard.deploy.serving.asgi import Response, Scope, allow, header, json_response
from modelyard.deploy.serving.errors import MethodNotAllowed, RequestError, ServingError
from modelyard.deploy.serving.predict import INLINE_PARSE_BYTES, Predictions
from modelyard.deploy.serving.protocol_v2.metadata import ModelNames, output_name, variant_of
from modelyard.deploy.serving.protocol_v2.tensors import InferRequest, output_tensor, parse_infer_request
from modelyard.deploy.serving.records import routing_key_of
from modelyard.deploy.serving.router import Route

if TYPE_CHECKING:
    from modelyard.deploy.serving.active import ActivePlan, ServiceHandle, VariantHandle

_RECORD_FIELD = re.compile(r"^records\[(?P<row>\d+)\](?:\.(?P<name>.+))?$")


class V2Predictions(Predictions):
    """Answers v2 infer requests on the active plan (the ``/v1`` steps, v2 tensors in and out)."""

    _names: ModelNames | None = None

    def active(self) -> ActivePlan:
        active = self._manager().active
        if active is None:
            raise RequestError("no plan is active yet; see /readyz", status=503, code="not_ready")
        return active

    def service(self, active: ActivePlan, name: str) -> ServiceHandle:
        """The service v2 model ``name`` names on ``active`` (404 otherwise)."""
        names = self._names
        if names is None or names.digest != active.digest:
            names = self._names = ModelNames(active)
        return names.service(active, name)

    async def infer(
        self, method: str, path: str, name: str, version: str | None, body: bytes, scope: Scope
    ) -> Response:
        """Validate, route, batch and answer one v2 inference request; a problem is a v2 error object.

        The app calls this straight from its dispatch for ``/v2/models/{name}/infer`` (the busiest
        v2 path, one coroutine deep, as ``/v1``'s predict); the versioned path comes through the routes.
        """
        started = time.perf_counter()
        try:
            allow(method, path, "POST")
            active = self.active()
            handle = self.service(active, name)
            large = len(body) > INLINE_PARSE_BYTES
            length = header(scope, b"inference-header-content-length")
            if large:  # parse off the loop: /healthz keeps answering
                request = await asyncio.to_thread(parse_infer_request, body, length, active.plan.max_records)
            else:  # called, not awaited (as /v1): a coroutine per step is a measurable share of a one-row request
                request = parse_infer_request(body, length, active.plan.max_records)
            records = None if request.is_matrix else request.records()
            route, variant = self._route(active, handle, name, version, request, records, scope)
            if records is None:
                records = request.matrix_records(variant.model.schema.names)
            _check_outputs(request, output_name(variant.model))
            output, _ = await self.run(
                active, handle, variant, records, scope, large=large, started=started, request_id=request.id
            )
        except ServingError as exc:
            return v2_error(exc)
        return json_response(200, _response(name, variant, route, request, output))

    def _route(
        self,
        active: ActivePlan,
        handle: ServiceHandle,
        name: str,
        version: str | None,
        request: InferRequest,
        records: list[Any] | None,
        scope: Scope,
    ) -> tuple[Route, VariantHandle]:
        if version is not None:
            variant = variant_of(handle, name, version)
            return Route(variant.name, "version"), variant
        sent = _routing_key(request) or header(scope, b"x-routing-key")
        key = routing_key_of(records, sent, active.plan.routing_key) if records is not None else sent
        route = handle.router.route(key)
        return route, handle.variants[route.variant]


def _routing_key(request: InferRequest) -> str | None:
    value = request.parameters.get("routing_key")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RequestError(
            f"routing_key must be a string or an integer, got {type(value).__name__}", field="parameters.routing_key"
        )
    return str(value)


def _check_outputs(request: InferRequest, name: str) -> None:
    unknown = [o for o in request.outputs if o != name]
    if unknown:
        raise RequestError(f"unknown output(s) {unknown}: this version gives '{name}'", field="outputs")


def _response(name: str, variant: VariantHandle, route: Route, request: InferRequest, output: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model_name": name,
        "model_version": variant.model.version,
        "outputs": [output_tensor(output_name(variant.model), output)],
        "parameters": {"variant": variant.name, "routed_by": route.reason, "model": variant.model.name},
    }
    if request.id is not None:
        body["id"] = request.id
    return body


def v2_error(exc: ServingError) -> Response:
    """A v2 ``$inference_error_response``: ``{"error": "..."}``; a bad record or field is a 400 (a 405 keeps Allow)."""
    message = exc.message
    if exc.field:
        message = f"{message} ({_tensor_field(exc.field)})"
    status = 400 if exc.status == 422 else exc.status
    response = json_response(status, {"error": message})
    if isinstance(exc, MethodNotAllowed):
        response.headers = ((b"allow", ", ".join(exc.allow).encode()),)
    return response


def _tensor_field(field: str) -> str:
    """``records[3].hour_sin`` -> ``input 'hour_sin', row 3``: what a v2 client sent."""
    match = _RECORD_FIELD.match(field)
    if match is None:
        return field
    if match["name"] is None:
        return f"row {match['row']}"
    return f"input '{match['name']}', row {match['row']}"
