"""The admin API's guard: only the server's bearer token, and only when the server has one."""

from __future__ import annotations

import pytest

from modelyard.deploy.serving.admin import check_admin_token
from modelyard.deploy.serving.errors import RequestError


def test_admin_is_off_without_a_configured_token():
    for header in (None, "Bearer ", "Bearer anything"):
        with pytest.raises(RequestError) as caught:
            check_admin_token(None, header)
        assert caught.value.status == 403
        assert "MODELYARD_SERVE_ADMIN_TOKEN" in caught.value.message


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Bearer s3cret-x", "Bearer s3cre", "Basic s3cret", "s3cret", "Bearer S3CRET"],
)
def test_admin_needs_exactly_the_bearer_token(header):
    with pytest.raises(RequestError) as caught:
        check_admin_token("s3cret", header)
    assert caught.value.status == 401
    assert "Authorization: Bearer" in caught.value.message


def test_the_right_token_is_admitted_whatever_the_scheme_case():
    check_admin_token("s3cret", "Bearer s3cret")
    check_admin_token("s3cret", "bearer s3cret")
