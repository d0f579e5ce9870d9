"""The HTTP transport: uvicorn's httptools protocol with a request read deadline and a header cap.

httptools (unlike h11) has no read timeout: uvicorn arms its keep-alive timer only after a
response, so a client that opens a connection and sends its headers (or body) one byte at
a time holds it for as long as it likes (slowloris). Here every request must arrive whole,
headers and body, within ``MODELYARD_SERVE_REQUEST_TIMEOUT`` seconds of its first byte (or
of the connection opening); otherwise the client gets ``408`` and the connection closes.
Headers larger than ``MODELYARD_SERVE_MAX_HEADER_BYTES`` get ``431``. The deadline is one float a
request (when it started arriving) and one timer a connection: the timer is armed when a request
starts and none is pending, and when it fires it either refuses the request still arriving or re-arms
for the current one's deadline. A keep-alive connection answering thousands of requests a second
so schedules a timer every ``timeout`` seconds, not one (and its cancel) a request.

A response leaves in one socket write: uvicorn writes the head on ``http.response.start`` and the
body on ``http.response.body``, two ``send`` syscalls (and two TCP segments) for a small JSON
answer; here the head waits for the first body write and goes out with it (profiled over HTTP,
the head's own write was the largest single cost of a one-row prediction after the model).

A small prediction request can be answered in the parser's callback (the lane, ADR 0024): a POST
under one of the app's ``Lane.paths``, with a declared body of at most ``Lane.max_body`` bytes
(no ``Expect``, no chunked body) is not handed to an ASGI task when its headers arrive; when its
body is complete, ``Lane.answer`` gets the scope and the body and returns the response, written
at once with the server's default headers, or None when the request must wait for something (an
online-store read, a queued batch, parsing off the loop), and the request then takes the ASGI path
with its body already read. uvicorn's own request state (scope, cycle, keep-alive, pipelining) is
kept; what the lane skips is the task, the ASGI messages and the response header checks (the
lane's headers are the server's own): a third of a one-row prediction's CPU in process through
this transport (``tests/bench/request_path.py``).

uvicorn builds the protocol itself (the class is importable by name for ``--workers > 1``),
so the limits and the lane travel through the ASGI lifespan state: at startup the app puts the
server's ``TransportLimits`` (from its settings) and its ``Lane`` there, and uvicorn hands that
state to every connection's protocol. Without them (no lifespan) the defaults apply and every
request takes the ASGI path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Any, cast

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

from modelyard.deploy.serving.asgi import Response, Scope

log = logging.getLogger("modelyard.serving")

DEFAULT_REQUEST_TIMEOUT_S = 10.0
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
LIMITS_STATE_KEY = "modelyard.transport_limits"  # in the ASGI lifespan state
LANE_STATE_KEY = "modelyard.lane"  # in the ASGI lifespan state


@dataclasses.dataclass(frozen=True)
class TransportLimits:
    """How long a request may take to arrive, and how large its request line and headers may be."""

    request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_S
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES


@dataclasses.dataclass(frozen=True)
class Lane:
    """The requests the app may answer in the parser's callback, and how.

    ``answer(scope, body)`` returns the response, or None to hand the request to the ASGI app; it
    must not raise (the app turns its own errors into responses; anything else here is a 500).
    """

    paths: tuple[str, ...]
    max_body: int
    answer: Callable[[Scope, bytes], Response | None]


def _declared_small(headers: Iterable[tuple[bytes, bytes]], limit: int) -> bool:
    """Whether the request declares a body of at most ``limit`` bytes (and is not chunked)."""
    length = None
    for name, value in headers:
        if name == b"content-length":
            length = value
        elif name == b"transfer-encoding":
            return False
    return length is not None and length.isdigit() and int(length) <= limit


def _lane_response(response: Response, default_headers: list[tuple[bytes, bytes]], keep_alive: bool) -> bytes:
    """``response`` as the bytes uvicorn would write for it: status line, the server's headers, the body."""
    parts = [STATUS_LINE[response.status]]
    for name, value in (*default_headers, *response.headers):
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"content-type: %s\r\ncontent-length: %d\r\n" % (response.content_type, len(response.body)))
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts += (b"\r\n", response.body)
    return b"".join(parts)


INTERNAL_ERROR = Response(
    500, orjson.dumps({"error": "internal", "message": "internal error; the server log has details"})
)


class HeadersTooLarge(Exception):
    """Raised inside the parser callback to stop parsing a request whose headers are too large."""


def _error_response(status: int, reason: bytes, code: str, message: str) -> bytes:
    """A complete ``connection: close`` HTTP response with the server's JSON error body."""
    body = orjson.dumps({"error": code, "message": message})
    head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n"
    return head % (status, reason, len(body)) + body


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
JOIN_MAX_BYTES = 256 * 1024  # a larger body goes in its own write (no copy)


