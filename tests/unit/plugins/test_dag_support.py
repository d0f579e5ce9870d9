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


def test_a_one_pair_decide_links_to_the_model_version_it_decided() -> None:
    from modelyard.core.chunks import PairOutcome
    from modelyard.plugins.dag_support import _chunk_result
    from modelyard.plugins.links import model_version_url_from, run_url_from

    url = "http://mlflow:5000/#/models/pickup_eta-jakarta/versions/3"
    decided = PairOutcome("pickup_eta", "jakarta", "promoted", link=url, facts={"version": "3"})
    result = _chunk_result([decided])
    assert model_version_url_from(None, result) == url
    assert run_url_from(None, result) == ""


def test_a_chunk_result_names_every_pairs_mlflow_link() -> None:
    from modelyard.core.chunks import PairOutcome
    from modelyard.plugins.dag_support import _chunk_result

    runs = {r: f"http://mlflow:5000/#/experiments/1/runs/{r}" for r in ("jakarta", "manila")}
    outcomes = [PairOutcome("pickup_eta", r, "registered", link=url) for r, url in runs.items()]
    assert _chunk_result(outcomes)["links"] == {f"pickup_eta/{r}": url for r, url in runs.items()}


def test_pairs_failing_for_the_same_reason_share_it_in_the_task_failure() -> None:
    from modelyard.plugins.dag_support import failure_summary

    deleted = "ExperimentDeletedError: the MLflow experiment 'modelyard/pickup_eta' (id 2) is deleted"
    summary = failure_summary(
        [("pickup_eta/hanoi", deleted), ("pickup_eta/bangkok", deleted), ("driver_acceptance/hanoi", "too few rows")]
    )

    assert summary == f"pickup_eta/hanoi, pickup_eta/bangkok: {deleted}; driver_acceptance/hanoi: too few rows"
