"""The chain ran on the real scheduler: every run green, champions registered, the endpoint serves them."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from e2e_stack import Chain

from modelyard.deploy.devstack.endpoint import serving_versions
from modelyard.deploy.devstack.stack import CHAIN_DAG_IDS
from modelyard.promotion.status import collect_status

pytestmark = pytest.mark.timeout(1800)  # the first test pays for starting the stack and the chain


def test_every_stage_ran_and_every_run_succeeded(chain: Chain) -> None:
    for dag_id in CHAIN_DAG_IDS:
        runs = chain.state.runs.get(dag_id, [])
        assert runs, f"no run of {dag_id}; transcript:\n{chain.transcript[-3000:]}"
        assert {run["state"] for run in runs} == {"success"}, [(r["dag_run_id"], r["state"]) for r in runs]


def test_data_and_training_reported_every_pair_from_their_chunks(chain: Chain) -> None:
    """Each stage maps over chunks (ADR 0008); every pair has a successful outcome in some chunk's XCom."""
    expected = {f"{family}/{region}" for family, region in chain.config.pairs()}
    for dag_id, task_id in (("data_processing", "build_snapshots"), ("training", "train")):
        done = set()
        for run in chain.state.runs[dag_id]:
            for ti in chain.state.tasks[run["dag_run_id"]]:
                if ti["task_id"] == task_id and ti["map_index"] >= 0 and ti["state"] == "success":
                    outcomes = chain.api.pair_outcomes(dag_id, run["dag_run_id"], task_id, ti["map_index"])
                    done |= {f"{o['family']}/{o['region']}" for o in outcomes if o["ok"]}
        assert done == expected, f"{dag_id}: {sorted(expected - done)} missing"


def test_registry_has_a_champion_per_pair(chain: Chain) -> None:
    statuses = collect_status(chain.config, tracking_uri=chain.settings.mlflow_url)
    missing = [f"{s.family}/{s.region}" for s in statuses if s.champion is None]
    assert not missing, f"no champion for {missing}"
    for status in statuses:
        assert status.champion is not None
        assert status.champion.metrics, f"champion of {status.family}/{status.region} has no key metrics"


def test_endpoint_serves_the_champions(chain: Chain) -> None:
    statuses = collect_status(chain.config, tracking_uri=chain.settings.mlflow_url)
    champions = {f"{s.family}/{s.region}": s.champion.version for s in statuses if s.champion}
    assert serving_versions(chain.config, chain.settings.serving_url) == champions


def test_training_chunk_names_each_pairs_mlflow_run(chain: Chain) -> None:
    """A chunk's outcomes (and its log, one line per pair) link each pair to its MLflow run and version."""
    run = chain.state.runs["training"][-1]
    outcomes = chain.api.pair_outcomes("training", run["dag_run_id"], "train", 0)
    assert outcomes, "the training run's first chunk reported no pairs"
    for outcome in outcomes:
        assert outcome["link"].startswith(f"{chain.settings.mlflow_url}/#/experiments/"), outcome
        model_name = chain.config.mlflow.model_name(outcome["family"], outcome["region"])
        assert outcome["event_extra"]["model_name"] == model_name, outcome
        assert outcome["event_extra"]["version"], outcome
    log = chain.api.task_log("training", run["dag_run_id"], "train", 0, 1)
    for outcome in outcomes:
        assert f"{outcome['family']}/{outcome['region']}: {outcome['status']}" in log, log[-2000:]


def test_tasks_without_mlflow_output_have_empty_links(chain: Chain) -> None:
    run = chain.state.runs["data_processing"][-1]
    links = chain.api.extra_links("data_processing", run["dag_run_id"], "select_pairs")
    assert set(links) == {"MLflow run", "MLflow model version", "Pairs on the fleet page"}
    assert not any(links.values()), links


def test_every_champion_move_rescored_its_pairs_rows_of_the_batch_table(chain: Chain) -> None:
    """The stack gives batch_scoring the demo's generated table; each promotion's champion events rescore it."""
    runs = chain.state.runs["batch_scoring"]
    assert runs, "no batch_scoring run followed the champions' events"
    assert {run["state"] for run in runs} == {"success"}, runs
    root = Path(str(chain.config.storage.root))
    for family, region in chain.config.pairs():
        scored = pq.read_table(root / "predictions" / family / region / "predictions.parquet")
        assert scored.num_rows > 0, f"{family}/{region}: no rows scored"
