"""The model cache folder removed under a real `modelyard serve` process while a plan change loads.

The registry is reached through a proxy that can hold the server's "which version is this"
request: the test holds it, removes the cache folder (``rm -rf``), and lets it go, so the load
lands in a folder that is gone, every time. The server must treat that as transient (retried like
a registry outage), keep answering from the plan it has loaded, say on ``/readyz`` what is wrong
without its paths, and serve the new plan once the retry succeeds.
"""

from __future__ import annotations

import json
import queue
import shutil
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from modelyard.deploy.rollout.mlflow_server import free_port
from modelyard.deploy.serving.plan import parse_plan
from tests.bench.serving import ServerProcess, register_xgboost
from tests.integration.test_serving import ADMIN, ADMIN_TOKEN, N_FEATURES, RECORD
from tests.integration.test_serving_faults import TcpProxy

PREDICT = "/v1/predict/driver_acceptance/jakarta"
RESOLVE = b"/model-versions/get?"  # the registry call that starts every load (not get-download-uri)


class HoldingProxy(TcpProxy):
    """A registry proxy that, while holding, stops each version lookup until the test hands out a pass."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        super().__init__(port, target)
        self.holding = False
        self.held: queue.Queue[None] = queue.Queue()  # one item per lookup that arrived while holding
        self._passes: queue.Queue[None] = queue.Queue()

    def let_one_through(self) -> None:
        self._passes.put(None)

    def release(self) -> None:
        self.holding = False
        for _ in range(8):
            self._passes.put(None)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:  # type: ignore[override]
        TcpProxy._pipe(_Held(source, self), sink)  # type: ignore[arg-type]

    def gate(self, data: bytes) -> bytes:
        if self.holding and RESOLVE in data:
            self.held.put(None)
            self._passes.get(timeout=120)
        return data


class _Held:
    """A socket whose received requests pass the proxy's gate first."""

    def __init__(self, sock: socket.socket, proxy: HoldingProxy) -> None:
        self.sock, self.proxy = sock, proxy

    def recv(self, size: int) -> bytes:
        return self.proxy.gate(self.sock.recv(size))


@pytest.fixture
def registry(mlflow_server) -> Iterator[HoldingProxy]:
    host, port = mlflow_server.url.removeprefix("http://").split(":")
    proxy = HoldingProxy(free_port(), (host, int(port)))
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.release()
        proxy.stop()


def plan_of(uri: str) -> dict[str, Any]:
    variant = {"name": "champion", "model_uri": uri, "weight": 100}
    service = {"family": "driver_acceptance", "region": "jakarta", "timezone": "Asia/Jakarta", "variants": [variant]}
    return {"version": 1, "services": [service]}


def readyz(server: ServerProcess) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{server.url}/readyz", timeout=10)
    return response.status_code, response.json()


def test_the_cache_removed_during_a_plan_change_is_retried_while_the_old_plan_serves(
    mlflow_server, registry, tmp_path, monkeypatch
):
    import mlflow

    monkeypatch.setenv("MODELYARD_SERVE_ADMIN_TOKEN", ADMIN_TOKEN)
    mlflow.set_tracking_uri(mlflow_server.url)
    v1 = register_xgboost("faults-cache", seed=0, n_features=N_FEATURES, n_trees=10, rows=300)
    v2 = register_xgboost("faults-cache", seed=1, n_features=N_FEATURES, n_trees=10, rows=300)
    old, new = plan_of(v1), plan_of(v2)
    plan_path, cache = tmp_path / "plan.json", tmp_path / "model-cache"
    plan_path.write_text(json.dumps(old))
    env = {"MODELYARD_SERVE_MODEL_CACHE": str(cache), "MODELYARD_SERVE_RETRY_MAX_SECONDS": "2"}
    with ServerProcess.start(plan_path, f"http://127.0.0.1:{registry.port}", env=env) as server:
        server.wait_ready(timeout=120, digest=parse_plan(old).digest())
        registry.holding = True
        put = httpx.put(f"{server.url}/admin/plan", headers=ADMIN, content=json.dumps(new), timeout=30)
        assert put.status_code == 202, put.text
        registry.held.get(timeout=60)  # the new plan's load is waiting for the registry ...
        shutil.rmtree(cache)  # ... and the folder it will download into is removed
        registry.let_one_through()
        registry.held.get(timeout=60)  # the retry's lookup: the first attempt failed and was not given up

        status, detail = readyz(server)
        assert status == 200, detail  # the old plan is loaded and serves
        retrying = detail["plan"]["retrying"]
        assert retrying["digest"] == parse_plan(new).digest(), detail
        assert retrying["error"] == (
            f"{v2}: the model cache (MODELYARD_SERVE_MODEL_CACHE) failed: "
            "its folder was removed while the model loaded; retrying"
        ), retrying
        assert detail["plan"]["last_rejected"] is None, detail
        assert str(cache) not in json.dumps(detail)  # no cache path on the public probe (it shows the plan file)
        for _ in range(5):
            answer = httpx.post(f"{server.url}{PREDICT}", json=RECORD, timeout=10)
            assert answer.status_code == 200, answer.text
            assert answer.json()["version"] == "1"

        registry.release()
        server.wait_ready(timeout=60, digest=parse_plan(new).digest())
        answer = httpx.post(f"{server.url}{PREDICT}", json=RECORD, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == "2"
        assert cache.is_dir()  # created again for the download
        assert "model cache fault" in server.log_path.read_text()  # the detail (with the path) is in the log


def test_a_served_versions_files_removed_are_not_needed_to_serve_or_swap(mlflow_server, tmp_path, monkeypatch):
    """``rm -rf`` of the cached files of the version that serves: it serves from memory, and a plan keeping it swaps."""
    import mlflow

    monkeypatch.setenv("MODELYARD_SERVE_ADMIN_TOKEN", ADMIN_TOKEN)
    mlflow.set_tracking_uri(mlflow_server.url)
    v1 = register_xgboost("faults-cache-files", seed=0, n_features=N_FEATURES, n_trees=10, rows=300)
    v2 = register_xgboost("faults-cache-files", seed=1, n_features=N_FEATURES, n_trees=10, rows=300)
    plan = plan_of(v1)
    plan_path, cache = tmp_path / "plan.json", tmp_path / "model-cache"
    plan_path.write_text(json.dumps(plan))
    with ServerProcess.start(plan_path, mlflow_server.url, env={"MODELYARD_SERVE_MODEL_CACHE": str(cache)}) as server:
        server.wait_ready(timeout=120, digest=parse_plan(plan).digest())
        (served,) = [p for p in cache.iterdir() if p.name.startswith("modelyard-model-")]
        shutil.rmtree(served)
        assert httpx.post(f"{server.url}{PREDICT}", json=RECORD, timeout=10).status_code == 200
        # The same version beside a canary: the served one is reused from memory, the canary downloads.
        both = plan_of(v1)
        both["services"][0]["variants"] = [
            {"name": "champion", "model_uri": v1, "weight": 90},
            {"name": "canary", "model_uri": v2, "weight": 10},
        ]
        put = httpx.put(f"{server.url}/admin/plan?wait=1", headers=ADMIN, content=json.dumps(both), timeout=120)
        assert put.status_code == 200, put.text
        assert put.json()["loaded"] == 1, put.json()  # the canary; the champion is the one in memory
        status, detail = readyz(server)
        assert status == 200, detail
        assert {uri: m["state"] for uri, m in detail["models"].items()} == {v1: "ready", v2: "ready"}, detail
        assert httpx.post(f"{server.url}{PREDICT}", json=RECORD, timeout=10).status_code == 200
