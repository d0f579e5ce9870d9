"""The online store: where online features live between builds and requests (docs/adr/0019)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from modelyard.core.config.base import Section


class OnlineSettings(Section):
    """Where the data stage materialises online features and the push path writes them.

    ``store: embedded`` is a SQLite file under the host's own folder (``storage.local_dir``/online),
    for the demo and tests; ``redis`` is ``url`` (``redis://host:6379/0``; a password comes from
    ``MODELYARD_ONLINE__URL``, never the file). Every key starts with ``prefix`` and lives
    ``ttl_hours`` after its last write. ``timeout_ms`` bounds a server's lookup (its default:
    ``MODELYARD_SERVE_ONLINE_TIMEOUT_MS``); ``chunk_rows`` values go in one pipelined write.
    """

    store: Literal["embedded", "redis"] = "embedded"
    url: str | None = None
    prefix: str = Field("modelyard", pattern=r"^[A-Za-z0-9_.-]+$")
    ttl_hours: float = Field(168.0, gt=0)
    timeout_ms: float = Field(20.0, gt=0)
    chunk_rows: int = Field(5000, ge=1)
