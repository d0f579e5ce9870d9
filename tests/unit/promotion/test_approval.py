"""Approval policy per (family, region), its config errors, and reading Airflow's HITL answers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.core.config import Config, ConfigError, load_config
from modelyard.promotion.approval import answer_from_event, approval_policy, gate_table, pending_requests
from modelyard.promotion.gates import GateResult

HOUR = dt.timedelta(hours=1)


def config_with(tmp_path: Path, demo_config_path: Path, promotion: dict[str, Any]) -> Config:
    raw = yaml.safe_load(demo_config_path.read_text())
    raw["promotion"] = promotion
    path = tmp_path / "modelyard.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(path, environ={})


def test_default_is_automatic_with_a_day_to_answer(demo_config_path: Path, clean_env: None) -> None:
    policy = approval_policy(load_config(demo_config_path, environ={}), "driver_acceptance", "jakarta")

    assert not policy.required
    assert policy.timeout == dt.timedelta(hours=24)


def test_the_most_specific_override_wins_key_by_key(tmp_path: Path, demo_config_path: Path) -> None:
    config = config_with(tmp_path, demo_config_path, {
        "approval": "automatic", "approval_timeout": 7200,
        "overrides": {
            "driver_acceptance": {"approval": "required"},
            "*/jakarta": {"approval_timeout": "PT30M"},
            "pickup_eta/jakarta": {"approval": "required", "approval_timeout": 60},
            "driver_acceptance/bangkok": {"approval": "automatic"},
        },
    })  # fmt: skip

    def policy(family: str, region: str) -> tuple[bool, dt.timedelta]:
        resolved = approval_policy(config, family, region)
        return resolved.required, resolved.timeout

    assert policy("driver_acceptance", "surabaya") == (True, 2 * HOUR)  # family
    assert policy("driver_acceptance", "jakarta") == (True, HOUR / 2)  # family, then region's timeout
    assert policy("pickup_eta", "jakarta") == (True, dt.timedelta(seconds=60))  # the pair beats the region
    assert policy("pickup_eta", "surabaya") == (False, 2 * HOUR)  # the default
    assert policy("driver_acceptance", "bangkok") == (False, 2 * HOUR)  # the pair turns the family's off


@pytest.mark.parametrize(
    ("promotion", "message"),
    [
        ({"approval": "maybe"}, r"promotion\.approval"),
        ({"approval_timeout": 0}, r"promotion\.approval_timeout"),
        ({"overrides": {"no_such_family": {"approval": "required"}}}, r"promotion.overrides 'no_such_family'"),
        ({"overrides": {"*/atlantis": {"approval": "required"}}}, r"promotion.overrides '\*/atlantis'"),
        ({"overrides": {"*": {"approval": "required"}}}, r"expected '<family>', '\*/<region>' or"),
        ({"overrides": {"pickup_eta/jakarta": {"aproval": "required"}}}, r"aproval"),
    ],
)
def test_a_bad_approval_key_names_it(
    tmp_path: Path, demo_config_path: Path, promotion: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        config_with(tmp_path, demo_config_path, promotion)


REQUEST = {"family": "pickup_eta", "region": "jakarta", "model_name": "m", "version": "7", "timeout_seconds": 90}


def test_an_answer_names_who_chose_what_and_why() -> None:
    at = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)
    event = {
        "chosen_options": ["Reject"], "params_input": {"reason": "  wait for the fleet change "},
        "responded_at": at, "responded_by_user": {"id": "3", "name": "dana"},
    }  # fmt: skip

    answer = answer_from_event(REQUEST, event)

    assert (answer.outcome, answer.by, answer.reason, answer.at) == (
        "rejected",
        "dana",
        "wait for the fleet change",
        at,
    )
    assert (answer.family, answer.region, answer.version) == ("pickup_eta", "jakarta", "7")
    approved = answer_from_event(REQUEST, {**event, "chosen_options": ["Approve"], "responded_at": at.isoformat()})
    assert (approved.outcome, approved.at) == ("approved", at)


@pytest.mark.parametrize(
    "event",
    [
        {"error": "The Human-in-the-loop response timeout has passed without a response.", "error_type": "timeout"},
        # Airflow applying defaults at the timeout: a response without a user is no answer either.
        {"chosen_options": ["Reject"], "params_input": {}, "responded_at": None, "responded_by_user": None},
    ],
)
def test_no_answer_in_time_is_a_timeout_not_a_rejection(event: dict[str, Any]) -> None:
    answer = answer_from_event(REQUEST, event)

    assert (answer.outcome, answer.by) == ("timed-out", None)
    assert answer.reason == "no answer within 0:01:30"


def test_only_new_awaiting_decisions_get_a_request() -> None:
    decisions = [
        {"family": "a", "region": "x", "version": "3", "outcome": "awaiting-approval", "already_decided": False},
        {"family": "a", "region": "y", "version": "4", "outcome": "awaiting-approval", "already_decided": True},
        {"family": "b", "region": "x", "version": "5", "outcome": "promoted", "already_decided": False},
        {"family": "b", "region": "y", "version": "6", "outcome": "rejected", "already_decided": False},
    ]

    assert pending_requests(decisions) == [{"family": "a", "region": "x", "version": "3"}]


def test_gate_table_is_markdown_with_one_row_per_gate() -> None:
    gates = [
        GateResult(name="absolute:holdout_auc", kind="absolute", value=0.81234, threshold=0.7, op=">=", passed=True,
                   summary="ok"),
        GateResult(name="prediction_psi", kind="prediction_shift", value=None, threshold=0.25, op="<=", passed=True,
                   skipped=True, summary="no champion"),
    ]  # fmt: skip

    lines = gate_table(gates).splitlines()

    assert lines[0] == "| gate | value | better | op | threshold | result |"
    assert lines[2] == "| absolute:holdout_auc | 0.8123 | higher | >= | 0.7 | pass |"
    assert lines[3] == "| prediction_psi | - | lower | <= | 0.25 | skipped |"
