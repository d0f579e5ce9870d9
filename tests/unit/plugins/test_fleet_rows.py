"""The fleet page's rows: the query from the address, filters, sorts, and what serves a pair."""

from __future__ import annotations

import datetime as dt

import pytest

from modelyard.deploy.serving.plan import parse_plan
from modelyard.plugins.fleet.rows import (
    DeployRecord,
    FleetQuery,
    FleetQueryError,
    build_rows,
    select_pairs,
    sort_pairs,
    sort_rows,
)
from modelyard.promotion.status import PairStatus, VersionInfo

PAIRS = [("eta", "jakarta"), ("eta", "bangkok"), ("accept", "jakarta_2"), ("accept", "hanoi")]


def status(family: str, region: str, champion: str | None = None, drift: str | None = None) -> PairStatus:
    info = VersionInfo(version=champion, drift=drift) if champion else None
    return PairStatus(family, region, f"{family}-{region}", info, None, None)


def record(at: int, versions: dict[str, dict[str, str]]) -> DeployRecord:
    extra = {"release": "local", "outcome": "deployed", "strategy": "canary", "versions": versions}
    return DeployRecord.from_event(extra, dt.datetime(2026, 12, at, tzinfo=dt.UTC), "deploy", f"run{at}")


def test_the_query_reads_its_parameters_and_names_a_bad_one() -> None:
    query = FleetQuery.parse({"family": "eta", "region": " Jak ", "sort": "drift", "desc": "1", "page": "2"})
    assert query == FleetQuery(family="eta", region="Jak", sort="drift", descending=True, page=2)
    assert FleetQuery.parse({"per_page": "100000"}).per_page == 500
    with pytest.raises(FleetQueryError, match="sort: 'size' is not one of"):
        FleetQuery.parse({"sort": "size"})
    with pytest.raises(FleetQueryError, match="page: '-1' is not a positive integer"):
        FleetQuery.parse({"page": "-1"})


def test_filters_keep_a_family_and_regions_containing_the_text_in_any_case() -> None:
    assert select_pairs(PAIRS, FleetQuery(region="JAKARTA")) == [("eta", "jakarta"), ("accept", "jakarta_2")]
    assert select_pairs(PAIRS, FleetQuery(family="accept", region="jak")) == [("accept", "jakarta_2")]


def test_a_tasks_pairs_are_shown_alone_and_kept_in_its_links() -> None:
    query = FleetQuery.parse({"pairs": "eta/bangkok, accept/hanoi,eta/bangkok,"})
    assert query.pairs == ("eta/bangkok", "accept/hanoi")
    assert select_pairs(PAIRS, query) == [("eta", "bangkok"), ("accept", "hanoi")]
    assert query.with_(page=2)["pairs"] == "eta/bangkok,accept/hanoi"  # paging and sorting keep the selection
    assert select_pairs(PAIRS, FleetQuery(pairs=("eta/bangkok",), family="accept")) == []


def test_the_fleet_link_of_a_chunk_names_its_pairs_and_of_other_tasks_nothing() -> None:
    from urllib.parse import parse_qs, urlsplit

    from modelyard.plugins.fleet.link import fleet_pairs_url

    outcomes = [{"family": "eta", "region": "jakarta", "status": "trained"}, {"family": "eta", "region": "hanoi"}]
    url = urlsplit(fleet_pairs_url(outcomes, {"chunk": 0}))
    assert url.path == "/modelyard/fleet"
    assert parse_qs(url.query) == {"pairs": ["eta/jakarta,eta/hanoi"]}
    assert fleet_pairs_url(None, {"family": "eta", "region": "bangkok", "version": "3"}).endswith("=eta%2Fbangkok")
    assert fleet_pairs_url(None, ["a", "b"]) == fleet_pairs_url(None, None) == fleet_pairs_url([], None) == ""


def test_sorting_by_region_then_family() -> None:
    assert sort_pairs(PAIRS, FleetQuery(sort="region"))[0] == ("eta", "bangkok")


def test_sorting_by_drift_descending_puts_drifted_first_and_no_champion_last() -> None:
    rows = build_rows(
        [status("eta", "a", "1", "stable"), status("eta", "b"), status("eta", "c", "2", "drifted")], [], None
    )
    ordered = sort_rows(rows, FleetQuery(sort="drift", descending=True))
    assert [row.status.region for row in ordered] == ["c", "a", "b"]


def test_the_live_plan_wins_over_the_deploy_record_and_the_newest_record_wins() -> None:
    plan = parse_plan(
        {
            "services": [
                {
                    "family": "eta",
                    "region": "jakarta",
                    "variants": [
                        {"name": "primary", "model_uri": "models:/eta-jakarta/4", "weight": 80},
                        {"name": "canary", "model_uri": "models:/eta-jakarta/5", "weight": 20},
                    ],
                }
            ]
        }
    )
    old = record(1, {"eta/jakarta": {"primary": "3"}, "eta/bangkok": {"primary": "1"}})
    new = record(2, {"eta/bangkok": {"primary": "2"}})
    live, recorded, never = build_rows(
        [status("eta", "jakarta", "4"), status("eta", "bangkok", "2"), status("eta", "hanoi")], [new, old], plan
    )
    assert live.serving is not None
    assert (live.serving.canary_weight, live.serving.source) == (20, "live plan")
    assert live.deploy == old
    assert recorded.serving is not None
    assert (recorded.serving.summary, recorded.deploy) == ("primary v2", new)
    assert (never.serving, never.deploy) == (None, None)


def test_a_region_served_by_a_pooled_model_shows_it_and_the_drift_it_measured() -> None:
    from modelyard.plugins.fleet.page import Links, render_page
    from modelyard.plugins.fleet.rows import FleetPage
    from modelyard.promotion.status import Fallback

    pooled = VersionInfo(version="3", drift="drifted", drift_run_id="run9", drift_checked_at="2026-12-06T10:00:00")
    fallback = Fallback("country-id", "eta-id", "3", pooled)
    served = PairStatus("eta", "surabaya", "eta-surabaya", None, None, None, fallback)
    rows = build_rows([status("eta", "a", "1", "stable"), served, status("eta", "b")], [], None)
    assert [row.status.region for row in sort_rows(rows, FleetQuery(sort="drift", descending=True))] == [
        "surabaya", "a", "b",
    ]  # fmt: skip
    html = render_page(FleetPage(FleetQuery(), rows, 3), Links("http://mlflow:5000", "/"))
    row = html.split('data-pair="eta/surabaya"')[1].split("</tr>")[0]
    assert "pooled: country-id" in row
    assert 'class="mlflow-pooled" href="http://mlflow:5000/#/models/eta-id/versions/3"' in row
    assert '<span class="drifted"' in row
    assert 'href="http://mlflow:5000/#/runs/run9"' in row
