"""The guarded transport reads its limits from the lifespan state uvicorn hands every connection."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from modelyard.deploy.serving.asgi import Response
from modelyard.deploy.serving.protocol import (
    CONTINUE,
    JOIN_MAX_BYTES,
    LANE_STATE_KEY,
    LIMITS_STATE_KEY,
    GuardedHttpToolsProtocol,
    Lane,
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


def _connected(
    app: Any, loop: asyncio.AbstractEventLoop, app_state: dict[str, Any] | None = None
) -> tuple[GuardedHttpToolsProtocol, _Transport]:
    """A guarded protocol serving ``app`` on ``loop``, connected to a recording transport."""
    config = uvicorn.Config(
        app=app, http=GuardedHttpToolsProtocol, lifespan="off", proxy_headers=False, access_log=False
    )  # as modelyard serve runs it (an access log takes every request off the lane)
    config.load()
    state = app_state or {}
    protocol = GuardedHttpToolsProtocol(config=config, server_state=ServerState(), app_state=state, _loop=loop)
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


# ---------------------------------------------------------------------------- the lane


class _Lane:
    """A lane that answers with what ``reply`` returns and records every (path, body) it was given."""

    def __init__(self, reply: Any = None) -> None:
        self.calls: list[tuple[str, bytes]] = []
        self.reply = reply if reply is not None else (lambda scope, body: Response(200, b'{"lane":true}'))

    def answer(self, scope: dict[str, Any], body: bytes) -> Response | None:
        self.calls.append((scope["path"], body))
        return self.reply(scope, body)  # type: ignore[no-any-return]

    def state(self) -> dict[str, Any]:
        return {LANE_STATE_KEY: Lane(("/v1/",), 1024, self.answer)}


async def _echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI path: answers what it received."""
    body = (await receive())["body"]
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _lane_exchange(lane: _Lane, *chunks: bytes) -> tuple[GuardedHttpToolsProtocol, _Transport, int]:
    """Feed ``chunks`` to a protocol with ``lane``; the protocol, its transport and how many ASGI tasks ran.

    The transport is as the exchange left it (``closed`` only if the server closed it).
    """
    loop = asyncio.new_event_loop()
    try:
        protocol, transport = _connected(_echo, loop, lane.state())
        tasks = 0
        for chunk in chunks:
            protocol.data_received(chunk)
            if protocol.tasks:
                tasks += len(protocol.tasks)
                loop.run_until_complete(asyncio.gather(*protocol.tasks))
        closed = transport.closed
        protocol.connection_lost(None)
        transport.closed = closed
        return protocol, transport, tasks
    finally:
        loop.close()


def test_the_lane_answers_a_small_post_in_one_write_without_a_task():
    lane = _Lane()
    protocol, transport, tasks = _lane_exchange(lane, POST)
    assert lane.calls == [("/v1/predict/a/b", b"{}")]
    assert tasks == 0
    assert transport.writes == [
        b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 13\r\n\r\n{"lane":true}'
    ]
    assert not transport.closed
    assert protocol.server_state.total_requests == 1


def test_the_lane_gets_the_whole_body_however_it_arrives_and_pipelined_requests_in_order():
    lane = _Lane(lambda scope, body: Response(200, body))
    request = b"POST /v1/x HTTP/1.1\r\nhost: x\r\ncontent-length: 6\r\n\r\n"
    _, transport, tasks = _lane_exchange(lane, request + b"abc", b"def" + request + b"ghi", b"jkl")
    assert lane.calls == [("/v1/x", b"abcdef"), ("/v1/x", b"ghijkl")]
    assert tasks == 0
    assert [w.rsplit(b"\r\n\r\n", 1)[1] for w in transport.writes] == [b"abcdef", b"ghijkl"]


def test_a_request_the_lane_declines_takes_the_asgi_path_with_its_body():
    lane = _Lane(lambda scope, body: None)
    _, transport, tasks = _lane_exchange(lane, POST.replace(b"/v1/predict/a/b", b"/v1/wait"))
    assert lane.calls == [("/v1/wait", b"{}")]
    assert tasks == 1
    assert len(transport.writes) == 1  # the ASGI answer still leaves in one write
    assert transport.writes[0].startswith(b"HTTP/1.1 201 Created\r\n")
    assert transport.writes[0].endswith(b"\r\n\r\n{}")


def test_the_lane_takes_only_small_declared_posts_under_its_paths():
    large = b"x" * 1025
    requests = [
        b"GET /v1/predict/a/b HTTP/1.1\r\nhost: x\r\n\r\n",
        b"POST /other HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}",
        b"POST /v1/x HTTP/1.1\r\nhost: x\r\ncontent-length: 1025\r\n\r\n" + large,
        b"POST /v1/x HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    ]
    for request in requests:
        lane = _Lane()
        _, transport, tasks = _lane_exchange(lane, request)
        assert lane.calls == [], request[:40]
        assert tasks == 1, request[:40]
        assert transport.writes[0].startswith(b"HTTP/1.1 201 Created\r\n"), request[:40]


def test_a_request_that_expects_100_continue_takes_the_asgi_path():
    lane = _Lane()
    request = b"POST /v1/x HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n"
    loop = asyncio.new_event_loop()
    try:
        protocol, transport = _connected(_echo, loop, lane.state())
        protocol.data_received(request)
        loop.run_until_complete(asyncio.sleep(0.01))  # the app asks for the body: the 100 goes out
        protocol.data_received(b"{}")
        loop.run_until_complete(asyncio.gather(*protocol.tasks))
    finally:
        loop.close()
    assert lane.calls == []
    assert transport.writes[0] == CONTINUE
    assert transport.writes[1].startswith(b"HTTP/1.1 201 Created\r\n")


def test_a_lane_answer_to_a_closing_request_closes_the_connection():
    lane = _Lane()
    _, transport, _ = _lane_exchange(lane, POST.replace(b"host: x\r\n", b"host: x\r\nconnection: close\r\n"))
    assert b"\r\nconnection: close\r\n" in transport.writes[0]
    assert transport.closed


def test_a_lane_that_fails_answers_500_without_its_text(caplog):
    def fails(scope: dict[str, Any], body: bytes) -> Response:
        raise RuntimeError("secret /srv/path detail")

    _, transport, _ = _lane_exchange(_Lane(fails), POST)
    assert transport.writes[0].startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert b"secret" not in transport.writes[0]
    assert b"the server log has details" in transport.writes[0]
    assert "secret /srv/path detail" in caplog.text
