"""Which model-load failures are worth retrying, and how long one registry call may wait.

A model that does not exist or does not load fails the same way on every attempt; a
registry that is unreachable, times out or answers 5xx usually comes back. The runtime
wraps both in its typed errors (``ModelMissing``, ``ModelLoadFailed``), so the cause is
read from the exception chain: MLflow's REST client re-raises a ``requests`` error inside a
plain ``MlflowException`` (``__context__``, not ``__cause__``), hence both links are walked.

The model cache is local and can fail too: its disk fills up, or someone removes the folder while
a model downloads into it. :func:`model_cache_faults` turns either into :class:`ModelCacheFault`, which
is transient (the next attempt creates the folder and downloads again) and whose message names
the setting, never the server's path.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import re
from collections.abc import Iterator, MutableMapping
from pathlib import Path

from modelyard.deploy.serving.errors import ModelLoadFailed

log = logging.getLogger("modelyard.serving.runtime")

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
_CACHE_SETTING = "MODELYARD_SERVE_MODEL_CACHE"  # settings.CACHE_ENV (settings imports this module's neighbours)


class ModelCacheFault(ModelLoadFailed):
    """The model cache failed under a load (disk full, folder removed): retried like a registry outage."""

    code = "model_cache_fault"


def bound_registry_wait(environ: MutableMapping[str, str]) -> None:
    """Set ``REGISTRY_CLIENT_DEFAULTS`` in ``environ`` where the user did not set them."""
    for name, value in REGISTRY_CLIENT_DEFAULTS.items():
        environ.setdefault(name, value)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or anything that caused it) says the registry or network was down.

    Transient: connection refused or reset, timeouts, HTTP 5xx (after MLflow's own retries), a
    full disk (no space, quota), which the operator frees, and a :class:`ModelCacheFault`. Everything
    else (not found, unreadable artifacts, a model failing its warm-up) is permanent: retrying
    would fail the same way.
    """
    return any(_transient_link(link) for link in _chain(exc))


@contextlib.contextmanager
def model_cache_faults(uri: str, cache: Path | None) -> Iterator[None]:
    """Create ``cache`` (removed under a running server: downloads go on) and type the faults it causes.

    Raises:
        ModelCacheFault: the load failed because the cache's disk is full (no space, quota), or
            because the cache folder, or the model's own folder in it, was removed meanwhile.
    """
    if cache is None:
        yield
        return
    identity = None
    try:
        cache.mkdir(parents=True, exist_ok=True)
        identity = _identity(cache)
        yield
    except Exception as exc:
        fault = cache_fault(exc, uri, cache, identity)
        if fault is None:
            raise
        log.warning("model cache fault", extra={"uri": uri, "error": f"{type(exc).__name__}: {exc}"})
        raise fault from exc


def cache_fault(exc: BaseException, uri: str, cache: Path, identity: tuple[int, int] | None) -> ModelCacheFault | None:
    """``exc`` as a :class:`ModelCacheFault` when the model cache caused it, else None.

    A full disk or quota anywhere in the chain; or ``cache`` is not the folder it was when the
    load began (``identity``: removed, perhaps created again); or the model's folder in it vanished
    (an ENOENT naming a direct child of ``cache``, or MLflow's "destination path does not exist").
    A file missing *inside* a model's folder is the artifact's fault and stays permanent.
    """
    links = list(_chain(exc))
    if any(isinstance(link, OSError) and link.errno in _FULL_DISK for link in links):
        why = "its disk is full (free space or give it a larger volume)"
    elif _identity(cache) != identity or any(_model_folder_vanished(link, cache) for link in links):
        why = "its folder was removed while the model loaded"
    else:
        return None
    return ModelCacheFault(f"{uri}: the model cache ({_CACHE_SETTING}) failed: {why}; retrying")


def _identity(folder: Path) -> tuple[int, int] | None:
    try:
        stat = folder.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _model_folder_vanished(exc: BaseException, cache: Path) -> bool:
    root = cache.resolve()
    if isinstance(exc, OSError) and exc.errno == errno.ENOENT:
        names = (name for name in (exc.filename, exc.filename2) if name is not None)
        return any(Path(str(name)).resolve().parent == root for name in names)
    return "destination path" in str(exc).lower() and "does not exist" in str(exc)


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
    if isinstance(exc, (*transient_types, ModelCacheFault)):
        return True
    if isinstance(exc, OSError) and exc.errno in _FULL_DISK:
        return True  # the model cache's disk is full: freed space lets the same plan load
    return type(exc).__name__ == "MlflowException" and bool(_HTTP_5XX.search(str(exc)))
