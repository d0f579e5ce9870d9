"""The embedded stack's Airflow settings: the DAG-sync fix installed, re-parsing spaced with the pairs (ADR 0020)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from modelyard.core.config import load_config
from modelyard.deploy.devstack.stack import (
    BATCH_INPUT_ROWS,
    LOCAL_SETTINGS,
    airflow_environment,
    dag_reparse_seconds,
    prepare_airflow_home,
    stack_settings,
    write_batch_input,
)

REPO = Path(__file__).resolve().parents[4]


@pytest.mark.parametrize(("pairs", "seconds"), [(1, 30), (12, 30), (100, 30), (200, 60), (1000, 300)])
def test_airflow_reparses_unchanged_dag_files_less_often_as_the_pairs_grow(pairs: int, seconds: int) -> None:
    assert dag_reparse_seconds(pairs) == seconds


def test_the_demo_stack_keeps_airflows_default_reparse_interval_and_installs_the_sync_fix(tmp_path: Path) -> None:
    config = load_config(REPO / "modelyard.yaml", environ={})
    settings = dataclasses.replace(stack_settings(config, REPO / "modelyard.yaml", environ={}), root=tmp_path)

    env = airflow_environment(settings, base={})
    prepare_airflow_home(settings)

    assert len(config.pairs()) <= 100
    assert env["AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL"] == "30"
    local_settings = tmp_path / "airflow" / "config" / "airflow_local_settings.py"
    assert local_settings.read_text() == LOCAL_SETTINGS
    assert "from modelyard.plugins.airflow_fixes import install" in LOCAL_SETTINGS


def test_the_demo_stack_gives_batch_scoring_a_generated_table_of_each_region(tmp_path: Path) -> None:
    environ = {"MODELYARD_STORAGE__ROOT": str(tmp_path / "data")}
    config = load_config(REPO / "modelyard.yaml", environ=environ)
    settings = stack_settings(config, REPO / "modelyard.yaml", environ={}, batch_input=True)
    settings = dataclasses.replace(settings, root=tmp_path / "stack")  # its Airflow home (a secret) out of the repo
    template = str(tmp_path / "data" / "batch-input" / "{region}.csv")
    assert settings.batch_input == template
    assert airflow_environment(settings, base={})["MODELYARD_BATCH_INPUT"] == template

    write_batch_input(config, template)

    for region in config.region_names:
        table = pd.read_csv(template.replace("{region}", region))
        assert len(table) == BATCH_INPUT_ROWS
        assert set(table["region"]) == {region}
        assert "area_demand_index" not in table.columns  # raw rows: batch scoring computes the aggregate
    first = tmp_path / "data" / "batch-input" / f"{config.region_names[0]}.csv"
    first.write_text("kept\n")
    write_batch_input(config, template)
    assert first.read_text() == "kept\n"  # a table already there (a team's edit) is kept


def test_a_named_batch_input_a_teams_own_data_or_a_benchmark_get_no_generated_table(tmp_path: Path) -> None:
    config = load_config(REPO / "modelyard.yaml", environ={})
    path = REPO / "modelyard.yaml"
    named = stack_settings(config, path, environ={"MODELYARD_BATCH_INPUT": "/data/x.csv"}, batch_input=True)
    named = dataclasses.replace(named, root=tmp_path)  # its Airflow home (a secret) out of the repo
    assert named.batch_input is None
    assert "MODELYARD_BATCH_INPUT" not in airflow_environment(named, base={})
    assert airflow_environment(named, base={"MODELYARD_BATCH_INPUT": "/data/x.csv"})["MODELYARD_BATCH_INPUT"] == (
        "/data/x.csv"
    )
    assert stack_settings(config, path, environ={}).batch_input is None  # a benchmark's stack
    own = config.model_copy(
        update={
            "datasets": [
                d.model_copy(update={"source": d.source.model_copy(update={"kind": "file", "path": "x.csv"})})
                for d in config.datasets
            ]
        }
    )
    assert stack_settings(own, path, environ={}, batch_input=True).batch_input is None