class CoalescingTransport:
    """One request's view of the connection: the response head is held until the body's first write.

    uvicorn always writes a body for a non-``HEAD`` request (``b""`` for an empty one) and closes
    through this object after a failed response, so a held head is always sent, before the close.
    """

    __slots__ = ("_head", "_head_seen", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None
        self._head_seen = False

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            if len(data) <= JOIN_MAX_BYTES:
                self._transport.write(head + data)
                return
            self._transport.write(head)
        elif not self._head_seen and data.startswith(b"HTTP/") and data != CONTINUE:
            self._head_seen = True
            self._head = data
            return
        self._transport.write(data)

    def flush(self) -> None:
        """Send a held head now."""
        head, self._head = self._head, None
        if head is not None:
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` whose requests must arrive within a deadline, with bounded headers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = self.app_state.get(LIMITS_STATE_KEY) or TransportLimits()
        self._read_timeout, self._max_header_bytes = limits.request_timeout_seconds, limits.max_header_bytes
        self._read_deadline: asyncio.TimerHandle | None = None
        self._arriving_since: float | None = None  # loop time the request now arriving began; None between requests
        self._header_bytes = 0
        self._lane: Lane | None = self.app_state.get(LANE_STATE_KEY)
        self._lane_cycle: tuple[RequestResponseCycle, Any] | None = None  # its headers in, its body arriving

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._arriving_since = None
        self._lane_cycle = None
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self.transport.is_closing():  # refused: ignore what the client still sends
            super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        if not self.transport.is_closing():  # a refusal already answered
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if self._arriving_since is None:  # else the connection opened for this request: its deadline runs
            self._arm_deadline()

    # The count is inlined and the parent called by name: these run for every header of every request.
    def on_url(self, url: bytes) -> None:
        self._header_bytes += len(url)
        if self._header_bytes > self._max_header_bytes:
            self._headers_too_large()
        HttpToolsProtocol.on_url(self, url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > self._max_header_bytes:
            self._headers_too_large()
        HttpToolsProtocol.on_header(self, name, value)

    def on_headers_complete(self) -> None:
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        lane_cycle = self._lane_cycle
        if cycle is not None and cycle is not before and (lane_cycle is None or lane_cycle[0] is not cycle):
            _coalesce(cycle)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        lane = self._lane
        if (
            lane is not None
            and cycle is self.cycle
            and cycle.more_body  # its body is still arriving (a pipelined request may be complete already)
            and app is self.app  # not uvicorn's own 503 of its concurrency limit
            and not cycle.access_log
            and not self.expect_100_continue
            and cycle.scope["method"] == "POST"
            and cycle.scope["path"].startswith(lane.paths)
            and _declared_small(cycle.scope["headers"], lane.max_body)
        ):
            self._lane_cycle = (cycle, app)  # answered when its body is complete
            return
        super()._start_asgi_task(cycle, app)

    def on_message_complete(self) -> None:
        self._arriving_since = None  # arrived whole: the pending timer, when it fires, finds nothing to refuse
        super().on_message_complete()
        taken = self._lane_cycle
        if taken is not None and taken[0] is self.cycle:
            self._lane_cycle = None
            self._answer_in_lane(*taken)

    def _answer_in_lane(self, cycle: RequestResponseCycle, app: Any) -> None:
        """Answer the complete request in ``cycle`` now, or start its ASGI task (the app said wait)."""
        assert self._lane is not None
        response = None
        if not self.flow.write_paused:  # else the ASGI path waits for the client to read its earlier answers
            try:
                response = self._lane.answer(cast(Scope, cycle.scope), bytes(cycle.body))
            except Exception:
                log.exception("unhandled error", extra={"path": cycle.scope.get("path")})
                response = INTERNAL_ERROR
        if response is None:
            _coalesce(cycle)
            HttpToolsProtocol._start_asgi_task(self, cycle, app)
            return
        cycle.response_started = cycle.response_complete = True
        self.transport.write(_lane_response(response, cycle.default_headers, cycle.keep_alive))
        if not cycle.keep_alive:
            self.transport.close()
        cycle.on_response()

    def _headers_too_large(self) -> None:
        message = f"request line and headers exceed {self._max_header_bytes} bytes"
        self._refuse(431, b"Request Header Fields Too Large", "headers_too_large", message)
        raise HeadersTooLarge(message)  # stops the parser (uvicorn's 400 is suppressed above)

    def _arm_deadline(self) -> None:
        """A request starts arriving now: its deadline is ``now + timeout``; a timer fires by then."""
        now = self.loop.time()
        self._arriving_since = now
        if self._read_deadline is None:
            self._read_deadline = self.loop.call_at(now + self._read_timeout, self._deadline_passed)

    def _deadline_passed(self) -> None:
        self._read_deadline = None
        since = self._arriving_since
        if since is None:  # between requests: the next one arms a timer when it starts
            return
        deadline = since + self._read_timeout
        if self.loop.time() < deadline:  # a later request is arriving: wait for its own deadline
            self._read_deadline = self.loop.call_at(deadline, self._deadline_passed)
            return
        timeout = self._read_timeout
        message = f"the request was not received within {timeout:g}s; send headers and body without pausing"
        self._refuse(408, b"Request Timeout", "request_timeout", message)

    def _refuse(self, status: int, reason: bytes, code: str, message: str) -> None:
        """Answer ``status`` unless a response already started, then close the connection.

        On a kept-alive connection ``cycle`` is still the answered request's until the next one's
        headers are complete: a finished response is no reason to leave the refusal unsaid.
        """
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or not cycle.response_started or cycle.response_complete:
            self.transport.write(_error_response(status, reason, code, message))
        elif isinstance(cycle.transport, CoalescingTransport):
            cycle.transport.flush()
        self.transport.close()


def _coalesce(cycle: RequestResponseCycle) -> None:
    """Hold the head of ``cycle``'s response for its body's first write (a ``HEAD`` answer has no body)."""
    if cycle.scope["method"] != "HEAD":
        cycle.transport = CoalescingTransport(cycle.transport)  # type: ignore[assignment]
