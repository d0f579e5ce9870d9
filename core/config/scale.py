"""How the chunked stages fan out over many pairs (ADR 0008)."""

from __future__ import annotations

from pydantic import Field

from modelyard.core.config.base import Section


class ScaleSettings(Section):
    """How a stage fans out over many pairs: at most ``max_chunks`` mapped tasks per run, each
    running its pairs (``chunk_size`` of them, more once ``max_chunks`` is reached) in a pool of
    ``workers`` processes (1: in the task's own process). See ADR 0008."""

    chunk_size: int = Field(10, ge=1)
    max_chunks: int = Field(8, ge=1, le=1024)
    workers: int = Field(1, ge=1, le=64)
