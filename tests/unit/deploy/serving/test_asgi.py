"""Request plumbing: a body over the limit is refused before any of it is read."""

from __future__ import annotations

import pytest

from modelyard.deploy.serving.asgi import MAX_BODY_BYTES, check_declared_length
from modelyard.deploy.serving.errors import RequestError


def test_a_declared_body_over_the_limit_is_refused_before_reading():
    check_declared_length(str(MAX_BODY_BYTES))
    check_declared_length(None)
    with pytest.raises(RequestError) as caught:
        check_declared_length(str(MAX_BODY_BYTES + 1))
    assert caught.value.status == 413
