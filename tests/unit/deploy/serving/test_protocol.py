"""The guarded transport reads its limits from the lifespan state uvicorn hands every connection."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from modelyard.deploy.serving.protocol import (
    CONTINUE,
    JOIN_MAX_BYTES,
    LIMITS_STATE_KEY,
    GuardedHttpToolsProtocol,
    TransportLimits,
)


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    raise AssertionError("not called")


def _protocol(app_state: dict[str, Any], loop: asyncio.AbstractEventLoop) -> GuardedHttpToolsProtocol:
    config = uvicorn.Config(app=_app, http=GuardedHttpToolsProtocol, lifespan="off")
    config.load()
    return GuardedHttpToolsProtocol(config=config, server_state=ServerState(), app_state=app_state, _loop=loop)


def test_a_connection_takes_the_servers_limits_else_the_defaults():
    loop = asyncio.new_event_loop()
    try:
        limits = TransportLimits(request_timeout_seconds=2.5, max_header_bytes=4096)
        configured = _protocol({LIMITS_STATE_KEY: limits}, loop)
        assert (configured._read_timeout, configured._max_header_bytes) == (2.5, 4096)
        default = _protocol({}, loop)
        assert (default._read_timeout, default._max_header_bytes) == (10.0, 64 * 1024)
    finally:
        loop.close()


class _Transport(asyncio.Transport):
    """A connection that records every write (one entry per ``send``) and whether it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _exchange(app: Any, request: bytes) -> _Transport:
    """Hand ``request`` to a guarded protocol serving ``app``; the transport once the app has finished."""
    loop = asyncio.new_event_loop()
    try:
        protocol, transport = _connected(app, loop)
        protocol.data_received(request)
        loop.run_until_complete(asyncio.gather(*protocol.tasks))
        protocol.connection_lost(None)
        return transport
    finally:
        loop.close()


def _connected(app: Any, loop: asyncio.AbstractEventLoop) -> tuple[GuardedHttpToolsProtocol, _Transport]:
    """A guarded protocol serving ``app`` on ``loop``, connected to a recording transport."""
    config = uvicorn.Config(app=app, http=GuardedHttpToolsProtocol, lifespan="off", proxy_headers=False)
    config.load()
    protocol = GuardedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    transport = _Transport()
    protocol.connection_made(transport)
    return protocol, transport


async def _answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})


POST = b"POST /v1/predict/a/b HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}"


def test_a_response_leaves_in_one_write_head_and_body_together():
    transport = _exchange(_answer, POST)
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[0].endswith(b"\r\n\r\n{}")


def test_a_head_request_gets_its_head_and_a_large_body_its_own_write():
    head = _exchange(_answer, POST.replace(b"POST", b"HEAD", 1))
    assert len(head.writes) == 1
    assert head.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert head.writes[0].endswith(b"\r\n\r\n")

    large = b"x" * (JOIN_MAX_BYTES + 1)

    async def big(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        headers = [(b"content-length", b"%d" % len(large))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": large})

    transport = _exchange(big, POST)
    assert [w[:9] for w in transport.writes] == [b"HTTP/1.1 ", b"x" * 9]
    assert transport.writes[1] == large


def test_a_held_head_is_sent_before_the_connection_closes_on_a_failed_response():
    async def fails(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
        raise RuntimeError("the app failed after starting its answer")

    transport = _exchange(fails, POST)
    assert transport.closed
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")


def test_a_100_continue_goes_out_at_once_and_the_answer_in_one_write():
    request = b"POST / HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n"
    loop = asyncio.new_event_loop()
    try:
        protocol, transport = _connected(_answer, loop)
        protocol.data_received(request)
        loop.run_until_complete(asyncio.sleep(0.01))  # the app is waiting for the body
        assert transport.writes == [CONTINUE]
        protocol.data_received(b"{}")
        loop.run_until_complete(asyncio.gather(*protocol.tasks))
        assert len(transport.writes) == 2
        assert transport.writes[1].endswith(b"\r\n\r\n{}")
    finally:
        loop.close()
