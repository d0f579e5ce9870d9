"""A promotion waits for a person in Airflow's Required Actions, on the real scheduler.

After the chain, a config overlay makes approval required (the ho_chi_minh pairs with a short
timeout) and training is forced for every pair, so each gets a new challenger that passes the
gates. The test then answers through Airflow's REST HITL endpoints, logged in as the e2e user:
it approves one jakarta pair and rejects the other, leaves the ho_chi_minh pairs unanswered,
and checks in the MLflow registry who decided what and why. At the end the overlay is removed
and the stack has settled (the approved pair is deployed), so the chain tests still hold.
"""

from __future__ import annotations

import datetime as dt
import io
import time
from typing import Any

import pytest
import yaml
from e2e_stack import E2E_REGIONS, Chain

from modelyard.core.contracts.registry import CHALLENGER_ALIAS, CHAMPION_ALIAS
from modelyard.deploy.devstack.progress import follow_chain
from modelyard.deploy.devstack.stack import AIRFLOW_USER, AirflowApi
from modelyard.promotion.aliases import aliases, open_client

pytestmark = pytest.mark.timeout(2400)

APPROVE_REASON = "AUC holds on the festival slice; ship it"
REJECT_REASON = "wait for the fleet change next week"
TIMEOUT_SECONDS = 30
SETTLE_SECONDS = 10  # several scheduler loops after the pause (see settle)


def test_approve_reject_and_time_out_through_the_rest_api(chain: Chain) -> None:
    config, settings, api = chain.config, chain.settings, chain.api
    first, second = config.family_names[:2]
    approved, rejected = (first, E2E_REGIONS[0]), (second, E2E_REGIONS[0])
    timed_out = [(family, E2E_REGIONS[1]) for family in config.family_names]
    client = open_client(config, settings.mlflow_url)
    before = {pair: aliases(client, config.mlflow.model_name(*pair)) for pair in config.pairs()}
    newest_before = {pair: newest_version(client, config.mlflow.model_name(*pair)) for pair in config.pairs()}
    overlay = {
        "promotion": {
            "approval": "required",
            "approval_timeout": 3600,
            "overrides": {f"*/{E2E_REGIONS[1]}": {"approval_timeout": TIMEOUT_SECONDS}},
        }
    }
    settings.overlay_path.write_text(yaml.safe_dump(overlay))
    try:
        since = dt.datetime.now(dt.UTC).isoformat()
        api.trigger("training", {"force": True}, note="e2e approval")
        waiting = wait_for_required_actions(api, {f"{f}/{r}" for f, r in (approved, rejected)})
        detail = waiting[f"{approved[0]}/{approved[1]}"]
        for expected in ("passed every gate", "| gate |", "champion v", "/#/experiments/"):
            assert expected in detail["body"], detail["body"]
        settle(api, [waiting[f"{f}/{r}"] for f, r in (approved, rejected)])
        respond(api, waiting[f"{approved[0]}/{approved[1]}"], "Approve", APPROVE_REASON)
        respond(api, waiting[f"{rejected[0]}/{rejected[1]}"], "Reject", REJECT_REASON)
        output = io.StringIO()
        from rich.console import Console

        follow_chain(api, since, Console(file=output, width=140), timeout=1200)
    finally:
        settings.overlay_path.unlink(missing_ok=True)

    after = {pair: aliases(client, config.mlflow.model_name(*pair)) for pair in config.pairs()}
    new = {pair: newest_version(client, config.mlflow.model_name(*pair)) for pair in config.pairs()}
    for pair in config.pairs():
        assert int(new[pair]) > int(newest_before[pair]), f"{pair}: no new challenger"
    assert CHALLENGER_ALIAS not in after[approved], "a promoted version is no longer the challenger"
    for pair in [rejected, *timed_out]:
        assert after[pair][CHALLENGER_ALIAS] == new[pair], f"{pair}: an undecided-for-good version stays challenger"

    tags = version_tags(client, config.mlflow.model_name(*approved), new[approved])
    assert after[approved][CHAMPION_ALIAS] == new[approved]
    assert tags["promotion.outcome"] == "promoted"
    assert tags["promotion.approval"] == "approved"
    assert tags["promotion.decided_by"] == AIRFLOW_USER
    assert tags["promotion.reason"] == APPROVE_REASON
    assert tags["promotion.decided_at"]

    tags = version_tags(client, config.mlflow.model_name(*rejected), new[rejected])
    assert after[rejected][CHAMPION_ALIAS] == before[rejected][CHAMPION_ALIAS]
    assert tags["promotion.outcome"] == "rejected"
    assert tags["promotion.approval"] == "rejected"
    assert tags["promotion.decided_by"] == AIRFLOW_USER
    assert tags["promotion.reason"] == REJECT_REASON

    for pair in timed_out:
        tags = version_tags(client, config.mlflow.model_name(*pair), new[pair])
        assert after[pair][CHAMPION_ALIAS] == before[pair][CHAMPION_ALIAS], pair
        assert tags["promotion.outcome"] == "timed-out", tags
        assert tags["promotion.approval"] == "timed-out", tags
        assert f"no answer within 0:00:{TIMEOUT_SECONDS}" in tags["promotion.reason"], tags


