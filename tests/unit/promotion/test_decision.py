"""Each named outcome fills in what it implies: the version, the aliases after it, the summary a reader sees."""

from __future__ import annotations

from mlflow.entities.model_registry import ModelVersion
from rich.console import Console

from modelyard.core.contracts.registry import CHAMPION_ALIAS, PREVIOUS_ALIAS
from modelyard.promotion.decision import Decision
from modelyard.promotion.gates import GateReport, GateResult
from modelyard.promotion.render import render_decisions

PAIR = ("pickup_eta", "jakarta")


def version(number: str) -> ModelVersion:
    return ModelVersion("pickup_eta-jakarta", number, creation_timestamp=0, run_id=f"run-{number}")


def report(passed: bool) -> GateReport:
    gate = GateResult(
        name="absolute:holdout_mae",
        kind="absolute",
        value=2.0,
        threshold=3.0,
        op="<=",
        passed=passed,
        summary="holdout_mae 2 <= 3",
    )
    return GateReport(results=[gate])


def test_an_evaluation_promotes_when_every_gate_passes_and_names_the_champion_it_beat() -> None:
    after = {CHAMPION_ALIAS: "3", PREVIOUS_ALIAS: "2"}
    promoted = Decision.evaluated(PAIR, version("3"), report(True), "2", after, "airflow:promotion/run-1")
    assert (promoted.outcome, promoted.version, promoted.run_id) == ("promoted", "3", "run-3")
    assert (promoted.champion_before, promoted.champion_after, promoted.previous_champion_after) == ("2", "3", "2")
    assert promoted.summary.startswith("promoted (against champion v2): ")
    assert promoted.champion_changed

    rejected = Decision.evaluated(PAIR, version("3"), report(False), None, {}, "test")
    assert rejected.outcome == "rejected"
    assert rejected.summary.startswith("rejected (first model of the region (no champion)): ")
    assert not rejected.champion_changed


def test_a_held_challenger_awaits_approval_and_moves_nothing() -> None:
    current = {CHAMPION_ALIAS: "2", PREVIOUS_ALIAS: "1"}
    held = Decision.held(PAIR, version("3"), report(True), "2", current, "airflow:promotion/run-1")
    assert held.outcome == "awaiting-approval"
    assert held.summary.startswith("awaiting approval (against champion v2): ")
    assert (held.champion_after, held.previous_champion_after) == ("2", "1")
    assert not held.champion_changed
    assert Decision.held(PAIR, version("3"), report(False), "2", current, "run").outcome == "rejected"


def test_manual_promotion_rollback_and_no_ops_say_who_and_why() -> None:
    by_hand = Decision.promoted_by_hand(
        PAIR,
        version("4"),
        "3",
        {CHAMPION_ALIAS: "4", PREVIOUS_ALIAS: "3"},
        "user:alice",
        "hotfix",
        report=None,
        note="gates not evaluated: no snapshot",
    )
    assert (by_hand.action, by_hand.reason, by_hand.gates) == ("promote-version", "hotfix", [])
    assert by_hand.summary == "manual promotion of v4 by user:alice: hotfix (gates not evaluated: no snapshot)"

    rolled = Decision.rolled_back(PAIR, version("3"), "4", {CHAMPION_ALIAS: "3"}, "user:oncall", "error rate up")
    assert (rolled.outcome, rolled.version, rolled.champion_before, rolled.champion_after) == (
        "rolled-back",
        "3",
        "4",
        "3",
    )
    assert rolled.summary == "rolled back from v4 to v3 by user:oncall: error rate up"

    same = Decision.unchanged(PAIR, version("3"), {CHAMPION_ALIAS: "3"}, "user:alice", "again")
    assert (same.outcome, same.champion_changed) == ("unchanged", False)
    assert Decision.not_awaited(PAIR, version("5"), None).decided_by == "nobody"


def test_decisions_without_a_version_keep_the_aliases_and_name_the_cause() -> None:
    current = {CHAMPION_ALIAS: "2"}
    none = Decision.no_challenger(PAIR, "pickup_eta-jakarta", current, "cli")
    assert (none.outcome, none.version, none.champion_after) == ("no-challenger", None, "2")
    failed = Decision.failed(PAIR, "pickup_eta-jakarta", "cli", TimeoutError("lock held for over 900s"))
    assert (failed.outcome, failed.summary) == ("failed", "TimeoutError: lock held for over 900s")

    console = Console(width=200, record=True)
    console.print(render_decisions([none, failed]))
    text = console.export_text()
    assert "no-challenger" in text
    assert "TimeoutError: lock held for over 900s" in text
