"""The deployment plan: validation names the field, the digest is stable."""

from __future__ import annotations

import copy
import datetime as dt
import json

import pytest
import yaml

from modelyard.deploy.serving.plan import (
    PlanError,
    dump_plan,
    last_good_path,
    load_plan,
    normalize_model_uri,
    parse_plan,
    parse_plan_text,
)

PLAN = {
    "version": 1,
    "routing_key": "customer_id",
    "batching": {"max_batch_size": 32, "max_wait_ms": 1.5},
    "services": [
        {
            "family": "driver_acceptance",
            "region": "jakarta",
            "timezone": "Asia/Jakarta",
            "variants": [
                {"name": "champion", "model_uri": "models:/driver_acceptance-jakarta/3", "weight": 90},
                {"name": "canary", "model_uri": "models:/driver_acceptance-jakarta/4", "weight": 10},
                {"name": "festival", "model_uri": "models:/driver_acceptance-jakarta@festival", "weight": 0},
            ],
            "rules": [
                {"name": "lebaran", "variant": "festival", "dates": [{"start": "2026-03-16", "end": "2026-03-27"}]}
            ],
            "shadows": [{"name": "next", "model_uri": "models:/driver_acceptance-jakarta/5"}],
        },
        {
            "family": "pickup_eta",
            "region": "bangkok",
            "timezone": "Asia/Bangkok",
            "variants": [{"name": "champion", "model_uri": "models:/pickup_eta-bangkok/1", "weight": 100}],
        },
    ],
}


def _plan(**changes):
    data = copy.deepcopy(PLAN)
    data.update(changes)
    return data


def test_a_valid_plan_parses_with_defaults():
    plan = parse_plan(PLAN)
    assert plan.service("driver_acceptance", "jakarta").variants[1].weight == 10
    assert plan.service("pickup_eta", "jakarta") is None
    assert plan.max_records == 10_000
    assert plan.model_uris()[0] == "models:/driver_acceptance-jakarta/3"
    assert len(plan.model_uris()) == 5


def test_weights_that_do_not_sum_to_100_name_the_service():
    data = _plan()
    data["services"][1]["variants"][0]["weight"] = 90
    with pytest.raises(PlanError, match=r"services\[1\]\.variants: weights sum to 90, must be 100"):
        parse_plan(data)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["services"][0]["rules"][0].update(variant="ghost"), r"services\[0\].*'ghost' is not a variant"),
        (
            lambda d: d["services"][0]["variants"][0].update(model_uri="runs:/abc/model"),
            r"services\[0\]\.variants\[0\]\.model_uri",
        ),
        (lambda d: d["services"][0].update(timezone="Mars/Olympus"), r"services\[0\]\.timezone: unknown time zone"),
        (lambda d: d["services"][0]["variants"][1].update(name="champion"), r"duplicate variant 'champion'"),
        (lambda d: d["services"].append(copy.deepcopy(d["services"][1])), r"duplicate service 'pickup_eta/bangkok'"),
        (lambda d: d["services"][0]["rules"][0].pop("dates"), r"rule 'lebaran' has no condition"),
        (lambda d: d["services"][0]["shadows"][0].update(name="canary"), r"also variant names"),
        (lambda d: d["batching"].update(max_batch_size=0), r"batching\.max_batch_size"),
        (lambda d: d.update(clock_override="2026-03-20T18:00:00"), r"clock_override: .*UTC offset"),
        (lambda d: d.update(surprise=1), r"surprise: is not a plan field; remove it"),
        (lambda d: d["services"][0]["rules"][0].update(hours={"start": 5, "end": 5}), r"hours: .*empty"),
    ],
)
def test_invalid_plans_name_the_field(mutate, expected):
    data = copy.deepcopy(PLAN)
    mutate(data)
    with pytest.raises(PlanError, match=expected):
        parse_plan(data)


def test_invalid_plan_messages_are_ours_and_show_the_value_sent():
    data = copy.deepcopy(PLAN)
    data["services"][0]["variants"][0].update(weight="x")
    data["services"][0]["variants"][1].pop("model_uri")
    data["max_records"] = [1]
    with pytest.raises(PlanError) as caught:
        parse_plan(data)
    text = str(caught.value)
    assert 'services[0].variants[0].weight: must be a valid integer (got "x")' in text
    assert "services[0].variants[1].model_uri: is required" in text
    assert "max_records: must be a valid integer (got a list)" in text
    for theirs in ("Input should", "Field required", "unable to parse"):  # pydantic's words
        assert theirs not in text


