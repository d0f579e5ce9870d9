"""The serving runtime's typed errors; ``status`` is the HTTP status each maps to."""

from __future__ import annotations

from typing import Any

from modelyard.core.errors import ModelyardError


class ServingError(ModelyardError):
    """Base of the runtime's typed errors; ``status`` is the HTTP status it maps to."""

    status = 500
    code = "serving_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


class ModelMissing(ServingError):
    """The registry has no such model version (or alias), or its artifacts are gone."""

    status = 404
    code = "model_missing"


class ModelLoadFailed(ServingError):
    """The model exists but cannot be loaded or fails its warm-up."""

    status = 503
    code = "model_load_failed"


class BadInput(ServingError):
    """The request does not match the model's input signature; ``field`` names where."""

    status = 422
    code = "bad_input"


class InferenceFailed(ServingError):
    """The model raised or returned an unusable result on valid input.

    ``message`` is what the client reads (never the library's text: it names numpy dtypes and
    internal columns the client never sent); ``detail`` (the library's text) goes to the log.
    """

    status = 500
    code = "inference_failed"

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


class RequestError(ServingError):
    """A request problem that is not about one record (JSON, shape, size, routing, method, admin)."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, status: int = 400, code: str = "bad_request"):
        super().__init__(message, field=field)
        self.status = status
        self.code = code


class MethodNotAllowed(RequestError):
    """A known path asked with a method it does not answer; ``allow`` lists those it does (the Allow header)."""

    def __init__(self, method: str, path: str, allow: tuple[str, ...]) -> None:
        super().__init__(
            f"{method} not allowed on {path}; use {' or '.join(allow)}", status=405, code="method_not_allowed"
        )
        self.path = path
        self.allow = allow

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "path": self.path, "allow": list(self.allow)}


class UnknownPath(RequestError):
    """No endpoint answers the path: the body names it and the endpoints that exist (``hint``: the near miss)."""

    def __init__(self, path: str, endpoints: tuple[str, ...], hint: str | None = None) -> None:
        what = hint or "the endpoints are listed in 'endpoints', and described at GET /openapi.json"
        super().__init__(f"no endpoint {path}; {what}", field="path", status=404, code="not_found")
        self.path = path
        self.endpoints = endpoints

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "path": self.path, "endpoints": list(self.endpoints)}
