"""Kubernetes API plumbing shared by the worker (sync client) and the triggers (async client).

* :func:`api_retry`: retry transient API errors (409, 429, 5xx, connection errors) with
  exponential backoff, honouring ``Retry-After`` on 429/503 — the shape of the cncf.kubernetes
  provider's ``generic_api_retry``, for the official client's ``ApiException`` and for httpx.
* :class:`AsyncKubeClient`: an ``httpx.AsyncClient`` on the API server with the credentials of
  a kubernetes ``Configuration`` (token, client certificate, CA), for the deferrable waits:
  a trigger must not block the triggerer's event loop with the sync client.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import tenacity

if TYPE_CHECKING:
    import httpx
    from kubernetes.client import Configuration

log = logging.getLogger(__name__)

API_RETRIES = 5
RETRY_WAIT_MIN_SECONDS = 0.5
RETRY_WAIT_MAX_SECONDS = 15.0
MAX_RETRY_AFTER_SECONDS = 60.0
TRANSIENT_STATUS_CODES = frozenset({409, 429, 500, 502, 503, 504})
F = TypeVar("F", bound=Callable[..., Any])

_backoff = tenacity.wait_exponential(min=RETRY_WAIT_MIN_SECONDS, max=RETRY_WAIT_MAX_SECONDS)


def _status_and_headers(exc: BaseException) -> tuple[int | None, Any]:
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        return exc.status, exc.headers or {}
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code, exc.response.headers
    return None, {}


def is_transient(exc: BaseException) -> bool:
    """A status worth retrying, or a connection-level error (no answer at all)."""
    import httpx
    from urllib3.exceptions import HTTPError

    status, _ = _status_and_headers(exc)
    if status is not None:
        return status in TRANSIENT_STATUS_CODES
    return isinstance(exc, HTTPError | httpx.TransportError)


class WaitRetryAfterOrExponential(tenacity.wait.wait_base):
    """Wait what the API server asks (``Retry-After`` on 429/503, capped), else back off exponentially."""

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if exc is not None:
            status, headers = _status_and_headers(exc)
            retry_after = headers.get("Retry-After") if status in (429, 503) else None
            if retry_after:
                try:
                    return min(float(retry_after), MAX_RETRY_AFTER_SECONDS)
                except ValueError:
                    pass  # an HTTP date: fall back to the backoff
        return float(_backoff(retry_state))


def api_retry(func: F) -> F:
    """Retry ``func`` (sync or async) on transient Kubernetes API errors; re-raise the last one."""
    decorated: F = tenacity.retry(  # type: ignore[assignment]
        stop=tenacity.stop_after_attempt(API_RETRIES),
        wait=WaitRetryAfterOrExponential(),
        retry=tenacity.retry_if_exception(is_transient),
        reraise=True,
        before_sleep=tenacity.before_sleep_log(log, logging.WARNING),
    )(func)
    return decorated


class AsyncKubeClient:
    """GETs against the API server with a kubernetes ``Configuration``'s credentials (httpx, async)."""

    def __init__(self, configuration: Configuration, timeout_seconds: float = 30) -> None:
        import httpx

        self._configuration = configuration
        headers = {"Accept": "application/json, text/plain;q=0.9, */*;q=0.8", **self._auth_headers()}
        cert = (configuration.cert_file, configuration.key_file) if configuration.cert_file else None
        verify: ssl.SSLContext | bool = bool(configuration.verify_ssl)
        if configuration.ssl_ca_cert and configuration.verify_ssl:
            verify = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        if cert is not None:
            context = verify if isinstance(verify, ssl.SSLContext) else ssl.create_default_context()
            if not configuration.verify_ssl:
                context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            context.load_cert_chain(*cert)
            verify = context
        self._client = httpx.AsyncClient(
            base_url=str(configuration.host).rstrip("/"), headers=headers, verify=verify, timeout=timeout_seconds
        )

    def _auth_headers(self) -> dict[str, str]:
        """The credentials' headers now. ``auth_settings()`` first runs the configuration's refresh hook,
        which renews an expired exec-plugin token or re-reads a rotated in-cluster token."""
        headers = {}
        settings = cast("dict[str, dict[str, Any]]", self._configuration.auth_settings())
        for setting in settings.values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[str(setting["key"]).title()] = str(setting["value"])
        return headers

    async def __aenter__(self) -> AsyncKubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._client.aclose()

    @api_retry
    async def get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        """``GET path``; raises ``httpx.HTTPStatusError`` on an error status (transient ones are retried).

        The credentials are read again for every request (off the event loop: an exec plugin is a
        subprocess), so a wait longer than a token's lifetime keeps a valid token.
        """
        import asyncio

        headers = await asyncio.to_thread(self._auth_headers)
        response = await self._client.get(path, params=params, headers=headers)
        response.raise_for_status()
        return response

    async def get_json(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        data: dict[str, Any] = (await self.get(path, params)).json()
        return data

    async def deployment(self, namespace: str, name: str) -> dict[str, Any]:
        return await self.get_json(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")

    async def pods_of(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """The pods selected by ``deployment/name`` (label selector, re-checked client-side), as JSON."""
        deployment = await self.deployment(namespace, name)
        selector: dict[str, str] = deployment.get("spec", {}).get("selector", {}).get("matchLabels") or {}
        label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        pods = await self.get_json(f"/api/v1/namespaces/{namespace}/pods", {"labelSelector": label_selector})
        items: list[dict[str, Any]] = pods.get("items") or []
        return [p for p in items if selector.items() <= (p.get("metadata", {}).get("labels") or {}).items()]

    async def pod_proxy(self, namespace: str, pod: str, port: int | str, path: str) -> tuple[int, bytes]:
        """``GET`` on a pod through the API server's pod proxy: status and body (never raises on status)."""
        response = await self._client.get(f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/{path}")
        return response.status_code, response.content
