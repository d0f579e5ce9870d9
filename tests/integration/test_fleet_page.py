"""The fleet page against a real ``mlflow server``: 60 seeded pairs, the app called over HTTP.

The registry is seeded by ``fleet_seed`` (versions, aliases, promotion and monitoring tags);
the deploy stage's records are ``DeployResult.asset_extra()`` as the deploy DAG emits them,
and the live plan is the copy a serving process keeps (``plan.json.last-good``) in the
config's local run folder, read by the plugin's own reader.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from fleet_seed import SeededPair, seed_fleet, write_fleet_config
from mlflow import MlflowClient

from modelyard.core.config import Config, load_config
from modelyard.deploy.rollout.mlflow_server import MlflowServer
from modelyard.deploy.rollout.staged_deploy import DeployResult
from modelyard.deploy.serving.plan import dump_plan, last_good_path, parse_plan
from modelyard.plugins.fleet.app import API_SERVER_MLFLOW_ENV, create_app
from modelyard.plugins.fleet.page import Links
from modelyard.plugins.fleet.rows import DeployRecord
from modelyard.plugins.fleet.sources import FleetSources, local_live_plan, local_plan_file
from modelyard.plugins.fleet.urls import PAGE_PATH

REGIONS = 30  # x 2 families = 60 pairs
AIRFLOW_BASE = "/airflow/"
DEPLOYED_AT = dt.datetime(2026, 12, 2, 9, 30, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def fleet(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, list[SeededPair]]:
    root = tmp_path_factory.mktemp("fleet")
    config = load_config(write_fleet_config(root / "modelyard.yaml", root / "data", REGIONS, "fleettest"), environ={})
    seeded = seed_fleet(MlflowClient(mlflow_server.url, mlflow_server.url), config)
    return config, seeded


def deploy_records(seeded: list[SeededPair]) -> list[DeployRecord]:
    """One local deploy of every registered pair's champion, as the deploy DAG's Asset event carries it."""
    versions = {f"{p.family}/{p.region}": {"primary": "2"} for p in seeded if p.registered}
    result = DeployResult(
        release="local", target="local", strategy="canary", outcome="deployed",
        plan_digest="sha256:" + "0" * 64, previous_plan_digest=None, versions=versions,
    )  # fmt: skip
    return [DeployRecord.from_event(result.asset_extra(), DEPLOYED_AT, "deployment", "manual__seed")]


def write_live_plan(config: Config, pair: SeededPair) -> None:
    """The serving process's copy of its active plan: ``pair`` split 90/10 between v2 and v3."""
    plan = parse_plan(
        {
            "services": [
                {
                    "family": pair.family,
                    "region": pair.region,
                    "variants": [
                        {"name": "primary", "model_uri": f"models:/{pair.model_name}/2", "weight": 90},
                        {"name": "canary", "model_uri": f"models:/{pair.model_name}/3", "weight": 10},
                    ],
                }
            ]
        }
    )
    path = last_good_path(local_plan_file(config))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(dump_plan(plan, "json"))


@pytest.fixture(scope="module")
def client(fleet: tuple[Config, list[SeededPair]], mlflow_server: MlflowServer) -> Iterator[TestClient]:
    config, seeded = fleet
    write_live_plan(config, canary_pair(seeded))
    records = deploy_records(seeded)
    sources = FleetSources(
        config=config,
        client=MlflowClient(mlflow_server.url, mlflow_server.url),
        deploy_records=lambda: records,
        live_plan=lambda: local_live_plan(config),
    )
    links = Links(mlflow=mlflow_server.url, airflow=AIRFLOW_BASE)
    with TestClient(create_app(lambda: (sources, links))) as test_client:
        yield test_client


def canary_pair(seeded: list[SeededPair]) -> SeededPair:
    return next(p for p in seeded if p.challenger)


def rows(html: str) -> list[str]:
    """The ``family/region`` of each row, in page order."""
    return re.findall(r'<tr data-pair="([^"]+)"', html)


def row_html(html: str, pair: str) -> str:
    match = re.search(rf'<tr data-pair="{re.escape(pair)}".*?</tr>', html, re.S)
    assert match, f"no row for {pair}"
    return match.group(0)


def get(client: TestClient, **params: str) -> str:
    response = client.get(PAGE_PATH, params=params)
    assert response.status_code == 200, response.text
    return response.text


def test_the_first_page_lists_fifty_pairs_in_config_order(
    client: TestClient, fleet: tuple[Config, list[SeededPair]]
) -> None:
    config, _ = fleet
    html = get(client)
    expected = sorted(config.pairs())[:50]
    assert rows(html) == [f"{f}/{r}" for f, r in expected]
    assert "60 pairs, page 1 of 2" in html


def test_the_second_page_holds_the_rest(client: TestClient) -> None:
    first, second = rows(get(client)), rows(get(client, page="2"))
    assert len(second) == 10
    assert not set(first) & set(second)
    assert 'rel="prev"' in get(client, page="2")


