"""The DagBag parse of dags/ that the DAG tests share (one fresh-process parse per session)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
INSPECTOR = Path(__file__).with_name("dag_inspector.py")


@pytest.fixture(scope="session")
def dagbag(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What Airflow's DagBag found in dags/, parsed in a fresh process with the demo config."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MODELYARD_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        MODELYARD_CONFIG=str(REPO / "modelyard.yaml"),
        PYTHONPATH=str(REPO),
    )
    proc = subprocess.run(
        [sys.executable, str(INSPECTOR), str(DAGS)], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("DAG-INSPECTOR-JSON ")]
    crashed = f"DagBag parse crashed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, crashed
    assert lines, crashed
    return json.loads(lines[-1].split(" ", 1)[1])
