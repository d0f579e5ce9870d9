"""The production-like stack of this tier, started from the real programs on loopback.

* S3: ``moto`` in server mode (an S3 API over HTTP), one bucket per session;
* PostgreSQL (the machine's, 127.0.0.1:5432): one database for Airflow's metadata and
  Celery's results, one for MLflow's backend store (also the promotion lock's), each with a
  unique name, dropped at the end;
* MLflow: ``mlflow server --backend-store-uri postgresql+psycopg://... --artifacts-destination s3://...``;
* Airflow: api-server, scheduler, dag-processor and two ``airflow celery worker`` processes on a
  Redis broker (keys under a unique prefix, deleted at the end). Each worker has its own
  ``AIRFLOW_HOME`` and ``storage.local`` scratch folder; nothing but S3, PostgreSQL and Redis
  is common to them, exactly as on two hosts.

The same settings are written down for teams in docs/production.md.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from modelyard.deploy.rollout.mlflow_server import free_port, stop_process_group

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
RESULTS_DIR = REPO / "test-results" / "production"
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
S3_KEY = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
REGIONS = ("jakarta", "ho_chi_minh")
FAMILY = "driver_acceptance"
SIMPLE_AUTH = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
MODULES = ("s3fs", "moto", "boto3", "psycopg", "celery", "redis", "airflow.providers.celery")


class ClusterError(RuntimeError):
    """A service of the tier did not start; the message carries its log tail."""


def missing_services() -> list[str]:
    """What this tier needs and the machine lacks (empty: run)."""
    import importlib.util

    missing = [f"python module {m}" for m in MODULES if _find(importlib.util, m) is None]
    for name, host, port in (("PostgreSQL", PG_HOST, PG_PORT), ("Redis", REDIS_HOST, REDIS_PORT)):
        try:
            socket.create_connection((host, port), timeout=2).close()
        except OSError:
            missing.append(f"{name} on {host}:{port}")
    return missing


def _find(util: Any, module: str) -> Any:
    try:
        return util.find_spec(module)
    except ModuleNotFoundError:
        return None


@dataclass
class Process:
    """One started program, its log file, stopped with its children."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        stop_process_group(self.popen, timeout=20)


def start(name: str, command: list[str], env: Mapping[str, str], logs: Path, cwd: Path | None = None) -> Process:
    """Start ``command`` in its own session, output to ``logs/<name>.log``."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with log.open("ab") as handle:
        popen = subprocess.Popen(
            command, env=dict(env), cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Process(name, popen, log)


def wait_until(what: str, check: Callable[[], bool], process: Process | None, timeout: float) -> None:
    """Poll ``check`` until it holds; fail with the process's log when it dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.popen.poll() is not None:
            raise ClusterError(f"{process.name} exited ({process.popen.returncode}):\n{process.tail()}")
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(1)
    raise ClusterError(f"{what} not ready after {timeout:.0f}s:\n{process.tail() if process else ''}")


# -- PostgreSQL and Redis


