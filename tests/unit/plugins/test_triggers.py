"""The rollout triggers survive the trip the triggerer makes: ``serialize()`` -> serde -> the class again."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.plugins.triggers.rollout import CanaryAnalysisTrigger, RolloutReadyTrigger

CHECKPOINT: dict[str, Any] = {
    "request": {"target": "kubernetes", "strategy": "canary", "canary_steps": [10, 100]},
    "live": None,
    "plan": {"version": 1, "services": []},
    "result": {"release": "sea-west", "versions": {"eta/jakarta": {"primary": "3"}}},
    "rollout": {"position": 0, "records": [{"step": "canary 10%", "outcome": "applied", "detail": ""}]},
}
READY = {
    "namespace": "modelyard",
    "deployment": "sea-west-modelyard-serving",
    "timeout_seconds": 600,
    "deadline": 1_800_000_000.5,
    "poll_seconds": 2.0,
    "max_restarts": 3,
}
ANALYSIS = {
    "keys": [["eta", "jakarta"]],
    "baseline": 'modelyard_requests_total{family="eta"} 1\n',
    "seconds": 60.0,
    "deadline": 1_800_000_000.5,
    "thresholds": {"max_error_rate": 0.01, "max_p99_ms": 250.0, "min_requests": 20, "analysis_seconds": 60.0},
}


def rebuilt(trigger: Any) -> Any:
    """What the triggerer (and ``airflow dags test``) does with a deferral: serde the kwargs, import, call."""
    from airflow.sdk._shared.module_loading import import_string
    from airflow.sdk.serde import deserialize, serialize

    classpath, kwargs = trigger.serialize()
    return import_string(classpath)(**deserialize(serialize(kwargs)))


@pytest.mark.parametrize(
    "trigger",
    [
        RolloutReadyTrigger(READY, CHECKPOINT, "kubernetes_prod"),
        CanaryAnalysisTrigger(ANALYSIS, {"kind": "http", "url": "http://127.0.0.1:8000/metrics"}, CHECKPOINT),
        CanaryAnalysisTrigger(
            ANALYSIS,
            {"kind": "kubernetes", "namespace": "modelyard", "deployment": "sea-west-modelyard-serving"},
            CHECKPOINT,
            "kubernetes_prod",
            poll_seconds=0.5,
        ),
    ],
    ids=["ready", "analysis-http", "analysis-kubernetes"],
)
def test_serialize_round_trips_through_the_triggerers_serde(trigger: Any) -> None:
    again = rebuilt(trigger)

    assert type(again) is type(trigger)
    assert again.serialize() == trigger.serialize()
    assert again.checkpoint == CHECKPOINT  # handed back in the event: the task resumes from it alone


def test_classpath_is_importable_by_the_triggerer() -> None:
    classpath, kwargs = RolloutReadyTrigger(READY, CHECKPOINT).serialize()
    assert classpath == "modelyard.plugins.triggers.rollout.RolloutReadyTrigger"
    assert kwargs["kubernetes_conn_id"] == "kubernetes_default"
