"""The embedded stack's Airflow settings: the DAG-sync fix installed, re-parsing spaced with the pairs (ADR 0020)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from modelyard.core.config import load_config
from modelyard.deploy.devstack.stack import (
    LOCAL_SETTINGS,
    airflow_environment,
    dag_reparse_seconds,
    prepare_airflow_home,
    stack_settings,
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