def test_digest_is_stable_across_formats_and_changes_with_content(tmp_path):
    as_yaml, as_json = tmp_path / "plan.yaml", tmp_path / "plan.json"
    as_yaml.write_text(yaml.safe_dump(PLAN))
    as_json.write_text(json.dumps(PLAN, indent=4))
    digest = load_plan(as_yaml).digest()
    assert digest.startswith("sha256:")
    assert len(digest) == 7 + 64
    assert load_plan(as_json).digest() == digest
    assert parse_plan_text(dump_plan(load_plan(as_yaml), "json")).digest() == digest
    changed = _plan()
    changed["services"][0]["variants"][0]["weight"], changed["services"][0]["variants"][1]["weight"] = 80, 20
    assert parse_plan(changed).digest() != digest


def test_unreadable_and_malformed_files_are_plan_errors(tmp_path):
    with pytest.raises(PlanError, match="cannot read plan file"):
        load_plan(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("services: [unclosed")
    with pytest.raises(PlanError, match="not valid YAML/JSON"):
        load_plan(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(PlanError, match="top level must be a mapping"):
        load_plan(bad)


def test_rules_match_in_local_time():
    rule = (
        parse_plan(
            _plan(
                services=[
                    {
                        "family": "f",
                        "region": "r",
                        "variants": [
                            {"name": "a", "model_uri": "models:/m/1", "weight": 100},
                            {"name": "peak", "model_uri": "models:/m/2", "weight": 0},
                        ],
                        "rules": [
                            {
                                "name": "late",
                                "variant": "peak",
                                "weekdays": ["fri", "sat"],
                                "hours": {"start": 22, "end": 2},
                            }
                        ],
                    }
                ]
            )
        )
        .services[0]
        .rules[0]
    )
    friday = dt.datetime(2026, 5, 8, 23, 0)
    assert rule.matches(friday)
    assert rule.matches(dt.datetime(2026, 5, 9, 1, 0))  # saturday 01:00, wraps past midnight
    assert not rule.matches(dt.datetime(2026, 5, 9, 2, 0))
    assert not rule.matches(dt.datetime(2026, 5, 7, 23, 0))  # thursday


@pytest.mark.parametrize("path", ["/tmp/x.jsonl", "../x.jsonl", "logs/../../x"])
def test_the_plan_refuses_absolute_and_parent_log_paths(path):
    plan = {
        "services": [
            {"family": "f", "region": "r", "variants": [{"name": "a", "model_uri": "models:/m/1", "weight": 100}]}
        ],
        "prediction_log": {"path": path},
    }
    with pytest.raises(PlanError, match=r"prediction_log\.path: .* must be a relative folder"):
        parse_plan(plan)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/bench/01", "models:/bench/1"),
        ("models:/bench/0001", "models:/bench/1"),
        ("models:/bench/10", "models:/bench/10"),
        ("models:/bench@champion", "models:/bench@champion"),
        ("models:/bench-007@v007", "models:/bench-007@v007"),
    ],
)
def test_one_version_has_one_uri(uri, expected):
    assert normalize_model_uri(uri) == expected


def test_plans_naming_one_version_three_ways_load_it_once():
    variants = [
        {"name": n, "model_uri": u, "weight": w}
        for n, u, w in (("a", "models:/bench/01", 50), ("b", "models:/bench/001", 50))
    ]
    plan = parse_plan({"services": [{"family": "f", "region": "r", "variants": variants}]})
    assert plan.model_uris() == ["models:/bench/1"]


def test_the_last_good_copy_sits_next_to_the_plan_file(tmp_path):
    assert last_good_path(tmp_path / "plan.json") == tmp_path / "plan.json.last-good"


def test_a_plan_with_an_alias_bomb_or_deep_nesting_is_refused_before_it_is_built() -> None:
    from modelyard.deploy.serving.plan import PlanError, parse_plan_text

    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9)
    )
    with pytest.raises(PlanError, match="more than 64 YAML aliases"):
        parse_plan_text(bomb, "bomb.yaml")
    with pytest.raises(PlanError, match="nested deeper than 32 levels"):
        parse_plan_text("services: " + "[" * 40 + "]" * 40, "deep.yaml")
