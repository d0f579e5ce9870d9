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

from modelyard.deploy.serving.admin import AdminApi, check_admin_token
from modelyard.deploy.serving.asgi import (
    ClientGone,
    InFlight,
    Receive,
    Response,
    Scope,
    Send,
    allow,
    check_declared_length,
    error_response,
    header,
    json_response,
    read_body,
    send_response,
)
from modelyard.deploy.serving.errors import InferenceFailed, RequestError, ServingError, UnknownPath
from modelyard.deploy.serving.manager import PlanManager
from modelyard.deploy.serving.metrics import CONTENT_TYPE, ServingMetrics
from modelyard.deploy.serving.online import OnlineLookup, admin_features_path
from modelyard.deploy.serving.openapi import ENDPOINTS
from modelyard.deploy.serving.predict import Predictions
from modelyard.deploy.serving.protocol import LIMITS_STATE_KEY
from modelyard.deploy.serving.protocol_v2 import routes as standard_routes
from modelyard.deploy.serving.settings import ServeSettings

log = logging.getLogger("modelyard.serving")
PROBES = ("/healthz", "/readyz", "/metrics")
# Never refused by the concurrency limit: a failed probe restarts the pod (KServe probes the v2 paths).
UNLIMITED = frozenset({*PROBES, "/v2/health/live", "/v2/health/ready"})


class ServingApp:
    """The ASGI application (one per worker process)."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.metrics = ServingMetrics()
        self.manager: PlanManager | None = None
        self.online = OnlineLookup.from_env(os.environ, self.metrics)  # online features (ADR 0019)
        self.predictions = Predictions(self.metrics, self._manager, self.online)
        self.admin = AdminApi(settings.admin_token, settings.log_dir, self._manager)
        self.standard = standard_routes.StandardRoutes(self.metrics, self._manager)  # /v2, /openapi.json, /v1/models
        self.standard.v2.online = self.online
        self.in_flight = InFlight(settings.limit_concurrency)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in UNLIMITED:
            await send_response(send, await self._http(scope, receive))
        elif scope["type"] == "http":
            if self.in_flight.count >= self.in_flight.limit:
                await send_response(send, self.in_flight.overloaded())
                return
            self.in_flight.count += 1
            try:
                await send_response(send, await self._http(scope, receive))
            finally:
                self.in_flight.count -= 1
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
                await self.online.warm_up()
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
        await self.online.close()

    async def _http(self, scope: Scope, receive: Receive) -> Response:
        try:
            check_declared_length(header(scope, b"content-length"))
            body = await read_body(receive)
            return await self._dispatch(scope, body)
        except ClientGone:
            return Response(499, b"")  # nobody reads it: uvicorn drops a response to a closed connection
        except ServingError as exc:
            if isinstance(exc, InferenceFailed) and exc.detail:  # the client's message has no library text
                log.warning("inference failed", extra={"path": scope.get("path"), "error": exc.detail})
            return error_response(exc)
        except Exception:
            log.exception("unhandled error", extra={"path": scope.get("path")})
            # The exception's text (a library's, a path) goes to the log only.
            return json_response(500, {"error": "internal", "message": "internal error; the server log has details"})

    async def _dispatch(self, scope: Scope, body: bytes) -> Response:
        method, path = scope["method"], scope["path"]
        parts = path.strip("/").split("/")
        if len(parts) == 4 and parts[:2] == ["v1", "predict"] and all(parts):
            allow(method, path, "POST")
            return await self.predictions.answer(parts[2], parts[3], body, scope, mlflow_format=False)
        if len(parts) == 3 and parts[0] == "invocations" and all(parts):
            allow(method, path, "POST")
            return await self.predictions.answer(parts[1], parts[2], body, scope, mlflow_format=True)
        if len(parts) == 4 and parts[3] == "infer" and parts[:2] == ["v2", "models"] and parts[2]:
            return await self.standard.v2.infer(method, path, parts[2], None, body, scope)  # v2's busiest path
        if path in PROBES:
            allow(method, path, "GET", "HEAD")
            response = await self._probe(path)
            return Response(response.status, b"", response.content_type) if method == "HEAD" else response
        if path == "/admin/plan":
            return await self.admin.plan(method, body, scope)
        if admin_features_path(parts):
            check_admin_token(self.settings.admin_token, header(scope, b"authorization"))
            return await self.online.push(method, parts[2], parts[3], body, self._manager().active)
        if standard_routes.handles(parts):
            return await self.standard.answer(method, parts, body, scope)
        raise UnknownPath(path, ENDPOINTS, self._near_miss(parts))

    def _near_miss(self, parts: list[str]) -> str | None:
        """What the client probably meant by a path under ``/v1/predict`` or ``/invocations`` (None: no guess)."""
        if parts[:2] == ["v1", "predict"]:
            route = "POST /v1/predict/{family}/{region}"
        elif parts[0] == "invocations":
            route = "POST /invocations/{family}/{region}"
        else:
            return None
        active = self.manager.active if self.manager is not None else None
        return f"predictions are {route}{active.served_note() if active is not None else ''}"

    async def _probe(self, path: str) -> Response:
        if path == "/healthz":
            return json_response(200, {"status": "alive", "pid": os.getpid()})
        if path == "/readyz":
            ready, detail = self._manager().readiness()
            return json_response(200 if ready else 503, detail)
        return Response(200, self.metrics.exposition(), CONTENT_TYPE.encode())

    def _manager(self) -> PlanManager:
        if self.manager is None:
            raise RequestError("server is starting", status=503, code="not_ready")
        return self.manager
