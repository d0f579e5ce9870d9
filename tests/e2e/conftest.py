"""The whole chain on the real stack: ``airflow standalone`` (scheduler, dag-processor,
triggerer, api-server) and ``mlflow server`` in a temporary home, started with the same
code as ``make demo`` (``deploy.stack``), on free ports, with a small config (2 regions x
2 families, few rows) so the chain runs in a few minutes.

The ``chain`` fixture triggers ``data_processing`` through the REST API and follows the
asset-driven chain to the end, once per session; the tests assert on what it left behind.
Whatever the outcome, the services are stopped and their logs copied to ``test-results/``.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator

import pytest
from e2e_stack import CHAIN_TIMEOUT, RESULTS, Chain, write_e2e_config

from modelyard.core.config import Config, load_config
from modelyard.deploy.devstack.stack import AirflowApi, StackSettings, down, stack_settings, up
from modelyard.deploy.rollout.mlflow_server import free_port


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, StackSettings]]:
    """MLflow and Airflow running on free ports in a temporary home; stopped (and logs kept) at the end."""
    root = tmp_path_factory.mktemp("e2e")
    config_path = write_e2e_config(root / "modelyard.yaml", root / "data")
    config = load_config(config_path, environ={})
    ports = {name: str(free_port()) for name in ("AIRFLOW_PORT", "MLFLOW_PORT", "SERVING_PORT")}
    settings = stack_settings(config, config_path, ports, batch_input=True)
    try:
        up(settings, timeout=300, config=config)
        yield config, settings
    finally:
        _stop(settings)


def _stop(settings: StackSettings) -> None:
    """Stop the stack and keep its logs; a second call finds nothing running and copies the same logs."""
    down(settings)
    _keep_logs(settings)


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the e2e stack after the last test that reads it, not when the session ends: on an xdist
    worker the session goes on with other files, and an idle ``airflow standalone`` still parses DAGs
    and heartbeats on a two-core machine (the files that read it are handed out as one unit, first)."""
    started = getattr(item, "funcargs", {}).get("stack")  # None: this test did not get that far
    if started is not None and (nextitem is None or "stack" not in getattr(nextitem, "fixturenames", ())):
        _config, settings = started
        _stop(settings)


def _keep_logs(settings: StackSettings) -> None:
    target = RESULTS / "e2e-logs"
    target.mkdir(parents=True, exist_ok=True)
    for log in settings.run_dir.glob("*.log"):
        shutil.copy(log, target / log.name)
    task_logs = settings.airflow_home / "logs"
    if task_logs.is_dir():
        shutil.copytree(task_logs, target / "airflow-task-logs", dirs_exist_ok=True)


@pytest.fixture(scope="session")
def chain(stack: tuple[Config, StackSettings]) -> Chain:
    """Trigger ``data_processing`` through the REST API and follow the chain to its end (once)."""
    from rich.console import Console

    from modelyard.deploy.devstack.chain import trigger_chain
    from modelyard.deploy.devstack.progress import follow_chain

    config, settings = stack
    api = AirflowApi(settings.airflow_url, timeout=120)  # a loaded shared CI box answers slowly, not wrongly
    api.wait_for_dags()
    output = io.StringIO()
    console = Console(file=output, width=140, force_terminal=False)
    since = trigger_chain(api, note="e2e")
    try:
        state = follow_chain(api, since, console, timeout=CHAIN_TIMEOUT)
    finally:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "e2e-chain.txt").write_text(output.getvalue())
    return Chain(settings=settings, config=config, api=api, state=state, transcript=output.getvalue())
