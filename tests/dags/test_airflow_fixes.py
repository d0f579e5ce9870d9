"""Airflow's DAG sync reads a DAG's row once with the fix (``plugins/airflow_fixes.py``, ADR 0020).

A real Airflow: a migrated SQLite database, a DAG scheduled on 40 assets with three tags synced by
``airflow dags reserialize`` in an ``AIRFLOW_HOME`` whose local settings are the embedded stack's, then
``dag_sync_probe.py`` reads it back with Airflow's query and with the fix's, in a fresh process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from modelyard.deploy.devstack.stack import LOCAL_SETTINGS
from modelyard.plugins import airflow_fixes

REPO = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("dag_sync_probe.py")
ASSETS = 40
TAGS = ["modelyard", "probe", "sync"]

DAG_FILE = f"""
import datetime as dt

from airflow.sdk import Asset, AssetAny, dag, task


@dag(
    dag_id="many_assets",
    schedule=AssetAny(*(Asset(f"modelyard://probe/{{i}}") for i in range({ASSETS}))),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    tags={TAGS!r},
)
def many_assets():
    @task
    def noop():
        return None

    noop()


many_assets()
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("airflow-sync")
    dags = home / "dags"
    dags.mkdir()
    (dags / "many_assets.py").write_text(textwrap.dedent(DAG_FILE))
    (home / "config").mkdir()
    (home / "config" / "airflow_local_settings.py").write_text(LOCAL_SETTINGS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MODELYARD_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        PYTHONPATH=str(REPO),
    )
    airflow = str(Path(sys.executable).with_name("airflow"))
    for command in ([airflow, "db", "migrate"], [airflow, "dags", "reserialize"], [sys.executable, str(PROBE)]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    lines = [line for line in done.stdout.splitlines() if line.startswith("DAG-SYNC-PROBE ")]
    assert lines, f"probe printed no result:\n{done.stdout[-2000:]}"
    return dict(json.loads(lines[-1].split(" ", 1)[1]))


def test_the_stacks_local_settings_install_the_fix_in_every_airflow_process(probe: dict[str, Any]) -> None:
    assert probe["installed_by_local_settings"] is True


def test_airflow_reads_the_dag_row_once_per_tag_and_asset_and_the_fix_once(probe: dict[str, Any]) -> None:
    airflow, fixed = probe["airflow"], probe["fixed"]
    # The explosion the fix removes: the row, and its whole asset expression, once per tag x asset.
    assert airflow["dag_rows"] == len(TAGS) * ASSETS
    assert fixed["dag_rows"] == 1


def test_the_fix_loads_what_airflow_loads(probe: dict[str, Any]) -> None:
    airflow, fixed = probe["airflow"], probe["fixed"]
    assert {**fixed, "dag_rows": None} == {**airflow, "dag_rows": None}
    assert fixed["tags"] == sorted(TAGS)
    assert len(fixed["schedule_assets"]) == ASSETS


def test_an_airflow_that_ships_the_fix_is_left_as_it_is() -> None:
    class DagModelOperation:
        def find_orm_dags(self, *, session: Any) -> dict[str, Any]:
            return {}  # selectinload already: nothing to replace

    module = type(sys)("fixed_collection")
    module.DagModelOperation = DagModelOperation  # type: ignore[attr-defined]
    original = DagModelOperation.find_orm_dags
    assert airflow_fixes.patch(module) is False
    assert DagModelOperation.find_orm_dags is original
