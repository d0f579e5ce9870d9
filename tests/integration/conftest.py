"""Real Airflow for integration tests: a temporary AIRFLOW_HOME on SQLite, migrated once.

Use it from any DAG test::

    def test_my_dag(airflow: AirflowEnv) -> None:
        result = airflow.run_dag_test("my_dag", {"regions": ["jakarta"]})
        assert result.returncode == 0, result.stdout[-4000:]
        events = airflow.asset_events(uri_prefix="modelyard://features/")

``airflow.env`` is the environment every Airflow subprocess gets (AIRFLOW_HOME,
DAGS_FOLDER=<repo>/dags, MODELYARD_CONFIG pointing at a small test config whose
``storage.root`` lives in the session's temporary folder). ``airflow.config`` is that
config, loaded, for assertions on snapshots. Each run gets a unique logical date, so
several runs of the same DAG in one session never collide.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube_emulator import NAMESPACE, Cluster, EmulatedHelm, running_cluster

from modelyard.core.config import Config, load_config
from modelyard.deploy.rollout.helm_release import HelmReleases, make_command

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

# The test config: the demo config, shrunk. Two regions in different time zones keep
# every code path (festivals, per-region behaviour) while the runs stay short.
TEST_REGIONS = ("jakarta", "ho_chi_minh")
TEST_OVERRIDES: dict[str, Any] = {
    "data": {
        "synthetic": {"rows": 1500, "start": "2026-01-05", "days": 120},
        "min_rows": 200,
        "freshness_days": 3650,
    },
    "schedules": {"data_processing": None},
}


@dataclass(frozen=True)
class AssetEventRow:
    """One row of Airflow's ``asset_event`` table, joined with its asset's URI."""

    uri: str
    extra: dict[str, Any]
    source_dag_id: str | None
    source_task_id: str | None
    source_run_id: str | None
    source_map_index: int | None


@dataclass
class AirflowEnv:
    """A migrated, temporary Airflow installation and the modelyard config it runs with."""

    home: Path
    config_path: Path
    config: Config
    env: dict[str, str]
    _dates: Iterator[int] = field(default_factory=lambda: itertools.count())

    @property
    def db_path(self) -> Path:
        return self.home / "airflow.db"

    def airflow(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run ``airflow <args>`` with this environment; stdout and stderr are merged."""
        return subprocess.run(
            [str(VENV_BIN / "airflow"), *args],
            env=self.env,
            cwd=self.home,
            capture_output=False,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )

    def run_dag_test(
        self, dag_id: str, conf: dict[str, Any] | None = None, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        """``airflow dags test <dag_id> <unique logical date> --conf <json>``."""
        logical_date = dt.datetime(2026, 6, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=next(self._dates))
        return self.airflow(
            "dags", "test", dag_id, logical_date.isoformat(), "--conf", json.dumps(conf or {}), timeout=timeout
        )

    def asset_events(self, uri_prefix: str = "", dag_id: str | None = None) -> list[AssetEventRow]:
        """Asset events recorded in the metadata DB, oldest first, optionally filtered."""
        query = (
            "SELECT a.uri, e.extra, e.source_dag_id, e.source_task_id, e.source_run_id, e.source_map_index "
            "FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.uri LIKE ? "
        )
        params: list[Any] = [uri_prefix.replace("%", r"\%") + "%"]
        if dag_id is not None:
            query += "AND e.source_dag_id = ? "
            params.append(dag_id)
        with sqlite3.connect(self.db_path) as conn:
            rows = conn.execute(query + "ORDER BY e.id", params).fetchall()
        return [
            AssetEventRow(uri, json.loads(extra) if isinstance(extra, str) else (extra or {}), *rest)
            for uri, extra, *rest in rows
        ]

    def task_states(self, dag_id: str) -> list[tuple[str, int, str | None]]:
        """(task_id, map_index, state) of every task instance of ``dag_id``'s latest run."""
        query = (
            "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = ? AND run_id = "
            "(SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1) ORDER BY task_id, map_index"
        )
        with sqlite3.connect(self.db_path) as conn:
            return [(t, int(m), s) for t, m, s in conn.execute(query, (dag_id, dag_id)).fetchall()]


def write_test_config(path: Path, storage_root: Path, regions: tuple[str, ...] = TEST_REGIONS) -> Path:
    """The demo config with few rows, few regions and ``storage.root`` at ``storage_root``."""
    raw = yaml.safe_load((REPO / "modelyard.yaml").read_text())
    raw["regions"] = [r for r in raw["regions"] if r["name"] in regions]
    releases = raw.get("deploy", {}).get("kubernetes", {}).get("releases", {})
    for name, members in list(releases.items()):
        kept = [m for m in members if m in regions]
        if kept:
            releases[name] = kept
        else:
            del releases[name]
    for key, value in TEST_OVERRIDES.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    raw["storage"] = {"root": str(storage_root)}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def airflow_environ(home: Path, config_path: Path) -> dict[str, str]:
    """The environment of every Airflow subprocess: no MODELYARD_* overrides leak in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "AIRFLOW__", "AIRFLOW_"))}
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "120",
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "MODELYARD_CONFIG": str(config_path),
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(REPO),
        }
    )
    return env


@pytest.fixture(scope="session")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> AirflowEnv:
    """A temporary AIRFLOW_HOME on SQLite, migrated once per session, with a small test config."""
    root = tmp_path_factory.mktemp("airflow")
    home = root / "airflow-home"
    home.mkdir()
    config_path = write_test_config(root / "modelyard.yaml", root / "modelyard-data")
    env = AirflowEnv(home=home, config_path=config_path, config=load_config(config_path, environ={}), env={})
    env.env = airflow_environ(home, config_path)
    migrated = env.airflow("db", "migrate", timeout=600)
    if migrated.returncode != 0:
        pytest.fail(f"`airflow db migrate` failed:\n{migrated.stdout[-4000:]}")
    return env


# ------------------------------------------------------------------------------ the Kubernetes emulator


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """kmock's Kubernetes API emulator with a simulated controller, over HTTP (``kube_emulator.py``)."""
    with running_cluster() as running:
        yield running


@pytest.fixture
def helm_releases() -> HelmReleases:
    return HelmReleases(make_command(), NAMESPACE)


@pytest.fixture
def emulated_helm(cluster: Cluster, helm_releases: HelmReleases) -> EmulatedHelm:
    """Helm's cluster side for the emulator: the real ``helm template``, objects applied over HTTP."""
    return EmulatedHelm(cluster, helm_releases)
