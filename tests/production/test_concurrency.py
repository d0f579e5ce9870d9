"""Storage, registration and promotion on the production stack: S3, MLflow on PostgreSQL, the advisory lock.

SQLite serialises writers, so the concurrency tests of the other tiers prove less than they
seem to; here MLflow's registry is PostgreSQL (concurrent writers for real), the snapshots
and artifacts are in S3, and promotions run in separate processes, each with its own scratch
folder, as on separate hosts: the only thing they share is PostgreSQL.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import cluster
import pytest

from modelyard.core.config import Config, load_config
from modelyard.core.contracts.registry import CHAMPION_ALIAS, PREVIOUS_ALIAS
from modelyard.pipeline.build import build_all
from modelyard.promotion import locks
from modelyard.promotion.aliases import aliases, open_client, verify_aliases
from modelyard.promotion.decide import promote_version
from modelyard.promotion.record import history
from modelyard.training.train import TrainResult, train_pair

FAMILY, REGION = cluster.FAMILY, "jakarta"
# This module's storage root in the session's bucket: the chain module's data stage must find none of its snapshots.
PREFIX = "concurrency"

PROMOTER = """
import random, sys
from modelyard.core.config import load_config
from modelyard.promotion.aliases import open_client
from modelyard.promotion.decide import promote_version, rollback
from modelyard.promotion.decision import PromotionError
config = load_config(sys.argv[1])
client = open_client(config)
rng = random.Random(int(sys.argv[2]))
versions = sys.argv[3].split(",")
for _ in range(4):
    if rng.random() < 0.3:
        try:
            rollback(client, config, "driver_acceptance", "jakarta", "host-" + sys.argv[2])
        except PromotionError:
            pass
    else:
        promote_version(client, config, "driver_acceptance", "jakarta", rng.choice(versions),
                        "race", "host-" + sys.argv[2])
print("done", flush=True)
"""

HOLDER = """
import sys, time
from modelyard.promotion import locks
with locks.advisory_lock(sys.argv[1], sys.argv[2], 10):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory, s3: cluster.S3, databases: dict[str, str]) -> Path:
    folder = tmp_path_factory.mktemp("prod-concurrency")
    # The mlflow URL is set per test (MODELYARD_MLFLOW__TRACKING_URI) so this file needs no server.
    return cluster.write_config(
        folder / "modelyard.yaml", s3, databases["mlflow"], "http://127.0.0.1:1", 1, prefix=PREFIX
    )


