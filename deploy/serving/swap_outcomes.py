"""What ``/readyz`` and the admin API say about plan swaps: counts, rejections, retries, failed models.

Each outcome is also counted in ``/metrics`` and logged. An error shown there is one line,
never a traceback: errors from model loading can carry a whole remote or native stack trace,
which belongs in the server log (``exc_info``), not on an unauthenticated page.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from modelyard.deploy.serving.errors import ServingError
from modelyard.deploy.serving.metrics import ServingMetrics

log = logging.getLogger("modelyard.serving")

MAX_FAILED_MODELS = 32  # failed-model entries (and their metric series) kept for /readyz
MAX_ERROR_CHARS = 300


class FailedModels(OrderedDict[str, dict[str, Any]]):
    """The last ``limit`` models that failed to load; an evicted one also leaves ``/metrics``.

    Without a bound, every PUT of an unknown model URI would grow ``/readyz`` and the
    ``model_load_failures{model=...}`` series for the life of the process.
    """

    def __init__(self, limit: int, on_evict: Callable[[str], None]) -> None:
        super().__init__()
        self.limit = limit
        self._on_evict = on_evict

    def __setitem__(self, uri: str, entry: dict[str, Any]) -> None:
        super().__setitem__(uri, entry)
        self.move_to_end(uri)
        while len(self) > self.limit:
            evicted, _ = self.popitem(last=False)
            self._on_evict(evicted)


class SwapOutcomes:
    """How the plan swaps of this worker went, for ``/readyz``, the admin API and ``/metrics``."""

    def __init__(self, metrics: ServingMetrics) -> None:
        self.metrics = metrics
        self.counts = {"applied": 0, "rejected": 0}
        self.last_rejected: dict[str, Any] | None = None
        self.retrying: dict[str, Any] | None = None  # the plan waiting for the registry, and why
        self.failed_models: dict[str, dict[str, Any]] = FailedModels(MAX_FAILED_MODELS, self._forget_failure)

    def applied(self, fresh: list[str]) -> None:
        """Count an applied plan; the models it loaded are no longer failed."""
        for uri in fresh:
            self.failed_models.pop(uri, None)
        self.counts["applied"] += 1
        self.metrics.swaps.labels("applied").inc()

    def rejected(self, digest: str, uri: str | None, exc: Exception) -> dict[str, Any]:
        """Record a plan that failed for good (``uri``: the model that failed); the answer to the caller."""
        error, kind = public_error(exc), type(exc).__name__
        if uri is not None:
            self.failed_models[uri] = {
                "uri": uri,
                "state": "failed",
                "error_type": kind,
                "last_error": error,
                "at": now(),
            }
            self.metrics.model_load_failures.labels(uri).inc()
        self.last_rejected = {"digest": digest, "model_uri": uri, "error_type": kind, "error": error, "at": now()}
        self.counts["rejected"] += 1
        self.metrics.swaps.labels("rejected").inc()
        extra = {"event": "plan_rejected", "digest": digest, "model_uri": uri, "error": error}
        log.error("plan rejected", extra=extra, exc_info=exc)  # the traceback goes to the log only
        return {"status": "rejected", "digest": digest, "model_uri": uri, "error": error}

    def unparsable(self, error: str, source: str) -> None:
        """Record a plan file that does not validate (the old plan keeps serving)."""
        self.last_rejected = {"digest": None, "source": source, "error": error, "at": now()}
        self.counts["rejected"] += 1
        self.metrics.swaps.labels("rejected").inc()
        log.error("plan rejected", extra={"event": "plan_rejected", "source": source, "error": error})

    def transient(self, digest: str, uri: str | None, exc: Exception) -> dict[str, Any]:
        """Record a failure worth retrying: not remembered as rejected, shown in ``/readyz``."""
        error = public_error(exc)
        previous = self.retrying if self.retrying is not None and self.retrying["digest"] == digest else {}
        attempt = int(previous.get("attempt", 0)) + 1
        self.retrying = {
            "digest": digest, "model_uri": uri, "error": error, "attempt": attempt,
            "since": previous.get("since", now()), "at": now(),
        }  # fmt: skip
        if uri is not None:
            self.failed_models[uri] = {"uri": uri, "state": "retrying", "last_error": error, "at": now()}
        log.warning(
            "plan load failed for a transient cause; retrying",
            extra={"event": "plan_retrying", "digest": digest, "model_uri": uri, "error": error, "attempt": attempt},
        )
        return {"status": "retrying", "digest": digest, "model_uri": uri, "error": error, "attempt": attempt}

    def next_attempt_in(self, seconds: float) -> None:
        """Show when the plan waiting for the registry is tried again."""
        if self.retrying is not None:
            self.retrying["next_attempt_in_s"] = round(seconds, 2)

    def stop_retrying(self) -> None:
        """No plan waits for the registry any more (it became active, failed for good or was superseded)."""
        self.retrying = None
        for uri in [uri for uri, f in self.failed_models.items() if f["state"] == "retrying"]:
            del self.failed_models[uri]  # in place: the bounded FailedModels must stay what it is

    def _forget_failure(self, uri: str) -> None:
        with contextlib.suppress(KeyError):
            self.metrics.model_load_failures.remove(uri)


def now() -> str:
    """The current UTC time as ISO-8601 with milliseconds (the times ``/readyz`` shows)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def public_error(exc: BaseException) -> str:
    """A one-line reason for ``/readyz`` and admin answers: never a traceback."""
    text = exc.message if isinstance(exc, ServingError) else f"{type(exc).__name__}: {exc}"
    return one_line(text)


def one_line(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """The first meaningful line of ``text`` (a traceback header is skipped), at most ``limit`` characters."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Traceback (most recent call last)")] or [""]
    first = lines[0]
    return first if len(first) <= limit else first[: limit - 1] + "…"
