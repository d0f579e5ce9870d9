"""The planner's rules on registry states, without MLflow: champion, strategies, challenger, windows, digest."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from modelyard.core.config import Config, load_config
from modelyard.deploy.rollout.planner import (
    PairState,
    PlannerError,
    PlanOptions,
    PooledState,
    build_plan,
    diff_plans,
    fallbacks_of,
    plan_versions,
    selected_pairs,
)
from modelyard.deploy.serving.plan import DateWindow, Plan, parse_plan_text
from modelyard.deploy.serving.router import ServiceRouter, fixed_clock


@pytest.fixture
def config(demo_config_path: Path, clean_env: None) -> Config:
    return load_config(demo_config_path, environ={})


def states(config: Config, **aliases_by_key: dict[str, str]) -> list[PairState]:
    """A state per configured pair; ``family__region=aliases`` sets a pair's aliases (default: champion 1)."""
    result = []
    for family, region in config.pairs():
        aliases = aliases_by_key.get(f"{family}__{region}", {"champion": "1"})
        result.append(PairState(family, region, config.mlflow.model_name(family, region), aliases))
    return result


def test_every_pair_serves_its_champion_pinned_by_version(config: Config) -> None:
    proposal = build_plan(config, states(config, driver_acceptance__jakarta={"champion": "7"}), PlanOptions())

    plan = proposal.plan
    assert len(plan.services) == len(config.pairs())
    service = plan.service("driver_acceptance", "jakarta")
    assert service is not None
    assert [(v.name, v.model_uri, v.weight) for v in service.variants] == [
        ("primary", "models:/driver_acceptance-jakarta/7", 100)
    ]
    assert service.timezone == "Asia/Jakarta"
    assert [f"{s.family}/{s.region}" for s in plan.services] == [f"{f}/{r}" for f, r in config.pairs()]


def test_same_registry_state_gives_the_same_digest_and_a_moved_alias_another(config: Config) -> None:
    first = build_plan(config, states(config), PlanOptions()).plan
    again = build_plan(config, list(reversed(states(config))), PlanOptions()).plan
    moved = build_plan(config, states(config, pickup_eta__hanoi={"champion": "2"}), PlanOptions()).plan

    assert first.digest() == again.digest()
    assert moved.digest() != first.digest()
    # The digest survives the JSON round trip the server does.
    assert parse_plan_text(first.canonical_json()).digest() == first.digest()


def test_pairs_without_champion_are_skipped_with_the_reason(config: Config) -> None:
    proposal = build_plan(config, states(config, pickup_eta__bangkok={}), PlanOptions())

    assert proposal.plan.service("pickup_eta", "bangkok") is None
    assert "pickup_eta-bangkok" in proposal.skipped["pickup_eta/bangkok"]
    assert "promote" in proposal.skipped["pickup_eta/bangkok"]


def test_nothing_to_deploy_is_an_error_naming_the_pairs(config: Config) -> None:
    empty = [PairState(f, r, config.mlflow.model_name(f, r), {}) for f, r in config.pairs()]

    with pytest.raises(PlannerError, match="nothing to deploy: driver_acceptance/jakarta"):
        build_plan(config, empty, PlanOptions())


def test_a_version_override_needs_one_pair(config: Config) -> None:
    with pytest.raises(PlannerError, match="select exactly one family and one region"):
        selected_pairs(config, PlanOptions(version="3", regions=["jakarta"]))
    assert selected_pairs(config, PlanOptions(version="3", families=["pickup_eta"], regions=["jakarta"])) == [
        ("pickup_eta", "jakarta")
    ]


def test_override_serves_the_version_and_blue_green_keeps_the_champion_on_standby(config: Config) -> None:
    state = PairState("pickup_eta", "jakarta", "pickup_eta-jakarta", {"champion": "4"}, override="6")

    plan = build_plan(config, [state], PlanOptions(regions=["jakarta"], strategy="blue-green")).plan

    assert plan_versions(plan) == {"pickup_eta/jakarta": {"primary": "6", "standby": "4"}}
    service = plan.services[0]
    assert [v.weight for v in service.variants] == [100, 0]


