"""A pooled challenger goes through the same approval gate as a pair's (ADR 0011, ADR 0015), on a real MLflow server.

With ``promotion.approval: required``, the pooled model of ``country-id`` that passed every gate is held
``awaiting-approval``: no champion moves, so Surabaya (too few rows of its own) is not served yet. The
request a reviewer reads names the pooled model and the regions it pools; an approval promotes it and
the plan then serves Surabaya from it. A rejection of a later pooled version keeps the approved one.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
import yaml

from modelyard.core.config import Config, load_config
from modelyard.core.contracts.registry import CHALLENGER_ALIAS, CHAMPION_ALIAS
from modelyard.deploy.rollout.planner import PlannerError, PlanOptions, fallbacks_of
from modelyard.deploy.rollout.staged_deploy import propose
from modelyard.pipeline.build import BuildRequest, build_all
from modelyard.pipeline.generator import generate_for
from modelyard.promotion.aliases import aliases, open_client
from modelyard.promotion.approval import (
    apply_approval,
    approval_policy,
    build_request,
    decide_with_policy,
    pending_requests,
)
from modelyard.training.pooled import train_pooled
from tests.integration.test_pooled_models import FAMILY, bookings_file, write_config

GROUP = "country-id"


@pytest.fixture
def config(tmp_path: Path, mlflow_uri: str) -> Config:
    path = write_config(tmp_path, mlflow_uri)
    raw = yaml.safe_load(path.read_text())
    raw["promotion"] = {**raw.get("promotion", {}), "approval": "required"}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(path, environ={})


def test_a_pooled_challenger_waits_for_approval_and_serves_once_approved(
    config: Config, tmp_path: Path, mlflow_uri: str
) -> None:
    client = open_client(config)
    build_all(config, request=BuildRequest(source=str(bookings_file(config, tmp_path))))
    [pooled] = train_pooled(config, tracking_uri=mlflow_uri)
    assert pooled.status == "registered", pooled.reason
    name, version = pooled.model_name, str(pooled.version)
    assert approval_policy(config, FAMILY, GROUP).required

    held = decide_with_policy(client, config, (FAMILY, GROUP), "evaluate", "airflow:promotion")

    assert held.outcome == "awaiting-approval", held.summary
    assert (held.model_name, held.version, held.champion_after) == (name, version, None)
    assert CHAMPION_ALIAS not in aliases(client, name)
    assert pending_requests([held.model_dump(mode="json")]) == [{"family": FAMILY, "region": GROUP, "version": version}]
    with pytest.raises(PlannerError, match=r"surabaya-.*has no champion alias"):  # held: nothing serves Surabaya yet
        propose(config, PlanOptions(), None, mlflow_uri)
    request = build_request(client, config, FAMILY, GROUP, version, None)
    assert request.subject == f"Promote {FAMILY}/{GROUP} v{version}?"
    assert "pooled model of region group country-id (jakarta, surabaya)" in request.body

    approved = apply_approval(
        client, config, (FAMILY, GROUP), version, "approved",
        decided_by="user:reviewer", reason="pooled model looks right", at=dt.datetime.now(dt.UTC),
    )  # fmt: skip

    assert approved.outcome == "promoted", approved.summary
    assert aliases(client, name)[CHAMPION_ALIAS] == version
    assert client.get_model_version(name, version).tags["promotion.approval"] == "approved"
    plan = propose(config, PlanOptions(), None, mlflow_uri).plan
    note = f"{name} v{version} (group {GROUP})"
    assert fallbacks_of(plan) == {f"{FAMILY}/jakarta": note, f"{FAMILY}/surabaya": note}  # no own model trained here

    # A later pooled challenger is held too; a rejection keeps the approved champion serving.
    grown = tmp_path / "grown.parquet"
    frames = [generate_for(config, "jakarta", rows=2000), generate_for(config, "surabaya", rows=200)]
    pd.concat(frames).to_parquet(grown)
    build_all(config, request=BuildRequest(source=str(grown)))
    [later] = train_pooled(config, tracking_uri=mlflow_uri)
    assert later.status == "registered", later.reason
    again = decide_with_policy(client, config, (FAMILY, GROUP), "evaluate", "airflow:promotion")
    assert (again.outcome, again.version) == ("awaiting-approval", str(later.version)), again.summary
    rejected = apply_approval(
        client, config, (FAMILY, GROUP), str(later.version), "rejected",
        decided_by="user:reviewer", reason="wait for more Surabaya data", at=dt.datetime.now(dt.UTC),
    )  # fmt: skip
    assert rejected.outcome == "rejected"
    current = aliases(client, name)
    assert (current[CHAMPION_ALIAS], current.get(CHALLENGER_ALIAS)) == (version, str(later.version))
