"""ASGI plumbing: a request body read within its size limit, headers and query, the response a handler returns."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import orjson

from modelyard.deploy.serving.errors import MethodNotAllowed, RequestError, ServingError

MAX_BODY_BYTES = 64 * 1024 * 1024

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ClientGone(Exception):
    """The client disconnected (or was cut off by the read deadline) before its body arrived."""


@dataclasses.dataclass
class Response:
    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: tuple[tuple[bytes, bytes], ...] = ()


def json_response(status: int, payload: Any) -> Response:
    return Response(status, orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY))


def error_response(exc: ServingError) -> Response:
    response = json_response(exc.status, exc.to_dict())
    if isinstance(exc, MethodNotAllowed):
        response.headers = ((b"allow", ", ".join(exc.allow).encode()),)
    return response


def allow(method: str, path: str, *methods: str) -> None:
    """Refuse ``method`` on the known ``path`` unless it is one of ``methods`` (405 with an Allow header)."""
    if method not in methods:
        raise MethodNotAllowed(method, path, methods)


class InFlight:
    """The requests a worker answers at once; beyond ``limit`` a new one gets 503 (probes are not counted).

    uvicorn's own ``limit_concurrency`` answers 503 before the app sees the path, so a busy pod
    would fail its liveness probe and be restarted: the limit lives here instead.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def overloaded(self) -> Response:
        body = {"error": "overloaded", "message": f"more than {self.limit} requests in flight; retry shortly"}
        return json_response(503, body)


async def send_response(send: Send, response: Response) -> None:
    """Send ``response`` as one start message and one body message."""
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": [
                (b"content-type", response.content_type),
                (b"content-length", b"%d" % len(response.body)),
                *response.headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": response.body})


def _too_large() -> RequestError:
    return RequestError(f"body larger than {MAX_BODY_BYTES} bytes", field="body", status=413, code="too_large")


def check_declared_length(content_length: str | None) -> None:
    """Refuse a body whose declared size is over the limit before reading any of it."""
    if content_length is not None and content_length.strip().isdigit() and int(content_length) > MAX_BODY_BYTES:
        raise _too_large()


async def read_body(receive: Receive) -> bytes:
    """The whole request body (raises ``ClientGone``, or a 413 once it grows past the limit)."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body
    chunks = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def header(scope: Scope, name: bytes) -> str | None:
    """The value of header ``name`` (lower-case bytes), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def query(scope: Scope) -> dict[str, str]:
    """The query parameters (the last value of each)."""
    return {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
