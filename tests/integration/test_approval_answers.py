"""Approval against the real MLflow server: held, asked, approved, rejected, timed out, re-run.

Real snapshots and real training (helpers of ``test_promotion``); each test has its own
registered-model names. The Airflow side (Required Actions, REST answers) is in tests/e2e.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from test_promotion import FAMILY, REGION, START, bookings, publish_and_train, write_config

from modelyard.core.config import Config
from modelyard.core.contracts.registry import CHAMPION_ALIAS, PREVIOUS_ALIAS
from modelyard.promotion import approval
from modelyard.promotion.aliases import aliases, open_client
from modelyard.promotion.approval import evaluate_for_approval
from modelyard.promotion.decide import evaluate_pair
from modelyard.promotion.record import history

AT = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def config(tmp_path: Path, mlflow_uri: str) -> Config:
    # The latency budget is not what these tests are about, and a loaded CI box can exceed the demo's.
    return write_config(tmp_path, mlflow_uri, max_p99_latency_ms=2000)


@pytest.fixture
def client(config: Config) -> MlflowClient:
    return open_client(config)


def champion_and_better_challenger(config: Config, client: MlflowClient, seed: int) -> tuple[str, str]:
    """A champion trained on less history, then a challenger on all of it that passes every gate."""
    frame = bookings(seed=seed)
    weaker = publish_and_train(config, frame[frame.event_time >= START + pd.Timedelta(days=30)].reset_index(drop=True))
    first = evaluate_pair(client, config, FAMILY, REGION, "test")
    assert first.outcome == "promoted", first.summary
    return weaker, publish_and_train(config, frame)


def answer(outcome: approval.AwaitedOutcome, version: str, by: str | None, reason: str) -> approval.Answer:
    return approval.Answer(
        family=FAMILY, region=REGION, model_name="-", version=version, outcome=outcome, by=by, at=AT, reason=reason
    )


def test_a_held_challenger_is_asked_about_and_promoted_when_approved(config: Config, client: MlflowClient) -> None:
    champion, challenger = champion_and_better_challenger(config, client, seed=6)
    name = config.mlflow.model_name(FAMILY, REGION)

    held = evaluate_for_approval(client, config, FAMILY, REGION, "airflow:promotion/run-1")

    assert (held.outcome, held.version, held.champion_before) == ("awaiting-approval", challenger, champion)
    assert not held.champion_changed
    assert aliases(client, name)[CHAMPION_ALIAS] == champion
    assert all(g.passed for g in held.gates), held.summary
    request = approval.build_request(client, config, FAMILY, REGION, challenger, config.mlflow.tracking_uri)
    assert request.subject == f"Promote {FAMILY}/{REGION} v{challenger}?"
    assert "| versus_champion:holdout_auc |" in request.body
    assert f"[challenger v{challenger} run]({config.mlflow.tracking_uri}/#/experiments/" in request.body
    assert f"[champion v{champion} run](" in request.body
    assert "| holdout_auc |" in request.body

    again = evaluate_for_approval(client, config, FAMILY, REGION, "airflow:promotion/run-2")
    assert again.already_decided  # a re-run asks nothing twice
    assert approval.pending_requests([{**again.asset_extra(), "version": again.version, "outcome": again.outcome,
                                       "already_decided": again.already_decided}]) == []  # fmt: skip

    decision = approval.apply(client, config, answer("approved", challenger, "dana", "better on every slice"))

    assert (decision.outcome, decision.action, decision.champion_before, decision.champion_after) == (
        "promoted", "approval", champion, challenger,
    )  # fmt: skip
    assert decision.champion_changed
    current = aliases(client, name)
    assert (current[CHAMPION_ALIAS], current[PREVIOUS_ALIAS]) == (challenger, champion)
    tags = client.get_model_version(name, challenger).tags
    assert tags["promotion.decided_by"] == "dana"
    assert tags["promotion.reason"] == "better on every slice"
    assert tags["promotion.approval"] == "approved"
    assert tags["promotion.decided_at"] == AT.isoformat()
    assert tags["promotion.approval_requested_at"] == held.decided_at.isoformat()
    assert [e["outcome"] for e in history(client, name)][-2:] == ["awaiting-approval", "promoted"]

    late = approval.apply(client, config, answer("rejected", challenger, "erin", "too late"))
    assert late.already_decided  # a second answer for the same version changes nothing
    assert client.get_model_version(name, challenger).tags["promotion.decided_by"] == "dana"


def test_rejected_and_timed_out_stay_challenger_and_only_force_asks_again(config: Config, client: MlflowClient) -> None:
    champion, challenger = champion_and_better_challenger(config, client, seed=6)
    name = config.mlflow.model_name(FAMILY, REGION)
    held = evaluate_for_approval(client, config, FAMILY, REGION, "run-1")
    assert held.outcome == "awaiting-approval", held.summary

    rejected = approval.apply(client, config, answer("rejected", challenger, "dana", "wait for the fleet change"))

    assert (rejected.outcome, rejected.champion_after, rejected.champion_changed) == ("rejected", champion, False)
    tags = client.get_model_version(name, challenger).tags
    assert (tags["promotion.approval"], tags["promotion.decided_by"]) == ("rejected", "dana")
    assert tags["promotion.reason"] == "wait for the fleet change"
    current = aliases(client, name)
    assert (current[CHAMPION_ALIAS], current["challenger"]) == (champion, challenger)
    rerun = evaluate_for_approval(client, config, FAMILY, REGION, "run-2")
    assert (rerun.already_decided, rerun.outcome) == (True, "rejected")  # not promoted, not asked again

    forced = evaluate_for_approval(client, config, FAMILY, REGION, "run-3", force=True)
    assert (forced.outcome, forced.already_decided) == ("awaiting-approval", False)  # asked again, still not promoted
    timeout = approval.answer_from_event(
        {**forced.asset_extra(), "version": challenger, "timeout_seconds": 60}, {"error_type": "timeout"}
    )
    timed_out = approval.apply(client, config, timeout)

    assert (timed_out.outcome, timed_out.champion_after) == ("timed-out", champion)
    tags = client.get_model_version(name, challenger).tags
    assert (tags["promotion.approval"], tags["promotion.reason"]) == ("timed-out", "no answer within 0:01:00")
    assert aliases(client, name)[CHAMPION_ALIAS] == champion


def test_an_approval_for_a_superseded_version_promotes_nothing(config: Config, client: MlflowClient) -> None:
    champion, challenger = champion_and_better_challenger(config, client, seed=11)
    name = config.mlflow.model_name(FAMILY, REGION)
    assert evaluate_for_approval(client, config, FAMILY, REGION, "run-1").outcome == "awaiting-approval"
    newer = publish_and_train(config, bookings(seed=12))

    decision = approval.apply(client, config, answer("approved", challenger, "dana", "ok"))

    assert decision.outcome == "unchanged"
    assert f"v{newer} is the challenger now" in decision.summary
    assert aliases(client, name)[CHAMPION_ALIAS] == champion
