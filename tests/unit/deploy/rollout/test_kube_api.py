"""Which Kubernetes API errors are retried, and how long the retry waits (``Retry-After`` first)."""

from __future__ import annotations

import httpx
import pytest
import tenacity
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from modelyard.deploy.rollout.kube_api import (
    MAX_RETRY_AFTER_SECONDS,
    WaitRetryAfterOrExponential,
    api_retry,
    is_transient,
)


def api_error(status: int, headers: dict[str, str] | None = None) -> ApiException:
    error = ApiException(status=status, reason="x")
    error.headers = headers
    return error


def http_error(status: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "https://api:6443/apis/apps/v1/namespaces/m/deployments/d")
    response = httpx.Response(status, headers=headers, request=request)
    return httpx.HTTPStatusError("error", request=request, response=response)


def wait_after(exc: BaseException, attempt: int = 1) -> float:
    state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
    state.attempt_number = attempt
    state.set_exception((type(exc), exc, None))
    return WaitRetryAfterOrExponential()(state)


@pytest.mark.parametrize("status", [409, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(status: int) -> None:
    assert is_transient(api_error(status))
    assert is_transient(http_error(status))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not(status: int) -> None:
    assert not is_transient(api_error(status))
    assert not is_transient(http_error(status))


def test_connection_errors_are_retried_other_errors_are_not() -> None:
    assert is_transient(ProtocolError("connection reset"))
    assert is_transient(httpx.ConnectError("refused"))
    assert not is_transient(ValueError("bad"))


def test_retry_after_is_honoured_and_capped() -> None:
    assert wait_after(api_error(429, {"Retry-After": "7"})) == 7.0
    assert wait_after(http_error(503, {"Retry-After": "3"})) == 3.0
    assert wait_after(api_error(429, {"Retry-After": "3600"})) == MAX_RETRY_AFTER_SECONDS


def test_without_retry_after_the_wait_backs_off_exponentially() -> None:
    waits = [wait_after(api_error(500), attempt) for attempt in (1, 2, 3)]
    assert waits == sorted(waits)
    assert waits[0] < waits[2]
    assert wait_after(api_error(429, {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"})) == waits[0]


def test_the_decorator_retries_transient_errors_and_gives_up_on_others() -> None:
    calls: list[int] = []

    @api_retry
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise api_error(429, {"Retry-After": "0"})
        return "ok"

    @api_retry
    def missing() -> str:
        calls.append(1)
        raise api_error(404)

    assert flaky() == "ok"
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(ApiException):
        missing()
    assert len(calls) == 1
