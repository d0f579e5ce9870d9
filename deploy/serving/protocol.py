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

uvicorn builds the protocol itself (the class is importable by name for ``--workers > 1``),
so the limits travel through the ASGI lifespan state: at startup the app puts the server's
``TransportLimits`` (from its settings) there, and uvicorn hands that state to every
connection's protocol. Without them (no lifespan) the defaults apply.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_REQUEST_TIMEOUT_S = 10.0
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
LIMITS_STATE_KEY = "modelyard.transport_limits"  # in the ASGI lifespan state


@dataclasses.dataclass(frozen=True)
class TransportLimits:
    """How long a request may take to arrive, and how large its request line and headers may be."""

    request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_S
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES


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

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._arriving_since = None
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
        if cycle is not None and cycle is not before and self.scope["method"] != "HEAD":  # HEAD writes no body
            cycle.transport = CoalescingTransport(self.transport)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        self._arriving_since = None  # arrived whole: the pending timer, when it fires, finds nothing to refuse
        super().on_message_complete()

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
