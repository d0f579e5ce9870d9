"""What the Helm release target names and reports (deploy.rollout.helm_target, no cluster needed)."""

from __future__ import annotations

import pytest

from modelyard.deploy.rollout.helm_target import RolledBackError, deployment_name


@pytest.mark.parametrize(
    ("release", "name"),
    [
        ("sea-west", "sea-west-modelyard-serving"),
        ("modelyard-serving-canary", "modelyard-serving-canary"),  # the chart's fullname rule
        ("a" * 53, ("a" * 53 + "-modelyard-serving")[:63]),
    ],
)
def test_deployment_name_follows_the_chart(release: str, name: str) -> None:
    assert deployment_name(release) == name


def test_rolled_back_errors_say_what_serves_now() -> None:
    rolled = RolledBackError("sea-west", "smoke failed", 3)
    assert str(rolled) == "release 'sea-west' rolled back to revision 3; reason: smoke failed"
    assert "NOT rolled back" in str(RolledBackError("sea-west", "x", None))
    by_helm = RolledBackError("sea-west", "UPGRADE FAILED: context deadline exceeded", None, by_helm=True)
    assert "rolled back by helm (--rollback-on-failure)" in str(by_helm)
    assert "NOT rolled back" not in str(by_helm)