def test_blue_green_standby_is_previous_champion_and_rolling_has_none(config: Config) -> None:
    aliases = {"champion": "5", "previous-champion": "4"}
    one = [PairState("driver_acceptance", "hanoi", "driver_acceptance-hanoi", aliases)]

    blue_green = build_plan(config, one, PlanOptions(strategy="blue-green")).plan
    rolling = build_plan(config, one, PlanOptions(strategy="rolling")).plan

    assert plan_versions(blue_green)["driver_acceptance/hanoi"] == {"primary": "5", "standby": "4"}
    assert plan_versions(rolling)["driver_acceptance/hanoi"] == {"primary": "5"}


def test_shadow_strategy_keeps_the_previous_version_answering(config: Config) -> None:
    aliases = {"champion": "5", "previous-champion": "4"}
    one = [PairState("driver_acceptance", "hanoi", "driver_acceptance-hanoi", aliases)]

    plan = build_plan(config, one, PlanOptions(strategy="shadow")).plan

    assert plan_versions(plan)["driver_acceptance/hanoi"] == {"primary": "4", "shadow:shadow": "5"}


def test_shadow_strategy_without_a_previous_version_serves_the_new_one(config: Config) -> None:
    one = [PairState("driver_acceptance", "hanoi", "driver_acceptance-hanoi", {"champion": "1"})]

    plan = build_plan(config, one, PlanOptions(strategy="shadow")).plan

    assert plan_versions(plan)["driver_acceptance/hanoi"] == {"primary": "1"}


def test_challenger_weight_splits_and_shadow_challenger_mirrors(config: Config) -> None:
    aliases = {"champion": "5", "challenger": "8"}
    one = [PairState("pickup_eta", "singapore", "pickup_eta-singapore", aliases)]

    split = build_plan(config, one, PlanOptions(challenger_weight=20)).plan.services[0]
    mirrored = build_plan(config, one, PlanOptions(shadow_challenger=True)).plan.services[0]
    same = build_plan(
        config,
        [PairState("pickup_eta", "singapore", "pickup_eta-singapore", {"champion": "5", "challenger": "5"})],
        PlanOptions(challenger_weight=20),
    ).plan.services[0]

    assert [(v.name, v.weight) for v in split.variants] == [("primary", 80), ("challenger", 20)]
    assert [s.model_uri for s in mirrored.shadows] == ["models:/pickup_eta-singapore/8"]
    assert [(v.name, v.weight) for v in same.variants] == [("primary", 100)]  # the challenger is the champion


BEFORE_LEBARAN = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)  # Jakarta's festival: 2026-03-16 to 2026-03-27


def test_festival_window_routes_to_the_alias_during_the_region_festival(config: Config) -> None:
    aliases = {"champion": "5", "festival": "9"}
    one = [PairState("driver_acceptance", "jakarta", "driver_acceptance-jakarta", aliases)]

    service = build_plan(config, one, PlanOptions(), now=BEFORE_LEBARAN).plan.services[0]

    assert [(v.name, v.weight) for v in service.variants] == [("primary", 100), ("festival", 0)]
    assert [r.variant for r in service.rules] == ["festival"]
    lebaran = ServiceRouter(service, fixed_clock(dt.datetime(2026, 3, 20, 12, tzinfo=dt.UTC)))
    ordinary = ServiceRouter(service, fixed_clock(dt.datetime(2026, 5, 20, 12, tzinfo=dt.UTC)))
    assert lebaran.route("customer-1").variant == "festival"
    assert ordinary.route("customer-1").variant == "primary"


