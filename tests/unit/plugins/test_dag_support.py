"""The DAGs' one ``except ModelyardError``: expected errors fail the task without retries."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from modelyard.core.config import ConfigError
from modelyard.core.tracking import TrackingServerUnreachableError
from modelyard.plugins.dag_support import expected_errors_fail_the_task
from modelyard.promotion.decision import PromotionError


@pytest.mark.parametrize("error", [ConfigError("unknown region 'x'"), PromotionError("needs a reason")])
def test_an_expected_error_fails_the_task_with_its_message(error: Exception) -> None:
    with pytest.raises(AirflowFailException, match=str(error)), expected_errors_fail_the_task():
        raise error


def test_a_transient_error_is_left_to_airflow_retries() -> None:
    with pytest.raises(TrackingServerUnreachableError), expected_errors_fail_the_task():
        raise TrackingServerUnreachableError("cannot reach the MLflow server")


def test_a_bug_keeps_its_traceback() -> None:
    with pytest.raises(KeyError), expected_errors_fail_the_task():
        raise KeyError("family")