def pg_url(database: str, driver: str = "postgresql") -> str:
    return f"{driver}://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def create_database(name: str) -> None:
    import psycopg

    with psycopg.connect(pg_url("postgres"), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(pg_url("postgres"), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_exists(name: str) -> bool:
    import psycopg

    with psycopg.connect(pg_url("postgres"), autocommit=True) as connection:
        return connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def delete_redis_keys(prefix: str) -> int:
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    keys = list(client.scan_iter(match=f"{prefix}*", count=500))
    if keys:
        client.delete(*keys)
    client.close()
    return len(keys)


# -- S3 (moto) and MLflow


@dataclass
class S3:
    endpoint: str
    bucket: str
    process: Process

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, **_boto_keys())

    def list_keys(self, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _boto_keys() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_KEY["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_KEY["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_KEY["AWS_DEFAULT_REGION"],
    }


def start_s3(logs: Path) -> S3:
    port = free_port()
    env = {**os.environ, **S3_KEY}
    process = start("moto-s3", [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], env, logs)
    endpoint = f"http://127.0.0.1:{port}"
    wait_until("moto S3 server", lambda: httpx.get(endpoint, timeout=2).status_code < 500, process, 120)
    s3 = S3(endpoint, f"modelyard-{uuid.uuid4().hex[:8]}", process)
    s3.client().create_bucket(Bucket=s3.bucket)
    return s3


def s3_env(s3: S3) -> dict[str, str]:
    """What every process that touches the bucket gets: the endpoint and the (fake) keys, from the environment."""
    return {**S3_KEY, "MLFLOW_S3_ENDPOINT_URL": s3.endpoint, "MODELYARD_TEST_S3_ENDPOINT": s3.endpoint}


@dataclass
class Mlflow:
    url: str
    database: str
    process: Process


def start_mlflow(s3: S3, database: str, logs: Path) -> Mlflow:
    """``mlflow server`` on PostgreSQL with artifacts proxied to the bucket."""
    port = free_port()
    command = [
        str(VENV_BIN / "mlflow"), "server",
        "--backend-store-uri", pg_url(database, "postgresql+psycopg"),
        "--artifacts-destination", f"s3://{s3.bucket}/mlflow-artifacts",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    process = start("mlflow", command, {**os.environ, **s3_env(s3)}, logs)
    url = f"http://127.0.0.1:{port}"
    wait_until("mlflow server", lambda: httpx.get(f"{url}/health", timeout=3).status_code == 200, process, 600)
    return Mlflow(url, database, process)


# -- the modelyard config of the tier


def write_config(
    path: Path, s3: S3, lock_database: str, mlflow_url: str, serving_port: int, prefix: str = "modelyard"
) -> Path:
    """The demo config shrunk to 2 regions x 1 family, few rows, storage in the bucket, lock in PostgreSQL.

    ``prefix`` is the storage root inside the bucket: tests that share the session's bucket use
    their own, so one test's snapshots never make another's data stage see "unchanged".
    """
    raw = yaml.safe_load((REPO / "modelyard.yaml").read_text())
    raw["regions"] = [r for r in raw["regions"] if r["name"] in REGIONS]
    raw["families"] = [f for f in raw["families"] if f["name"] == FAMILY]
    for family in raw["families"]:
        family["params"] = {**family["params"], "n_estimators": 40}
    kubernetes = raw.setdefault("deploy", {}).setdefault("kubernetes", {})
    releases = {name: [r for r in rs if r in REGIONS] for name, rs in kubernetes.get("releases", {}).items()}
    kubernetes["releases"] = {name: rs for name, rs in releases.items() if rs}
    raw["deploy"].setdefault("local", {})["port"] = serving_port
    raw["data"]["synthetic"] = {"rows": 1200, "start": "2026-01-05", "days": 100}
    raw["data"]["min_rows"] = 200
    raw["schedules"] = {"data_processing": None}
    defaults = raw["gates"]["defaults"]
    defaults["latency_calls"] = 30
    defaults["max_p99_latency_ms"] = 2000
    defaults["classification"]["absolute"] = [{"metric": "holdout_auc", "op": ">=", "threshold": 0.55}]
    # Small models on 1,200 rows may not beat their linear baseline: the chain is tested here, not the gate.
    defaults["classification"]["baseline"] = defaults["regression"]["baseline"] = []
    raw["mlflow"] = {"tracking_uri": mlflow_url, "model_name_template": raw.get("mlflow", {}).get(
        "model_name_template", "{family}-{region}")}  # fmt: skip
    raw["storage"] = {
        "root": f"s3://{s3.bucket}/{prefix}",
        "options": {"endpoint_url": "${MODELYARD_TEST_S3_ENDPOINT}"},  # the keys come from AWS_* variables
        "lock_url": pg_url(lock_database),
    }
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# -- Airflow on Celery


@dataclass
class Airflow:
    url: str
    database: str
    queue: str
    processes: dict[str, Process] = field(default_factory=dict)
    worker_homes: dict[str, Path] = field(default_factory=dict)

    def stop(self, names: list[str] | None = None) -> None:
        for name in names or list(self.processes)[::-1]:
            process = self.processes.get(name)
            if process is not None:
                process.stop()


def airflow_env(
    home: Path, url: str, database: str, queue: str, secret: str, base: Mapping[str, str]
) -> dict[str, str]:
    """Airflow's settings for Celery on PostgreSQL with a Redis broker (see docs/production.md)."""
    env = {k: v for k, v in base.items() if not k.startswith("AIRFLOW__")}
    db = pg_url(database, "postgresql+psycopg")
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")])),
            "OMP_NUM_THREADS": "1",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
            "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "120",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
            # Airflow's async engine would pick asyncpg for postgresql+psycopg; psycopg 3 does async itself.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": db,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{db}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": queue,
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "3600",
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
            # A worker that dies leaves its task "running": the scheduler fails it (and so retries it)
            # after this many seconds without a heartbeat (default 300).
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": url.rsplit(":", 1)[1],
            "AIRFLOW__API__BASE_URL": url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secret,
            "AIRFLOW__API__SECRET_KEY": secret,
            "NO_COLOR": "1",
        }
    )
    return env


def start_airflow(root: Path, database: str, modelyard_env: Mapping[str, str], logs: Path, workers: int = 2) -> Airflow:
    """Migrate the database, start api-server, scheduler, dag-processor and ``workers`` Celery workers."""
    import json
    import secrets

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    queue = f"modelyard-{uuid.uuid4().hex[:8]}"
    secret = secrets.token_hex(32)
    airflow = Airflow(url, database, queue)
    control = root / "control"
    control.mkdir(parents=True)
    (control / "passwords.json").write_text(json.dumps({"admin": "admin"}))
    base = {**os.environ, **modelyard_env}
    env = airflow_env(control, url, database, queue, secret, base)
    migrate = subprocess.run(
        [str(VENV_BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if migrate.returncode != 0:
        raise ClusterError(f"airflow db migrate failed:\n{migrate.stdout[-3000:]}\n{migrate.stderr[-3000:]}")
    for name in ("api-server", "scheduler", "dag-processor"):
        airflow.processes[name] = start(name, [str(VENV_BIN / "airflow"), name], env, logs)
    for index in range(1, workers + 1):
        add_worker(airflow, root, f"worker{index}", base, secret, logs)
    api = airflow.processes["api-server"]
    wait_until("airflow api-server", lambda: httpx.get(f"{url}/api/v2/monitor/health", timeout=3).is_success, api, 600)
    return airflow


def add_worker(airflow: Airflow, root: Path, name: str, base: Mapping[str, str], secret: str, logs: Path) -> Process:
    """One Celery worker with its own AIRFLOW_HOME and modelyard scratch folder (a host of its own)."""
    home = root / name
    scratch = home / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    env = airflow_env(home, airflow.url, airflow.database, airflow.queue, secret, base)
    env["MODELYARD_STORAGE__LOCAL"] = str(scratch)
    env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(free_port())
    command = [
        str(VENV_BIN / "airflow"), "celery", "worker", "--queues", airflow.queue, "--concurrency", "2",
        "--celery-hostname", f"{name}@{airflow.queue}", "--without-mingle", "--without-gossip",
    ]  # fmt: skip
    process = start(name, command, env, logs)
    airflow.processes[name] = process
    airflow.worker_homes[name] = home
    return process


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