def test_a_festival_over_leaves_the_plan_with_the_version_it_loaded(config: Config) -> None:
    """Once the region's last festival is over (its local date), the window never holds again: a plan
    kept the festival version loaded, and the rule, for ever."""
    aliases = {"champion": "5", "festival": "9"}
    one = [PairState("driver_acceptance", "jakarta", "driver_acceptance-jakarta", aliases)]
    last_day_in_jakarta = dt.datetime(2026, 3, 27, 16, 59, tzinfo=dt.UTC)  # 23:59 in Jakarta
    over_in_jakarta = dt.datetime(2026, 3, 27, 17, 0, tzinfo=dt.UTC)  # 00:00 on the 28th there

    during = build_plan(config, one, PlanOptions(), now=last_day_in_jakarta)
    over = build_plan(config, one, PlanOptions(), now=over_in_jakarta)
    after = over.plan.services[0]

    assert [r.name for r in during.plan.services[0].rules] == ["festival"]
    assert during.windows_over == {}
    assert (after.rules, [(v.name, v.weight) for v in after.variants]) == ([], [("primary", 100)])
    assert over.windows_over == {
        "driver_acceptance/jakarta": "window festival: every festival of jakarta is over (the last ended "
        "2026-03-27), so its 'festival' version v9 is no longer loaded; add the next festival's dates to "
        "regions[].festivals to route to it again"
    }
    assert plan_versions(Plan(services=[after])) == {"driver_acceptance/jakarta": {"primary": "5"}}
    # Next year's festival added to the region's calendar: the window holds again, for that date only.
    raw = config.model_dump(mode="json")
    jakarta = next(r for r in raw["regions"] if r["name"] == "jakarta")
    jakarta["festivals"].append({"name": "lebaran", "start": "2027-03-06", "end": "2027-03-12"})
    next_year = type(config).model_validate(raw)
    again = build_plan(next_year, one, PlanOptions(), now=over_in_jakarta).plan.services[0]
    assert [[(d.start.isoformat(), d.end.isoformat()) for d in r.dates] for r in again.rules] == [
        [("2027-03-06", "2027-03-12")]
    ]


def test_no_window_rule_without_the_alias(config: Config) -> None:
    service = build_plan(config, states(config), PlanOptions()).plan.services[0]

    assert service.rules == []


def test_narrowed_selection_keeps_the_other_live_services_and_full_selection_drops_stale_ones(config: Config) -> None:
    live = build_plan(config, states(config), PlanOptions()).plan
    stale = live.services[0].model_copy(update={"region": "atlantis"})
    live_with_stale = Plan(services=[*live.services, stale])
    jakarta = [s for s in states(config, driver_acceptance__jakarta={"champion": "2"}) if s.region == "jakarta"]

    narrowed = build_plan(config, jakarta, PlanOptions(regions=["jakarta"]), live_with_stale)
    full = build_plan(config, states(config), PlanOptions(), live_with_stale)

    assert narrowed.plan.service("driver_acceptance", "jakarta").variants[0].model_uri.endswith("/2")  # type: ignore[union-attr]
    assert narrowed.plan.service("pickup_eta", "bangkok") == live.service("pickup_eta", "bangkok")
    assert narrowed.plan.service("driver_acceptance", "atlantis") is not None
    assert full.plan.service("driver_acceptance", "atlantis") is None
    changes = {c.key: c.change for c in diff_plans(live_with_stale, full.plan)}
    assert changes["driver_acceptance/atlantis"] == "removed"
    assert changes["driver_acceptance/jakarta"] == "unchanged"


def test_diff_names_added_and_changed_services(config: Config) -> None:
    live = build_plan(config, states(config), PlanOptions()).plan
    new = build_plan(config, states(config, pickup_eta__hanoi={"champion": "3"}), PlanOptions()).plan

    changes = diff_plans(live, new)
    changed = [c for c in changes if c.change == "changed"]
    assert [(c.key, c.before, c.after) for c in changed] == [("pickup_eta/hanoi", "primary v1 100%", "primary v3 100%")]
    assert {c.change for c in diff_plans(None, new)} == {"added"}


def test_a_change_the_summary_does_not_show_names_the_fields(config: Config) -> None:
    # A festival added to Jakarta's calendar: same versions, same sources, other holidays.
    live = build_plan(config, states(config), PlanOptions()).plan
    jakarta = live.service("pickup_eta", "jakarta")
    assert jakarta is not None
    festival = DateWindow(start=dt.date(2026, 4, 1), end=dt.date(2026, 4, 3))
    moved = jakarta.model_copy(update={"holidays": [*jakarta.holidays, festival]})
    new = live.model_copy(update={"services": [moved if s is jakarta else s for s in live.services]})

    changed = [c for c in diff_plans(live, new) if c.change == "changed"]

    assert [(c.key, c.before, c.after) for c in changed] == [
        ("pickup_eta/jakarta", "primary v1 100%", "primary v1 100% (changed: holidays)")
    ]


