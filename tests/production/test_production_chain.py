"""data -> training -> promotion -> deploy on Airflow's CeleryExecutor, two workers that share no disk.

Airflow's metadata (and Celery's results) are in PostgreSQL, the broker is Redis, MLflow runs
on PostgreSQL with its artifacts in S3, and ``storage.root`` is ``s3://``. Each worker has its
own ``AIRFLOW_HOME`` and ``storage.local``: a task that wrote to a local disk and a later task
on the other worker that read it would fail here. The serving process (started by whichever
worker ran the deploy) loads its models through MLflow.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cluster
import pytest

from modelyard.core.config import Config, load_config
from modelyard.deploy.devstack.stack import CHAIN_DAG_IDS, DAG_IDS, AirflowApi
from modelyard.deploy.rollout.mlflow_server import free_port
from modelyard.deploy.rollout.processes import ManagedProcess
from modelyard.promotion.status import collect_status

pytestmark = pytest.mark.timeout(2400)
CHAIN_TIMEOUT = 1500


@dataclass
class Stack:
    config: Config
    airflow: cluster.Airflow
    api: AirflowApi
    serving_url: str
    root: Path


@pytest.fixture(scope="module")
def stack(
    tier_dir: Path, s3: cluster.S3, databases: dict[str, str], mlflow: cluster.Mlflow, logs: Path, unique: str
) -> Iterator[Stack]:
    root = tier_dir / "airflow"
    serving_port = free_port()
    config_file = cluster.write_config(tier_dir / "modelyard.yaml", s3, databases["mlflow"], mlflow.url, serving_port)
    env = {
        **cluster.s3_env(s3),
        "MODELYARD_CONFIG": str(config_file),
        "MLFLOW_TRACKING_URI": mlflow.url,
        "MLFLOW_REGISTRY_URI": mlflow.url,
        "AIRFLOW_CONN_MLFLOW_DEFAULT": mlflow.url,
        "MODELYARD_SERVE_ADMIN_TOKEN": secrets.token_urlsafe(24),  # a deployment secret, in every worker's env
    }
    # This process reads the bucket too (assertions), for this module only: under xdist the
    # next module on this worker must not find this scratch directory or endpoint.
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**cluster.s3_env(s3), "MODELYARD_STORAGE__LOCAL": str(tier_dir / "test-scratch")}.items():
            if name not in os.environ:
                patch.setenv(name, value)
        config = load_config(config_file)
        airflow = cluster.start_airflow(root, databases["airflow"], env, logs)
        try:
            # A generous read timeout: on a loaded 2-core box one api-server worker answers slowly.
            api = AirflowApi(airflow.url, timeout=180)
            yield Stack(config, airflow, api, f"http://127.0.0.1:{serving_port}", root)
        finally:
            for home in airflow.worker_homes.values():
                ManagedProcess("serving", home / "scratch" / "run").stop()
            airflow.stop()
            cluster.delete_redis_keys(airflow.queue)
            cluster.remove_tree(root)


def run_chain(stack: Stack, note: str) -> object:
    from rich.console import Console

    from modelyard.deploy.devstack.chain import trigger_chain
    from modelyard.deploy.devstack.progress import follow_chain

    stack.api.wait_for_dags(timeout=600)
    for dag_id in DAG_IDS:
        stack.api.unpause(dag_id)
    output = io.StringIO()
    since = trigger_chain(stack.api, conf={"force": True} if note != "first" else None, note=note)
    try:
        return follow_chain(stack.api, since, Console(file=output, width=140), timeout=CHAIN_TIMEOUT)
    finally:
        cluster.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        (cluster.RESULTS_DIR / f"chain-{note}.txt").write_text(output.getvalue())


@pytest.fixture(scope="module")
def chain(stack: Stack) -> object:
    return run_chain(stack, "first")


def test_the_chain_runs_green_on_celery(stack: Stack, chain: object) -> None:
    state = chain
    for dag_id in CHAIN_DAG_IDS:
        runs = state.runs.get(dag_id, [])  # type: ignore[attr-defined]
        assert runs, f"no run of {dag_id}"
        assert {run["state"] for run in runs} == {"success"}, [(r["dag_run_id"], r["state"]) for r in runs]


def test_both_workers_ran_tasks_and_kept_nothing_shared(stack: Stack, chain: object) -> None:
    for name, process in stack.airflow.processes.items():
        if name.startswith("worker"):
            assert "execute_workload" in process.log.read_text(errors="replace") or "Executing workload" in (
                process.log.read_text(errors="replace")
            ), f"{name} ran no task:\n{process.tail()}"
    for home in stack.airflow.worker_homes.values():
        assert not (home / "scratch" / "features").exists()  # snapshots went to S3, not to a worker's disk


def test_snapshots_and_model_artifacts_are_in_s3(stack: Stack, s3: cluster.S3, chain: object) -> None:
    keys = s3.list_keys()
    for family, region in stack.config.pairs():
        assert f"modelyard/features/{family}/{region}/LATEST" in keys
    assert any(key.startswith("mlflow-artifacts/") and key.endswith("/MLmodel") for key in keys)


def test_the_endpoint_serves_the_champions_loaded_through_mlflow(stack: Stack, chain: object) -> None:
    from modelyard.deploy.devstack.endpoint import serving_versions

    statuses = collect_status(stack.config, tracking_uri=stack.config.mlflow.tracking_uri)
    champions = {f"{s.family}/{s.region}": s.champion.version for s in statuses if s.champion}
    assert len(champions) == len(stack.config.pairs())
    assert serving_versions(stack.config, stack.serving_url) == champions


def test_housekeeping_prunes_the_object_store_and_keeps_what_the_registry_needs(
    stack: Stack, s3: cluster.S3, chain: object
) -> None:
    """Two newer snapshots of a pair on S3 and two unaliased versions; the housekeeping DAG, on a Celery worker,
    removes the untrained snapshot and the older extra version, and keeps what the live server's plan names."""
    from mlflow import MlflowClient

    from modelyard.pipeline import snapshots

    features = stack.config.storage.features_dir
    family, region = stack.config.pairs()[0]
    uri = stack.config.mlflow.tracking_uri
    client = MlflowClient(uri, uri)
    model = stack.config.mlflow.model_name(family, region)
    champion = client.get_model_version_by_alias(model, "champion")
    source = f"runs:/{champion.run_id}/model"  # registered twice more by hand (never served)
    extra = [client.create_model_version(model, source, run_id=champion.run_id).version for _ in range(2)]
    trained = snapshots.latest_snapshot(features, family, region)
    frame = snapshots.load_frame(features, trained)
    newer = []
    for cut in (10, 20):  # the same columns, fewer rows: a training that read one would still work
        meta, _ = snapshots.publish(
            features, frame.iloc[:-cut], family=family, region=region, target=trained.target,
            time_column="event_time", source=f"{trained.source} minus {cut}", validation=trained.validation,
        )  # fmt: skip
        newer.append(meta.digest)
    prefix = f"modelyard/features/{family}/{region}/"
    try:
        since = str(
            stack.api.trigger(
                "housekeeping", conf={"families": [family], "regions": [region], "snapshots": 1, "versions": 1}
            )["run_after"]
        )
        run = _wait_for(stack, "housekeeping", since)
        assert run["state"] == "success", run
        result = stack.api.xcom("housekeeping", str(run["dag_run_id"]), "prune")
        assert result["removed"] == 1, result
        keys = set(s3.list_keys(prefix))
        assert not {key for key in keys if newer[0] in key}  # its JSON and Parquet: neither newest nor trained on
        assert {f"{prefix}{trained.digest}.json", f"{prefix}{newer[1]}.json"} <= keys  # trained on; LATEST
        left = {v.version for v in client.search_model_versions(f"name = '{model}'")}
        assert extra[0] not in left, result  # unaliased, not the newest, in no plan
        assert {champion.version, extra[1]} <= left, result  # the champion the server's plan names; the newest
        assert result["versions_removed"] >= 1, result
    finally:
        snapshots.point_latest(features, family, region, trained.digest)  # later tests train on the chain's data
        for version in extra:
            with contextlib.suppress(Exception):
                client.delete_model_version(model, version)


