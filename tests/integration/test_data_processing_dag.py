"""The data_processing DAG on a real Airflow (``airflow dags test``, SQLite metadata DB)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from modelyard.pipeline.assets import features_uri
from modelyard.pipeline.generator import generate_for
from modelyard.pipeline.snapshots import latest_snapshot

if TYPE_CHECKING:
    from tests.integration.conftest import AirflowEnv

DAG_ID = "data_processing"
PREFIX = "modelyard://features/"


def _snapshot_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def first_run(airflow: AirflowEnv) -> AirflowEnv:
    result = airflow.run_dag_test(DAG_ID, {})
    assert result.returncode == 0, result.stdout[-6000:]
    return airflow


def test_publishes_every_pair_and_announces_digests(first_run: AirflowEnv) -> None:
    config = first_run.config
    events = {e.uri: e for e in first_run.asset_events(PREFIX, dag_id=DAG_ID)}
    pairs = config.pairs()
    assert len(pairs) == 4
    for family, region in pairs:
        meta = latest_snapshot(config.storage.features_dir, family, region)
        assert meta.validation.success
        assert meta.report_path(config.storage.features_dir) is not None
        event = events[features_uri(family, region)]
        assert event.extra == {"family": family, "region": region, "digest": meta.digest, "rows": meta.rows}
        assert event.source_task_id == "build_snapshot"
    assert len(first_run.asset_events(PREFIX, dag_id=DAG_ID)) == len(pairs)
    with sqlite3.connect(first_run.db_path) as conn:
        labels = {row[0] for row in conn.execute("SELECT rendered_map_index FROM task_instance WHERE map_index >= 0")}
    assert labels == {f"{family}/{region}" for family, region in pairs}


def test_second_run_writes_and_announces_nothing(first_run: AirflowEnv) -> None:
    root = first_run.config.storage.features_dir
    files_before = _snapshot_files(root)
    events_before = first_run.asset_events(PREFIX, dag_id=DAG_ID)
    result = first_run.run_dag_test(DAG_ID, {})
    assert result.returncode == 0, result.stdout[-6000:]
    assert _snapshot_files(root) == files_before
    assert first_run.asset_events(PREFIX, dag_id=DAG_ID) == events_before
    assert {s for _, _, s in first_run.task_states(DAG_ID)} == {"success"}


def test_bad_region_fails_alone_with_its_reason(first_run: AirflowEnv, tmp_path: Path) -> None:
    config = first_run.config
    good = generate_for(config, "jakarta", rows=600)
    bad = generate_for(config, "ho_chi_minh", rows=600)
    bad.loc[:40, "pickup_distance_km"] = 900.0
    source = tmp_path / "bookings.csv"
    pd.concat([good, bad]).to_csv(source, index=False)
    events_before = len(first_run.asset_events(PREFIX, dag_id=DAG_ID))

    result = first_run.run_dag_test(DAG_ID, {"families": ["driver_acceptance"], "source": str(source)})

    assert result.returncode != 0
    assert "DagRun failed" in result.stdout
    states = {(t, m): s for t, m, s in first_run.task_states(DAG_ID)}
    assert sorted(s for (t, _), s in states.items() if t == "build_snapshot") == ["failed", "success"]
    assert "column 'pickup_distance_km' has 41 values outside [0, 200]" in result.stdout
    assert "expect_column_values_to_be_between" in result.stdout
    new = first_run.asset_events(PREFIX, dag_id=DAG_ID)[events_before:]
    assert [e.uri for e in new] == [features_uri("driver_acceptance", "jakarta")]
    assert latest_snapshot(config.storage.features_dir, "driver_acceptance", "jakarta").digest == new[0].extra["digest"]