def wait_for_required_actions(api: AirflowApi, labels: set[str], timeout: float = 1200) -> dict[str, dict[str, Any]]:
    """The open Required Actions of the promotion DAG by pair label, once every one of ``labels`` is open."""
    deadline = time.monotonic() + timeout
    found: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        result = api.request(
            "GET", "/dags/promotion/dagRuns/~/hitlDetails", params={"response_received": False, "limit": 100}
        )
        found = {d["task_instance"]["rendered_map_index"]: d for d in result["hitl_details"]}
        if labels <= set(found):
            return found
        time.sleep(5)
    raise AssertionError(f"Required Actions for {sorted(labels)} did not open in {timeout:.0f}s; open: {sorted(found)}")


def settle(api: AirflowApi, details: list[dict[str, Any]], seconds: float = SETTLE_SECONDS) -> None:
    """Wait until each task shows ``awaiting_input``, then until the scheduler has had its executor event.

    An answer that lands before the scheduler processed the executor's event for the paused task
    process (~1 s after the pause) sends Airflow 3.3's scheduler down "finished with state success,
    but the task instance's state attribute is queued": the try is marked up for retry and the new
    try asks again, so the answer is lost (seen here: approve answered 0.35 s after the pause). A
    person never answers that fast; the test waits as one would.
    """
    deadline = time.monotonic() + 120
    for detail in details:
        ti = detail["task_instance"]
        path = f"/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/{ti['task_id']}/{ti['map_index']}"
        while api.request("GET", path)["state"] != "awaiting_input":
            assert time.monotonic() < deadline, f"{ti['rendered_map_index']} never awaited input"
            time.sleep(1)
    time.sleep(seconds)


def respond(api: AirflowApi, detail: dict[str, Any], option: str, reason: str) -> None:
    """Answer one Required Action through ``PATCH .../hitlDetails`` (what the UI's form sends)."""
    ti = detail["task_instance"]
    run = f"/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}"
    path = f"{run}/taskInstances/{ti['task_id']}/{ti['map_index']}/hitlDetails"
    answer = api.request("PATCH", path, json={"chosen_options": [option], "params_input": {"reason": reason}})
    assert answer["responded_by"]["name"] == AIRFLOW_USER, answer


def newest_version(client: Any, name: str) -> str:
    """The registered model's highest version number (the one the run just trained)."""
    return str(max(int(v.version) for v in client.search_model_versions(f"name='{name}'")))


def version_tags(client: Any, name: str, version: str) -> dict[str, str]:
    return dict(client.get_model_version(name, version).tags)