def test_a_worker_killed_mid_training_publishes_nothing_half_and_a_retry_finishes(
    stack: Stack, s3: cluster.S3, chain: object
) -> None:
    """SIGKILL the worker (and its task processes) running a training task; the retry on the other finishes."""
    from mlflow import MlflowClient

    before = set(s3.list_keys("modelyard/features/"))
    since = str(stack.api.trigger("training", conf={"force": True}, note="kill")["run_after"])
    victim = _worker_running_training(stack, since)
    process = stack.airflow.processes.pop(victim)
    doomed = [*_children(process.popen.pid), process.popen]
    for each in doomed:
        each.kill()
    process.popen.wait()
    run = _wait_for(stack, "training", since)
    assert run["state"] == "success", run
    tries = [ti for ti in stack.api.task_instances("training", str(run["dag_run_id"])) if ti["task_id"] == "train"]
    assert max(int(ti["try_number"]) for ti in tries) >= 2  # the killed try was retried
    assert set(s3.list_keys("modelyard/features/")) == before  # training publishes no snapshot, and none half
    uri = stack.config.mlflow.tracking_uri
    client = MlflowClient(uri, uri)
    for status in collect_status(stack.config, tracking_uri=uri):
        assert status.challenger is not None
        version = client.get_model_version(
            stack.config.mlflow.model_name(status.family, status.region), status.challenger.version
        )
        assert client.get_run(version.run_id).info.status == "FINISHED"  # what the alias names is whole


def _children(pid: int) -> list[Any]:
    import psutil

    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def _worker_running_training(stack: Stack, since: str, timeout: float = 900) -> str:
    """The worker whose log shows it executing a running ``train`` task of the run after ``since``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in stack.api.dag_runs("training", since):
            running = [
                ti
                for ti in stack.api.task_instances("training", run["dag_run_id"])
                if ti["task_id"] == "train" and ti["state"] == "running"
            ]
            for name, process in stack.airflow.processes.items():
                lines = process.log.read_text(errors="replace").splitlines() if name.startswith("worker") else []
                mine = [line for line in lines if str(run["dag_run_id"]) in line and "task_id='train'" in line]
                if running and mine:
                    return name
        time.sleep(1)
    raise AssertionError("no worker was seen running a training task")


def _wait_for(stack: Stack, dag_id: str, since: str, timeout: float = 1200) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = stack.api.dag_runs(dag_id, since)
        if runs and runs[-1]["state"] in ("success", "failed"):
            return dict(runs[-1])
        time.sleep(3)
    raise AssertionError(f"{dag_id} did not finish in {timeout:.0f}s")