def with_pooled(config: Config, state: PairState, **aliases_by_group: dict[str, str]) -> PairState:
    """``state`` with the pooled models of its region's groups; ``group=aliases`` (default: none)."""
    pooled = tuple(
        PooledState(
            group, config.pooled_model_name(state.family, group), aliases_by_group.get(group.replace("-", "_"), {})
        )
        for group in config.groups_of(state.region)
    )
    return PairState(state.family, state.region, state.model_name, state.aliases, state.override, pooled)


def test_a_region_without_a_champion_is_served_by_its_groups_pooled_champion(config: Config) -> None:
    base = states(config, pickup_eta__surabaya={"challenger": "2"})
    pooled = [with_pooled(config, s, country_id={"champion": "3", "challenger": "4"}) for s in base]

    proposal = build_plan(config, pooled, PlanOptions())

    service = proposal.plan.service("pickup_eta", "surabaya")
    assert service is not None
    assert (service.region, service.timezone) == ("surabaya", "Asia/Jakarta")
    assert [(v.name, v.model_uri, v.weight) for v in service.variants] == [
        ("primary", "models:/pickup_eta-country-id/3", 100)
    ]
    assert proposal.fallbacks == {"pickup_eta/surabaya": "pickup_eta-country-id v3 (group country-id)"}
    assert proposal.plan.metadata == {"fallback.pickup_eta/surabaya": "pickup_eta-country-id v3 (group country-id)"}
    assert fallbacks_of(proposal.plan) == proposal.fallbacks
    jakarta = proposal.plan.service("pickup_eta", "jakarta")
    assert jakarta is not None
    assert jakarta.variants[0].model_uri == "models:/pickup_eta-jakarta/1"  # its own
    assert "pickup_eta/surabaya" not in proposal.skipped


def test_the_diff_names_the_pooled_model_when_a_region_loses_its_champion(config: Config) -> None:
    # Someone deletes Jakarta's champion alias in the MLflow UI: the region falls back to its group's
    # pooled v1, and "primary v1 100%" on both sides of the diff would hide that the model changed.
    live = build_plan(
        config, [with_pooled(config, s, country_id={"champion": "1"}) for s in states(config)], PlanOptions()
    )
    lost = states(config, pickup_eta__jakarta={})
    new = build_plan(config, [with_pooled(config, s, country_id={"champion": "1"}) for s in lost], PlanOptions())

    changed = [c for c in diff_plans(live.plan, new.plan) if c.change == "changed"]

    assert [(c.key, c.before, c.after) for c in changed] == [
        ("pickup_eta/jakarta", "primary v1 100%", "primary pickup_eta-country-id v1 100%")
    ]


def test_no_pooled_champion_either_is_skipped_naming_the_pooled_model(config: Config) -> None:
    base = states(config, pickup_eta__surabaya={})
    proposal = build_plan(config, [with_pooled(config, s) for s in base], PlanOptions())

    assert proposal.plan.service("pickup_eta", "surabaya") is None
    assert "nor has the pooled model of its group ('pickup_eta-country-id'" in proposal.skipped["pickup_eta/surabaya"]
    assert proposal.fallbacks == {}


def test_a_version_override_is_never_replaced_by_a_fallback(config: Config) -> None:
    state = PairState("pickup_eta", "surabaya", "pickup_eta-surabaya", {}, override="5")
    proposal = build_plan(config, [with_pooled(config, state, country_id={"champion": "3"})], PlanOptions())

    service = proposal.plan.service("pickup_eta", "surabaya")
    assert service is not None
    assert service.variants[0].model_uri == "models:/pickup_eta-surabaya/5"
    assert proposal.fallbacks == {}
