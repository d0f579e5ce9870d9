"""The prediction log's disk fills up under a real `modelyard serve` process, then space returns.

The log folder is a size-capped tmpfs (512 KB) that the test fills with a file, as a full
volume would be; requests keep answering 200, the lost samples are counted in
``modelyard_prediction_log_samples{outcome="dropped"}``, the server logs one warning (not one
per request), and once the file is removed the log writes again on its own.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.deploy.serving.plan import parse_plan
from modelyard.deploy.serving.sampling import WRITE_RETRY_SECONDS
from tests.bench.serving import ServerProcess, register_xgboost
from tests.integration.test_serving import N_FEATURES, RECORD

PREDICT = "/v1/predict/driver_acceptance/jakarta"
REFUSED = "prediction log cannot write to"
RESUMED = "prediction log writing again"


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A 512 KB tmpfs: a volume that fills up (mounting needs root, as on the CI runner)."""
    folder = tmp_path / "logs"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"a size-capped tmpfs cannot be mounted here (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(volume: Path) -> Path:
    """Write a file into ``volume`` until it refuses with ENOSPC; the file."""
    filler = volume / "filler"
    with filler.open("wb", buffering=0) as out:  # unbuffered: closing it writes nothing more
        while _one_more_page(out):
            pass
    return filler


def _one_more_page(out: Any) -> bool:
    try:
        out.write(b"\0" * 4096)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        return False
    return True


def dropped(server: ServerProcess) -> float:
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    prefix = 'modelyard_prediction_log_samples_total{outcome="dropped"}'
    line = next((x for x in metrics.splitlines() if x.startswith(prefix)), "")
    return float(line.split()[-1]) if line else 0.0


def predict(server: ServerProcess, request_id: str) -> httpx.Response:
    # Incompressible extras (kept, each cut to 256 characters): files fill the volume fast.
    junk = {f"note{i}": os.urandom(128).hex() for i in range(8)}
    return httpx.post(f"{server.url}{PREDICT}", json={**RECORD, **junk}, headers={"X-Request-Id": request_id})


def logged_ids(volume: Path) -> set[str]:
    ids = set()
    for path in volume.rglob("*.jsonl.gz"):
        with gzip.open(path, "rt") as lines:
            ids |= {json.loads(line).get("request_id") for line in lines}
    return ids


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout}s")


def test_a_full_log_disk_costs_samples_not_answers_and_writing_resumes(mlflow_server, small_volume, tmp_path):
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.url)
    uri = register_xgboost("faults-disk", n_features=N_FEATURES, n_trees=10, rows=300)
    plan = {
        "version": 1,
        "services": [
            {
                "family": "driver_acceptance",
                "region": "jakarta",
                "timezone": "Asia/Jakarta",
                "variants": [{"name": "champion", "model_uri": uri, "weight": 100}],
            }
        ],
    }
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(plan))
    env = {
        "MODELYARD_SERVE_LOG_DIR": str(small_volume),
        "MODELYARD_SERVE_SAMPLE_RATE": "1",
        "MODELYARD_SERVE_SAMPLE_ROTATE_MB": "0.004",  # a file per ~2 samples: writes reach the disk at once
        "MODELYARD_SERVE_SAMPLE_ROTATE_SECONDS": "1",
    }
    with ServerProcess.start(plan_path, mlflow_server.url, env=env) as server:
        server.wait_ready(timeout=120, digest=parse_plan(plan).digest())
        assert all(predict(server, f"before{n}").status_code == 200 for n in range(4))
        wait_for(lambda: {"before0", "before3"} <= logged_ids(small_volume), 30, "samples before the disk filled")

        filler = fill(small_volume)
        answers = [predict(server, f"full{n}").status_code for n in range(60)]
        assert set(answers) == {200}, answers
        wait_for(lambda: dropped(server) >= 50, 30, "the dropped samples counted in /metrics")
        log = server.log_path.read_text()
        assert log.count(REFUSED) == 1, server.log_tail(60)  # one warning for the outage, not one per request
        assert "No space left on device" in log
        assert RESUMED not in log

        filler.unlink()
        time.sleep(WRITE_RETRY_SECONDS)  # the writer pauses this long before trying the disk again
        n = 0

        def resumed() -> bool:
            nonlocal n
            n += 1
            assert predict(server, f"after{n}").status_code == 200
            return RESUMED in server.log_path.read_text()

        wait_for(resumed, 30, "the log writing again")
        lost = dropped(server)
        for m in range(4):
            assert predict(server, f"later{m}").status_code == 200
        wait_for(lambda: {"later0", "later3"} <= logged_ids(small_volume), 30, "samples after space returned")
        assert dropped(server) == lost  # nothing dropped once space is back
        assert not logged_ids(small_volume) & {f"full{n}" for n in range(60)}
        assert server.log_path.read_text().count(REFUSED) == 1
