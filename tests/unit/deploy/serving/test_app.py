"""The ASGI app: its lifespan hands the server's transport limits to uvicorn's connections."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from modelyard.deploy.serving.app import ServingApp
from modelyard.deploy.serving.openapi import ENDPOINTS
from modelyard.deploy.serving.protocol import LIMITS_STATE_KEY, TransportLimits
from modelyard.deploy.serving.settings import ServeSettings


def test_startup_puts_the_transport_limits_in_the_lifespan_state(tmp_path: Path):
    limits = TransportLimits(request_timeout_seconds=2.5, max_header_bytes=4096)
    app = ServingApp(ServeSettings(plan_path=tmp_path / "plan.json", transport=limits))
    state: dict[str, Any] = {}
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    asyncio.run(app({"type": "lifespan", "state": state}, receive, send))
    assert state[LIMITS_STATE_KEY] == limits
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def _call(app: ServingApp, method: str, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    """One HTTP request through the ASGI app: status, headers, body."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [], "query_string": b""}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


def test_unknown_paths_are_404_and_a_known_path_with_the_wrong_method_405_with_allow(tmp_path: Path):
    app = ServingApp(ServeSettings(plan_path=tmp_path / "plan.json"))
    for path in ("/v1/predict/a/b/c", "/v1/predict", "/invocations/a/b/c", "/v1/predict//x"):
        status, _, body = _call(app, "POST", path)
        answer = json.loads(body)
        assert (status, answer["error"], answer["field"], answer["path"]) == (404, "not_found", "path", path)
        route = "/invocations" if path.startswith("/invocations") else "/v1/predict"
        assert answer["message"] == f"no endpoint {path}; predictions are POST {route}/{{family}}/{{region}}"
        assert answer["endpoints"] == list(ENDPOINTS)
    status, _, body = _call(app, "GET", "/v1/whatever")
    assert status == 404
    message = "no endpoint /v1/whatever; the endpoints are listed in 'endpoints', and described at GET /openapi.json"
    assert json.loads(body)["message"] == message
    status, headers, body = _call(app, "GET", "/v1/predict/fare/jakarta")
    assert (status, headers[b"allow"]) == (405, b"POST")
    assert json.loads(body) == {
        "error": "method_not_allowed",
        "message": "GET not allowed on /v1/predict/fare/jakarta; use POST",
        "path": "/v1/predict/fare/jakarta",
        "allow": ["POST"],
    }
    for method, path, allowed in (
        ("POST", "/openapi.json", b"GET"),
        ("DELETE", "/admin/plan", b"GET, PUT"),  # before the token check: the methods are public
        ("POST", "/v1/models/fare/jakarta", b"GET"),
        ("POST", "/v2/health/live", b"GET"),
        ("GET", "/v2/models/fare-jakarta/infer", b"POST"),
    ):
        status, headers, _ = _call(app, method, path)
        assert (status, headers.get(b"allow")) == (405, allowed), (method, path)
    for method in ("OPTIONS", "TRACE", "DELETE", "POST", "PUT"):
        for probe in ("/healthz", "/readyz", "/metrics"):
            status, headers, _ = _call(app, method, probe)
            assert (status, headers[b"allow"]) == (405, b"GET, HEAD"), (method, probe)
    assert _call(app, "HEAD", "/healthz")[::2] == (200, b"")
    assert _call(app, "HEAD", "/metrics")[0] == 200


def test_probes_answer_beyond_the_concurrency_limit(tmp_path: Path):
    app = ServingApp(ServeSettings(plan_path=tmp_path / "plan.json", limit_concurrency=2))
    app.in_flight.count = 2  # two predictions in flight
    status, _, body = _call(app, "POST", "/v1/predict/fare/jakarta")
    assert status == 503
    assert b"more than 2 requests in flight" in body
    assert _call(app, "GET", "/healthz")[0] == 200
    assert _call(app, "GET", "/metrics")[0] == 200
    app.in_flight.count = 0
    assert _call(app, "POST", "/v1/predict/fare/jakarta")[0] == 503  # not started: not_ready, counted and released
    assert app.in_flight.count == 0
