"""Which model-load failures are worth retrying, and how long one registry call may wait.

A model that does not exist or does not load fails the same way on every attempt; a
registry that is unreachable, times out or answers 5xx usually comes back. The runtime
wraps both in its typed errors (``ModelMissing``, ``ModelLoadFailed``), so the cause is
read from the exception chain: MLflow's REST client re-raises a ``requests`` error inside a
plain ``MlflowException`` (``__context__``, not ``__cause__``), hence both links are walked.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator, MutableMapping

# Per attempt: one retry inside MLflow's client, 10 s per HTTP request. The server's own
# backoff (PlanManager) retries the plan after that, so a registry outage neither blocks a
# swap for minutes (MLflow's defaults: 7 retries, backoff factor 2, ~4 minutes) nor gives up.
REGISTRY_CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}

_HTTP_5XX = re.compile(r"(error code|status code|HTTP|too many) 5\d\d\b|\b5\d\d (Server Error|error responses)")
_CHAIN_LIMIT = 32
_FULL_DISK = frozenset({errno.ENOSPC, errno.EDQUOT})


def bound_registry_wait(environ: MutableMapping[str, str]) -> None:
    """Set ``REGISTRY_CLIENT_DEFAULTS`` in ``environ`` where the user did not set them."""
    for name, value in REGISTRY_CLIENT_DEFAULTS.items():
        environ.setdefault(name, value)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or anything that caused it) says the registry or network was down.

    Transient: connection refused or reset, timeouts, HTTP 5xx (after MLflow's own retries), and
    a full disk under the model cache (no space, quota), which the operator frees. Everything
    else (not found, unreadable artifacts, a model failing its warm-up) is permanent: retrying
    would fail the same way.
    """
    return any(_transient_link(link) for link in _chain(exc))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen and len(seen) < _CHAIN_LIMIT:
        seen.add(id(link))
        yield link
        # Python's own rule (as in tracebacks): `raise ... from None` cuts the implicit link.
        link = link.__cause__ or (None if link.__suppress_context__ else link.__context__)


def _transient_link(exc: BaseException) -> bool:
    import requests
    import urllib3.exceptions

    if isinstance(exc, requests.HTTPError):
        return exc.response is not None and exc.response.status_code >= 500
    transient_types = (
        requests.ConnectionError,  # includes requests' ConnectTimeout, ProxyError, SSLError
        requests.Timeout,
        requests.exceptions.RetryError,  # urllib3 gave up on 429/5xx answers
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.MaxRetryError,
        urllib3.exceptions.ProtocolError,
        urllib3.exceptions.TimeoutError,
        ConnectionError,  # refused, reset, aborted
        TimeoutError,
    )
    if isinstance(exc, transient_types):
        return True
    if isinstance(exc, OSError) and exc.errno in _FULL_DISK:
        return True  # the model cache's disk is full: freed space lets the same plan load
    return type(exc).__name__ == "MlflowException" and bool(_HTTP_5XX.search(str(exc)))
