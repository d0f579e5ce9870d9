"""When a Deployment's rollout counts as complete, failed or stuck (deploy.rollout.deployment_status)."""

from __future__ import annotations

import pytest

from modelyard.deploy.rollout.deployment_status import RolloutError, RolloutStatus

DONE = RolloutStatus("d", generation=4, observed_generation=4, desired=3, replicas=3, updated=3, ready=3, available=3)


def test_complete_rollout() -> None:
    assert DONE.complete
    assert DONE.deadline_exceeded is None
    assert DONE.describe() == "deployment/d: generation 4/4 observed, 3/3 updated, 3 ready, 3 available, 3 total"


@pytest.mark.parametrize(
    "changes",
    [
        {"observed_generation": 3},  # the controller has not seen the new spec: old counts mean nothing
        {"updated": 2},  # one pod still runs the old template
        {"replicas": 4},  # an old pod is still terminating alongside the new ones
        {"ready": 2},  # a new pod still downloads its models
        {"available": 2},  # ready but not for minReadySeconds yet
    ],
)
def test_incomplete_rollouts(changes: dict[str, int]) -> None:
    status = RolloutStatus(**{**DONE.__dict__, **changes})
    assert not status.complete


def test_progress_deadline_condition() -> None:
    stuck = ("Progressing", "False", "ProgressDeadlineExceeded", 'ReplicaSet "d-1" has timed out progressing.')
    status = RolloutStatus(**{**DONE.__dict__, "ready": 1, "conditions": (stuck,)})
    assert not status.complete
    assert status.deadline_exceeded == 'ReplicaSet "d-1" has timed out progressing.'


def test_errors_list_their_reasons() -> None:
    error = RolloutError("timed out", ["pod-1: event Unhealthy: Startup probe failed", "pod-1: Ready is False"])
    assert str(error) == "timed out\n  - pod-1: event Unhealthy: Startup probe failed\n  - pod-1: Ready is False"
