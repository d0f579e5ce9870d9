"""Airflow's queries that grow with a DAG's assets, with and without ``plugins/airflow_fixes.py`` (ADR 0020).

A real Airflow: a migrated SQLite database, a DAG scheduled on 40 assets with three tags synced by
``airflow dags reserialize`` in an ``AIRFLOW_HOME`` whose local settings are the embedded stack's, then
``dag_sync_probe.py`` reads it back with Airflow's query and with the fix's, in a fresh process; and
``run_context_probe.py`` records a run triggered by an event on each asset and builds the answer a
task's start gets (``ti_run``) with Airflow's load and the fix's.
"""

from __future__ import annotations

import importlib.util
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
RUN_PROBE = Path(__file__).with_name("run_context_probe.py")
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
def probes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
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
    commands = [
        [airflow, "db", "migrate"], [airflow, "dags", "reserialize"],
        [sys.executable, str(PROBE)], [sys.executable, str(RUN_PROBE)],
    ]  # fmt: skip
    printed = ""
    for command in commands:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        printed += done.stdout
    results = {}
    for marker in ("DAG-SYNC-PROBE", "RUN-CONTEXT-PROBE"):
        lines = [line for line in printed.splitlines() if line.startswith(f"{marker} ")]
        assert lines, f"{marker} printed no result:\n{printed[-2000:]}"
        results[marker] = dict(json.loads(lines[-1].split(" ", 1)[1]))
    return results


@pytest.fixture(scope="module")
def probe(probes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return probes["DAG-SYNC-PROBE"]


@pytest.fixture(scope="module")
def run_probe(probes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return probes["RUN-CONTEXT-PROBE"]


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


def test_the_stacks_local_settings_install_the_task_start_fix_too(run_probe: dict[str, Any]) -> None:
    assert run_probe["installed_by_local_settings"] is True


def test_a_task_start_reads_each_triggering_event_again_without_the_fix_and_not_with_it(
    run_probe: dict[str, Any],
) -> None:
    airflow, fixed, events = run_probe["airflow"], run_probe["fixed"], run_probe["consumed_events"]
    assert events == ASSETS
    assert airflow["selects"] >= 2 * ASSETS  # each event's asset and aliases, one SELECT each
    assert fixed["selects"] <= 3  # the run with its events and assets, then the aliases of all


def test_the_task_start_fix_answers_what_airflow_answers(run_probe: dict[str, Any]) -> None:
    airflow, fixed = run_probe["airflow"], run_probe["fixed"]
    assert fixed["events"] == airflow["events"]
    assert len(fixed["events"]) == ASSETS
    assert sum(1 for event in fixed["events"] if event["source_aliases"]) == 3
    assert {event["asset"]["uri"] for event in fixed["events"]} == {f"modelyard://probe/{i}" for i in range(ASSETS)}


def test_an_airflow_whose_task_start_loads_the_assets_is_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "fixed_task_instances.py"
    path.write_text(
        "joinedload = object()\n\n\n"
        "def ti_run():\n"
        "    return joinedload(DR.consumed_asset_events).options(joinedload(AssetEvent.asset))\n"
    )
    spec = importlib.util.spec_from_file_location("fixed_task_instances", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    original = module.joinedload
    assert airflow_fixes.patch_run_context(module) is False
    assert module.joinedload is original
