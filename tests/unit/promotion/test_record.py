"""What a decision writes on its version: Markdown a reviewer reads, short tags, and a record that reads back."""

from __future__ import annotations

import json

from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

from modelyard.core.contracts.registry import CHAMPION_ALIAS, PREVIOUS_ALIAS
from modelyard.promotion.decision import Decision
from modelyard.promotion.gates import GateReport, GateResult
from modelyard.promotion.record import (
    DESCRIPTION_MAX_CHARS,
    TAG_MAX_CHARS,
    decision_tags,
    recorded_decision,
    version_description,
)

PAIR = ("driver_acceptance", "jakarta")
NAME = "driver_acceptance-jakarta"


def gate(name: str, passed: bool = True, summary: str = "fine") -> GateResult:
    return GateResult(name=name, kind="slice", value=0.8123456, threshold=0.7, op=">=", passed=passed, summary=summary)


def version(number: str, description: str | None = None, tags: dict[str, str] | None = None) -> ModelVersion:
    listed = [ModelVersionTag(k, v) for k, v in (tags or {}).items()]
    return ModelVersion(NAME, number, creation_timestamp=0, run_id="run-1", description=description, tags=listed)


def evaluated(gates: list[GateResult]) -> Decision:
    report = GateReport(results=gates)
    after = {CHAMPION_ALIAS: "3", PREVIOUS_ALIAS: "2"} if report.passed else {CHAMPION_ALIAS: "2"}
    return Decision.evaluated(PAIR, version("3"), report, "2", after, "airflow:promotion/run-1")


def test_the_description_holds_the_gate_table_and_reads_back_as_the_same_decision() -> None:
    decision = evaluated([gate("absolute:holdout_auc"), gate("slice:night", passed=False, summary="auc a|b dropped")])
    text = version_description(decision, None)
    assert text.startswith("rejected (against champion v2): 1 of 2 gates failed: auc a|b dropped\n")
    assert "| gate | value | better | op | threshold | result | summary |" in text
    # a pipe cannot break the row
    assert "| slice:night | 0.8123 | higher | >= | 0.7 | **FAIL** | auc a\\|b dropped |" in text
    assert "`airflow:promotion/run-1`" in text
    assert recorded_decision(version("3", text)) == decision


def test_text_a_person_wrote_is_kept_below_and_a_new_decision_replaces_the_old_one() -> None:
    first = version_description(evaluated([gate("latency", passed=False)]), "Trained on the festival week.")
    assert first.startswith("rejected (against champion v2)")  # the registry's version list shows the first line
    second = version_description(evaluated([gate("latency")]), first)
    assert second.startswith("promoted (against champion v2): all 1 gates passed\n")
    assert second.endswith(" -->\n\nTrained on the festival week.")
    assert second.count("<!-- modelyard:decision") == 1
    assert "rejected" not in second


def test_a_reason_that_looks_like_the_end_of_a_comment_cannot_cut_the_record() -> None:
    decision = evaluated([gate("latency")]).model_copy(update={"reason": "why --> not <b>bold</b>"})
    assert recorded_decision(version("3", version_description(decision, None))) == decision


def test_many_long_gate_summaries_still_fit_the_description_limit_and_keep_every_gate() -> None:
    gates = [gate(f"slice:s{i}", passed=i % 2 == 0, summary=f"slice {i} " + "x" * 400) for i in range(30)]
    decision = evaluated(gates)
    text = version_description(decision, "notes")
    assert len(text) <= DESCRIPTION_MAX_CHARS
    assert text.endswith("\n\nnotes")
    back = recorded_decision(version("3", text))
    assert back is not None
    assert [g.name for g in back.gates] == [g.name for g in gates]
    assert [g.passed for g in back.gates] == [g.passed for g in gates]


def test_past_hundreds_of_gates_the_description_still_fits_and_still_reads_back() -> None:
    decision = evaluated([gate(f"slice:segment_{i}", summary="s" * 50) for i in range(400)])
    text = version_description(decision, None)
    assert len(text) <= DESCRIPTION_MAX_CHARS
    assert "400 gates: see gates.txt on the training run." in text
    back = recorded_decision(version("3", text))
    assert back is not None
    assert (back.outcome, back.champion_after) == ("promoted", "3")


def test_tags_are_short_sentences_not_json() -> None:
    decision = evaluated([gate("absolute:holdout_auc"), gate("slice:night", passed=False, summary="y" * 900)])
    tags = decision_tags(decision, "3")
    assert all(len(value) <= TAG_MAX_CHARS for value in tags.values()), tags
    assert not any(value.startswith(("{", "[")) for value in tags.values())
    assert tags["gates"] == "1 passed, 1 failed: slice:night"
    assert (tags["outcome"], tags["champion_before"], tags["champion_after"]) == ("rejected", "2", "2")
    assert "champion_since" not in tags
    assert "decision" not in tags


def test_a_promotion_tag_says_since_when_and_what_it_replaced() -> None:
    skipped = gate("versus_champion:holdout_auc").model_copy(update={"skipped": True})
    tags = decision_tags(evaluated([gate("latency"), skipped]), "3")
    assert tags["gates"] == "1 passed, 1 skipped"
    assert tags["previous_champion_after"] == "2"
    assert tags["champion_since"] == tags["decided_at"]
    assert tags["replaced"] == "2"


def test_versions_decided_before_descriptions_read_from_their_json_tag() -> None:
    decision = evaluated([gate("latency")])
    legacy = version("3", tags={"promotion.decision": decision.model_dump_json(), "promotion.outcome": "promoted"})
    assert recorded_decision(legacy) == decision


def test_an_edited_description_falls_back_to_the_short_tags_without_gates() -> None:
    decision = evaluated([gate("latency")]).model_copy(update={"previous_champion_after": None})
    tags = {f"promotion.{k}": v for k, v in decision_tags(decision, "3").items()} | {
        "family": PAIR[0],
        "region": PAIR[1],
    }
    back = recorded_decision(version("3", "a person rewrote it", tags))
    assert back is not None
    assert (back.outcome, back.champion_before, back.decided_at, back.gates) == (
        "promoted",
        "2",
        decision.decided_at,
        [],
    )
    assert recorded_decision(version("4", "never decided")) is None


def test_the_hidden_record_is_json_inside_an_html_comment() -> None:
    text = version_description(evaluated([gate("latency")]), None)
    comment = text[text.index("<!-- modelyard:decision ") :]
    assert comment.endswith(" -->")
    payload = comment.removeprefix("<!-- modelyard:decision ").removesuffix(" -->")
    assert json.loads(payload)["gates"][0]["op"] == ">="


def test_long_notes_and_a_long_reason_are_cut_so_the_record_still_fits_and_reads_back() -> None:
    decision = evaluated([gate("latency")]).model_copy(update={"reason": "because " * 800})
    text = version_description(decision, "my notes } --> " + "n" * 9000)
    assert len(text) <= DESCRIPTION_MAX_CHARS
    back = recorded_decision(version("3", text))
    assert back is not None
    assert (back.outcome, [g.name for g in back.gates]) == ("promoted", ["latency"])
    assert (back.reason or "").startswith("because because")


def test_a_record_that_does_not_parse_falls_back_to_the_tags() -> None:
    decision = evaluated([gate("latency")])
    tags = {f"promotion.{k}": v for k, v in decision_tags(decision, "3").items()}
    broken = version("3", '<!-- modelyard:decision {"outcome": "promoted"} -->', tags)
    back = recorded_decision(broken)
    assert back is not None
    assert (back.outcome, back.decided_by) == ("promoted", decision.decided_by)
