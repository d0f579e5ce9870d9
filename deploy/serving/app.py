"""The ASGI application of one worker process: lifespan, and each request to its endpoint.

Endpoints:

* ``POST /v1/predict/{family}/{region}`` and ``POST /invocations/{family}/{region}``: ``predict``.
* ``GET /healthz`` (alive), ``GET /readyz`` (every model warm; per-model detail and swap
  status), ``GET /metrics`` (Prometheus).
* ``GET``/``PUT /admin/plan``: ``admin``.
* ``/v2/...`` (the Open Inference Protocol), ``GET /openapi.json``, ``GET /v1/models/{family}/{region}``:
  ``protocol_v2.routes``.

A ``ServingError`` becomes its status and JSON body; anything else is a 500 (and a log
line with its traceback). The plan manager starts with the lifespan; in a worker of a
multi-worker server, startup waits for the first plan so the shared socket only sends
requests to workers that can answer them.
"""

from __future__ import annotations

import logging
import os

from modelyard.deploy.serving.admin import AdminApi
from modelyard.deploy.serving.asgi import (
    ClientGone,
    Receive,
    Response,
    Scope,
    Send,
    check_declared_length,
    error_response,
    header,
    json_response,
    read_body,
    send_response,
)
from modelyard.deploy.serving.errors import RequestError, ServingError
from modelyard.deploy.serving.manager import PlanManager
from modelyard.deploy.serving.metrics import CONTENT_TYPE, ServingMetrics
from modelyard.deploy.serving.predict import Predictions
from modelyard.deploy.serving.protocol import LIMITS_STATE_KEY
from modelyard.deploy.serving.protocol_v2 import routes as standard_routes
from modelyard.deploy.serving.settings import ServeSettings

log = logging.getLogger("modelyard.serving")


class ServingApp:
    """The ASGI application (one per worker process)."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.metrics = ServingMetrics()
        self.manager: PlanManager | None = None
        self.predictions = Predictions(self.metrics, self._manager)
        self.admin = AdminApi(settings.admin_token, settings.log_dir, self._manager)
        self.standard = standard_routes.StandardRoutes(self.metrics, self._manager)  # /v2, /openapi.json, /v1/models

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await send_response(send, await self._http(scope, receive))
        elif scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                state = scope.get("state")
                if state is not None:  # uvicorn hands it to every connection's protocol (its limits)
                    state[LIMITS_STATE_KEY] = self.settings.transport
                self.startup()
                await self._manager().settled(self.settings.first_plan_wait_seconds)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def startup(self) -> None:
        """Start the plan manager: the first plan loads in the background (``/healthz`` answers meanwhile)."""
        self.manager = PlanManager(self.settings, self.metrics)
        self.metrics.ready.set(0)
        self.manager.start()
        log.info("server starting", extra={"event": "start", "plan": str(self.settings.plan_path)})

    async def shutdown(self) -> None:
        if self.manager is not None:
            await self.manager.stop()

    async def _http(self, scope: Scope, receive: Receive) -> Response:
        try:
            check_declared_length(header(scope, b"content-length"))
            body = await read_body(receive)
            return await self._dispatch(scope, body)
        except ClientGone:
            return Response(499, b"")  # nobody reads it: uvicorn drops a response to a closed connection
        except ServingError as exc:
            return error_response(exc)
        except Exception as exc:
            log.exception("unhandled error", extra={"path": scope.get("path")})
            return json_response(500, {"error": "internal", "message": f"{type(exc).__name__}: {exc}"})

    async def _dispatch(self, scope: Scope, body: bytes) -> Response:
        method, path = scope["method"], scope["path"]
        parts = path.strip("/").split("/")
        if method == "POST" and len(parts) == 4 and parts[:2] == ["v1", "predict"]:
            return await self.predictions.answer(parts[2], parts[3], body, scope, mlflow_format=False)
        if method == "POST" and len(parts) == 3 and parts[0] == "invocations":
            return await self.predictions.answer(parts[1], parts[2], body, scope, mlflow_format=True)
        if path == "/healthz":
            return json_response(200, {"status": "alive", "pid": os.getpid()})
        if path == "/readyz":
            ready, detail = self._manager().readiness()
            return json_response(200 if ready else 503, detail)
        if path == "/metrics":
            return Response(200, self.metrics.exposition(), CONTENT_TYPE.encode())
        if path == "/admin/plan":
            return await self.admin.plan(method, body, scope)
        if standard_routes.handles(parts):
            return await self.standard.answer(method, parts, body, scope)
        if len(parts) >= 2 and parts[0] in ("v1", "invocations"):
            raise RequestError(f"{method} not allowed on {path}; use POST", status=405, code="method_not_allowed")
        raise RequestError(f"no endpoint {path}", field="path", status=404, code="not_found")

    def _manager(self) -> PlanManager:
        if self.manager is None:
            raise RequestError("server is starting", status=503, code="not_ready")
        return self.manager
