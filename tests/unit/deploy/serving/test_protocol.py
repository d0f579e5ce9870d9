"""The guarded transport reads its limits from the lifespan state uvicorn hands every connection."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from modelyard.deploy.serving.protocol import LIMITS_STATE_KEY, GuardedHttpToolsProtocol, TransportLimits


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