@pytest.fixture
def config(config_file: Path, mlflow_env: cluster.Mlflow, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Config:
    monkeypatch.setenv("MODELYARD_MLFLOW__TRACKING_URI", mlflow_env.url)
    monkeypatch.setenv("MODELYARD_MLFLOW__MODEL_NAME_TEMPLATE", f"prod-{uuid.uuid4().hex[:6]}-{{family}}-{{region}}")
    monkeypatch.setenv("MODELYARD_STORAGE__LOCAL", str(tmp_path / "scratch"))
    return load_config(config_file)


@pytest.fixture
def built(config: Config) -> Config:
    results = build_all(config, regions=[REGION])
    assert {r.status for r in results} <= {"published", "unchanged"}, [(r.region, r.reason) for r in results]
    return config


def test_snapshots_land_in_s3_and_a_rerun_writes_nothing(config: Config, s3: cluster.S3) -> None:
    first = build_all(config, regions=list(cluster.REGIONS))
    assert {r.status for r in first} <= {"published", "unchanged"}, [(r.region, r.reason) for r in first]
    client = s3.client()
    prefix = f"{PREFIX}/features/"
    before = {key: client.head_object(Bucket=s3.bucket, Key=key)["ETag"] for key in s3.list_keys(prefix)}
    for result in first:
        folder = f"{prefix}{result.family}/{result.region}/"
        assert {f"{folder}{result.digest}.parquet", f"{folder}{result.digest}.json", f"{folder}LATEST"} <= set(before)
    again = build_all(config, regions=list(cluster.REGIONS))
    assert [r.status for r in again] == ["unchanged"] * len(first)
    after = {key: client.head_object(Bucket=s3.bucket, Key=key)["ETag"] for key in s3.list_keys(prefix)}
    assert after == before
    assert not [key for key in after if ".tmp" in key]  # no temporary key left behind


def test_concurrent_trainings_on_postgresql_lose_no_versions(built: Config, s3: cluster.S3) -> None:
    from mlflow import MlflowClient

    uri = built.mlflow.tracking_uri
    client = MlflowClient(uri, uri)
    results: list[TrainResult] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(train_pair(built, FAMILY, REGION, tracking_uri=uri, force=True))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors
    name = built.mlflow.model_name(FAMILY, REGION)
    registered = sorted((v.version for v in client.search_model_versions(f"name = '{name}'")), key=int)
    assert sorted((r.version for r in results), key=int) == registered
    assert len(set(registered)) == 3
    for result in results:
        assert client.get_model_version(name, result.version).tags["run_id"] == result.run_id
    assert any(key.endswith("/MLmodel") for key in s3.list_keys("mlflow-artifacts/"))  # the model files are in S3


def test_promotions_from_two_hosts_never_interleave(config: Config, config_file: Path, tmp_path: Path) -> None:
    import mlflow

    client = open_client(config)
    name = config.mlflow.model_name(FAMILY, REGION)
    with mlflow.start_run():
        from sklearn.linear_model import LogisticRegression

        model = mlflow.sklearn.log_model(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), name="model")
    versions = [str(mlflow.register_model(model.model_uri, name).version) for _ in range(4)]
    promote_version(client, config, FAMILY, REGION, versions[0], "start", "test")
    seen: list[tuple[str | None, str | None]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            current = aliases(client, name)
            seen.append((current.get(CHAMPION_ALIAS), current.get(PREVIOUS_ALIAS)))

    watcher = threading.Thread(target=watch)
    watcher.start()
    hosts = []
    for seed in range(3):
        scratch = tmp_path / f"host{seed}"
        env = {**os.environ, "MODELYARD_STORAGE__LOCAL": str(scratch), "PYTHONPATH": str(cluster.REPO)}
        command = [sys.executable, "-c", PROMOTER, str(config_file), str(seed), ",".join(versions)]
        hosts.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [host.communicate(timeout=600) for host in hosts]
    done.set()
    watcher.join()
    assert [host.returncode for host in hosts] == [0, 0, 0], [err[-2000:] for _, err in outputs]
    verify_aliases(client, name)
    assert len(seen) > 5
    assert not [(c, p) for c, p in seen if (c is not None and c == p) or (p is not None and c is None)]
    moves = [e for e in history(client, name) if e["champion_before"] != e["champion_after"]]
    assert len(moves) >= 3
    for before, after in itertools.pairwise(moves):
        assert after["champion_before"] == before["champion_after"], (before, after)


@pytest.fixture
def holder(databases: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": str(cluster.REPO)}
    url = cluster.pg_url(databases["mlflow"])
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, "modelyard.promotion:model-a"], stdout=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "held"
    yield process
    process.kill()
    process.wait()


def test_the_advisory_lock_excludes_per_model_and_dies_with_its_holder(
    databases: dict[str, str], holder: subprocess.Popen[str]
) -> None:
    url = cluster.pg_url(databases["mlflow"])
    with (
        pytest.raises(locks.LockTimeoutError, match=r"another promotion has held the advisory lock .*held by backend"),
        locks.advisory_lock(url, "modelyard.promotion:model-a", timeout=1.0),
    ):
        pass
    with locks.advisory_lock(url, "modelyard.promotion:model-b", timeout=1.0) as where:
        assert "model-b" in where  # a different model does not wait
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with locks.advisory_lock(url, "modelyard.promotion:model-a", timeout=30.0):
        pass  # PostgreSQL dropped the dead session's lock


def test_an_unreachable_lock_database_is_named() -> None:
    url = f"postgresql://postgres@127.0.0.1:{cluster.free_port()}/nowhere"
    with (
        pytest.raises(
            locks.LockUnavailableError, match=r"cannot connect to postgresql://postgres@127.0.0.1:\d+/nowhere"
        ),
        locks.advisory_lock(url, "x", timeout=1.0),
    ):
        pass


def test_promotion_lock_follows_storage_lock_url(config: Config) -> None:
    key = f"m-{random.randrange(10**6)}"
    with locks.promotion_lock(config.storage, key, timeout=5) as where:
        assert where.startswith(f"advisory lock {locks.advisory_key('modelyard.promotion:' + key)}")