def test_every_row_shows_its_champion_previous_and_challenger_linked_to_mlflow(
    client: TestClient, fleet: tuple[Config, list[SeededPair]], mlflow_server: MlflowServer
) -> None:
    _, seeded = fleet
    html = get(client, per_page="100")
    for pair in seeded:
        row = row_html(html, f"{pair.family}/{pair.region}")
        if not pair.registered:
            assert "none" in row
            assert "mlflow-champion" not in row
            continue
        page = f"{mlflow_server.url}/#/models/{pair.model_name}/versions/2"
        assert f'class="mlflow-champion" href="{page}"' in row
        assert f'href="{mlflow_server.url}/#/runs/{pair.run_id}"' in row
        assert re.search(r'class="mlflow-previous" href="[^"]+/versions/1"', row)
        assert ("mlflow-challenger" in row) == bool(pair.challenger)


def test_the_family_and_region_filters_narrow_the_list(
    client: TestClient, fleet: tuple[Config, list[SeededPair]]
) -> None:
    config, _ = fleet
    family = config.family_names[1]
    listed = rows(get(client, family=family, region="JAKARTA_00"))
    expected = [f"{family}/{r}" for r in config.region_names if r.startswith("jakarta_00")]
    assert listed
    assert listed == sorted(expected)
    assert "No pair matches." in get(client, region="atlantis")


def test_sorting_by_drift_puts_drifted_champions_first(
    client: TestClient, fleet: tuple[Config, list[SeededPair]]
) -> None:
    _, seeded = fleet
    drifted = {f"{p.family}/{p.region}" for p in seeded if p.drifted and p.registered}
    listed = rows(get(client, sort="drift", desc="1", per_page="100"))
    assert set(listed[: len(drifted)]) == drifted
    assert len(listed) == 60


def test_sorting_by_region_descending_reverses_the_order(client: TestClient) -> None:
    listed = rows(get(client, sort="region", desc="1", per_page="100"))
    assert listed == sorted(listed, key=lambda pair: (pair.split("/")[1], pair.split("/")[0]), reverse=True)


def test_pending_approvals_link_to_required_actions(client: TestClient, fleet: tuple[Config, list[SeededPair]]) -> None:
    _, seeded = fleet
    waiting = [p for p in seeded if p.challenger == "awaiting-approval"]
    listed = rows(get(client, sort="approval", desc="1", per_page="100"))
    assert set(listed[: len(waiting)]) == {f"{p.family}/{p.region}" for p in waiting}
    row = row_html(get(client, per_page="100"), f"{waiting[0].family}/{waiting[0].region}")
    assert f'href="{AIRFLOW_BASE}required_actions?response_received=false"' in row
    assert "v3 awaits approval" in row


def test_serving_shows_the_live_canary_split_and_the_last_deploy_links_its_dag_run(
    client: TestClient, fleet: tuple[Config, list[SeededPair]]
) -> None:
    _, seeded = fleet
    canary = canary_pair(seeded)
    html = get(client, per_page="100")
    row = row_html(html, f"{canary.family}/{canary.region}")
    assert "primary v2 90% · canary v3 10%" in row
    assert "canary 10%" in row
    assert "live plan" in row
    other = next(p for p in seeded if p.registered and p != canary)
    other_row = row_html(html, f"{other.family}/{other.region}")
    assert "primary v2" in other_row
    assert "deploy record" in other_row
    assert "2026-12-02 09:30 UTC" in other_row
    assert f'href="{AIRFLOW_BASE}dags/deployment/runs/manual__seed"' in other_row
    never = next(p for p in seeded if not p.registered)
    assert "not deployed" in row_html(html, f"{never.family}/{never.region}")


def test_a_bad_query_is_a_400_that_names_the_parameter(client: TestClient) -> None:
    response = client.get(PAGE_PATH, params={"sort": "colour"})
    assert response.status_code == 400
    assert "sort: &#39;colour&#39; is not one of" in response.text
    assert client.get(PAGE_PATH, params={"page": "0"}).status_code == 400


def test_an_unreachable_registry_is_a_502_that_says_so(
    fleet: tuple[Config, list[SeededPair]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.deploy.rollout.mlflow_server import free_port

    for name, value in API_SERVER_MLFLOW_ENV.items():  # what the plugin sets in the API server
        monkeypatch.setenv(name, value)
    config, _ = fleet
    dead = f"http://127.0.0.1:{free_port()}"
    sources = FleetSources(config, MlflowClient(dead, dead), list, lambda: None)
    with TestClient(create_app(lambda: (sources, Links(mlflow=dead, airflow="/")))) as test_client:
        response = test_client.get(PAGE_PATH)
    assert response.status_code == 502
    assert "the MLflow registry did not answer" in response.text
