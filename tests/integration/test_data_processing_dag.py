"""The data_processing DAG on a real Airflow (``airflow dags test``, SQLite metadata DB)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
from conftest import write_test_config

from modelyard.core import chunks
from modelyard.core.config import load_config
from modelyard.core.contracts.assets import features_uri
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
        assert event.source_task_id == "publish_snapshots"
    assert len(first_run.asset_events(PREFIX, dag_id=DAG_ID)) == len(pairs)
    assert _chunk_labels(first_run) == [", ".join(f"{family}/{region}" for family, region in pairs)]


def _chunk_labels(env: AirflowEnv) -> list[str]:
    """The chunk labels (``rendered_map_index``) of the latest data_processing run, by map index."""
    query = (
        "SELECT rendered_map_index FROM task_instance WHERE dag_id = ? AND task_id = 'build_snapshots' AND run_id = "
        "(SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1) ORDER BY map_index"
    )
    with sqlite3.connect(env.db_path) as conn:
        return [row[0] for row in conn.execute(query, (DAG_ID, DAG_ID))]


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
    assert [s for (t, _), s in states.items() if t == "build_snapshots"] == ["failed"]  # the one chunk of 2 pairs
    assert states[("publish_snapshots", -1)] == "success"
    assert "driver_acceptance/jakarta: published" in result.stdout
    assert "driver_acceptance/ho_chi_minh: FAILED | region 'ho_chi_minh': column 'pickup_distance_km'" in result.stdout
    assert "column 'pickup_distance_km' has 41 values outside [0, 200]" in result.stdout
    assert "expect_column_values_to_be_between" in result.stdout
    new = first_run.asset_events(PREFIX, dag_id=DAG_ID)[events_before:]
    assert [e.uri for e in new] == [features_uri("driver_acceptance", "jakarta")]
    assert latest_snapshot(config.storage.features_dir, "driver_acceptance", "jakarta").digest == new[0].extra["digest"]


def test_many_pairs_in_small_chunks_with_one_bad_region(
    airflow: AirflowEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """12 pairs in chunks of at most 5: a region with bad data fails its two pairs, named in the log and
    the failures; the 10 others are published and announced at once, by one task, for one training run."""
    regions = ("jakarta", "surabaya", "ho_chi_minh", "hanoi", "bangkok", "singapore")
    config = load_config(write_test_config(tmp_path / "modelyard.yaml", tmp_path / "data", regions), environ={})
    frames = [generate_for(config, region, rows=400) for region in regions]
    bad = frames[regions.index("hanoi")]
    bad.loc[:30, "pickup_distance_km"] = 900.0
    source = tmp_path / "bookings.csv"
    pd.concat(frames).to_csv(source, index=False)
    monkeypatch.setitem(airflow.env, "MODELYARD_CONFIG", str(tmp_path / "modelyard.yaml"))
    monkeypatch.setitem(airflow.env, "MODELYARD_SCALE__CHUNK_SIZE", "5")
    events_before = len(airflow.asset_events(PREFIX, dag_id=DAG_ID))

    result = airflow.run_dag_test(DAG_ID, {"source": str(source)})

    assert result.returncode != 0
    assert "DagRun failed" in result.stdout
    pairs = config.pairs()
    assert len(pairs) == 12
    expected = chunks.split(pairs, 5, 32)
    assert [len(c) for c in expected] == [4, 4, 4]  # 12 pairs, at most 5 a chunk
    assert _chunk_labels(airflow) == [chunks.label(c) for c in expected]
    bad_pairs = {(family, "hanoi") for family in config.family_names}
    states = {(t, m): s for t, m, s in airflow.task_states(DAG_ID)}
    for index, chunk in enumerate(expected):
        want = "failed" if bad_pairs & set(chunk) else "success"
        assert states[("build_snapshots", index)] == want, (index, chunk, states)
    assert states[("publish_snapshots", -1)] == "success"
    for family, region in pairs:
        bad_line = f"FAILED | region '{region}': column 'pickup_distance_km' has 31 values outside [0, 200]"
        verdict = bad_line if (family, region) in bad_pairs else "published"
        assert f"{family}/{region}: {verdict}" in result.stdout, f"no log line for {family}/{region}"
    assert "1 of 4 pairs failed" in result.stdout  # a failing chunk names only its own failed pair
    assert "2 of 4 pairs failed" not in result.stdout

    new = airflow.asset_events(PREFIX, dag_id=DAG_ID)[events_before:]
    assert sorted(e.uri for e in new) == sorted(features_uri(f, r) for f, r in pairs if (f, r) not in bad_pairs)
    assert {(e.source_task_id, e.source_run_id, e.source_map_index) for e in new} == {
        ("publish_snapshots", new[0].source_run_id, -1)
    }
    for event in new:
        meta = latest_snapshot(config.storage.features_dir, event.extra["family"], event.extra["region"])
        assert event.extra["digest"] == meta.digest
