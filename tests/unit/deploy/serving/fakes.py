"""In-memory models for the loader and plan-manager tests: what ``load_model`` returns, without a registry."""

from __future__ import annotations

from modelyard.deploy.serving.registry import ModelRef
from modelyard.deploy.serving.runtime import ModelStatus, ServedModel
from modelyard.deploy.serving.schema import Feature, InputSchema


def fake_model(uri: str, version: str | None = None) -> ServedModel:
    """A ready in-memory model: what ``load_model`` returns, without a registry."""
    ref = ModelRef.parse(uri)
    status = ModelStatus(uri=uri, name=ref.name, version=version or ref.version, state="ready")
    schema = InputSchema([Feature("x", "double")])
    return ServedModel(status, schema, lambda m: m[:, 0], inline=True, example=[{"x": 1.0}], workdir=None)


def uris(count: int, version: int = 1) -> list[str]:
    return [f"models:/m{i}/{version}" for i in range(count)]
