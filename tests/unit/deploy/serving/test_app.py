"""The ASGI app: its lifespan hands the server's transport limits to uvicorn's connections."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from modelyard.deploy.serving.app import ServingApp
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
