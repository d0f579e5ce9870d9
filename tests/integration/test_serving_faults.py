"""Faults against real `modelyard serve` processes and a real `mlflow server`.

Each scenario ends with the server serving the last plan that was active, and no request
lost beyond the connections the fault killed: a rejected plan and a crash mid-swap, the
registry down at start and then back, the disk model cache removed while serving, a worker
killed under load. Every wait is bounded in time.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from modelyard.deploy.rollout.mlflow_server import free_port
from modelyard.deploy.serving.plan import load_plan, parse_plan
from tests.bench.serving import ServerProcess, register_xgboost
from tests.integration.test_serving import (
    ADMIN,
    ADMIN_TOKEN,
    ALWAYS_RAISES,
    N_FEATURES,
    RECORD,
    SLEEPY,
    _register_pyfunc,
)


@pytest.fixture(autouse=True)
def _admin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """The servers these tests start take plans over the admin API, which is off without a token."""
    monkeypatch.setenv("MODELYARD_SERVE_ADMIN_TOKEN", ADMIN_TOKEN)


@pytest.fixture(scope="module")
def models(mlflow_server, tmp_path_factory) -> dict[str, str]:
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.set_registry_uri(mlflow_server.url)
    workdir = tmp_path_factory.mktemp("fault-models")
    small = {"n_features": N_FEATURES, "n_trees": 10, "rows": 300}
    return {
        "v1": register_xgboost("faults-acceptance", seed=0, **small),
        "v2": register_xgboost("faults-acceptance", seed=1, **small),
        "sleepy": _register_pyfunc("faults-sleepy", SLEEPY, workdir),
        "broken": _register_pyfunc("faults-broken", ALWAYS_RAISES, workdir),
    }


def _plan(*variants: tuple[str, str], shadows: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "version": 1,
        "services": [
            {
                "family": "driver_acceptance",
                "region": "jakarta",
                "timezone": "Asia/Jakarta",
                "variants": [{"name": n, "model_uri": u, "weight": 100 // len(variants)} for n, u in variants],
                "shadows": [{"name": f"shadow{i}", "model_uri": u} for i, u in enumerate(shadows)],
            }
        ],
    }


def _digest(plan: dict[str, Any]) -> str:
    return parse_plan(plan).digest()


def _write(path: Path, plan: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(plan))
    tmp.replace(path)


def _predict(server: ServerProcess) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/predict/driver_acceptance/jakarta", json=RECORD, timeout=10)


def _kill9(server: ServerProcess) -> None:
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(10)


def _wait_for(condition, timeout: float, what: str, step: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(step)
    raise TimeoutError(f"{what} not within {timeout}s (last: {last})")


def _readyz(server: ServerProcess) -> tuple[int, dict[str, Any]]:
    try:
        response = httpx.get(f"{server.url}/readyz", timeout=5)
    except httpx.HTTPError:
        return 0, {}
    return response.status_code, response.json()


# ---------------------------------------------------------------------------- the last good plan


def test_a_rejected_plan_never_reaches_the_plan_file_and_a_restart_serves_the_last_good_plan(
    models, mlflow_server, tmp_path
):
    good, broken = _plan(("champion", models["v1"])), _plan(("champion", models["broken"]))
    plan_path = tmp_path / "plan.json"
    _write(plan_path, good)
    server = ServerProcess.start(plan_path, mlflow_server.url)
    try:
        server.wait_ready(timeout=120, digest=_digest(good))
        response = httpx.put(f"{server.url}/admin/plan?wait=1", headers=ADMIN, content=json.dumps(broken), timeout=120)
        assert response.status_code == 409, response.text
        assert "broken" in response.json()["error"]
        assert load_plan(plan_path).digest() == _digest(good), "a rejected plan was written to the plan file"
        assert _predict(server).status_code == 200
    finally:
        server.stop()
    restarted = ServerProcess.start(plan_path, mlflow_server.url, log_path=tmp_path / "restart.log")
    try:
        restarted.wait_ready(timeout=120, digest=_digest(good))
        assert _predict(restarted).json()["version"] == models["v1"].rsplit("/", 1)[1]
    finally:
        restarted.stop()


def test_a_bad_plan_file_at_restart_falls_back_to_the_last_good_plan(models, mlflow_server, tmp_path):
    good, broken = _plan(("champion", models["v1"])), _plan(("champion", models["broken"]))
    plan_path = tmp_path / "plan.json"
    _write(plan_path, good)
    server = ServerProcess.start(plan_path, mlflow_server.url)
    try:
        server.wait_ready(timeout=120, digest=_digest(good))
        _wait_for(lambda: (tmp_path / "plan.json.last-good").exists(), 10, "the last-good copy")
    finally:
        _kill9(server)
    # Another writer (a config map, a hand edit) leaves a plan that cannot load; then the server crashes.
    _write(plan_path, broken)
    restarted = ServerProcess.start(plan_path, mlflow_server.url, log_path=tmp_path / "restart.log")
    try:
        detail = restarted.wait_ready(timeout=120, digest=_digest(good))
        assert detail["plan"]["last_rejected"]["digest"] == _digest(broken)
        assert _predict(restarted).status_code == 200
    finally:
        restarted.stop()


def test_kill_9_during_a_swap_restarts_on_the_plan_that_was_active(models, mlflow_server, tmp_path):
    good = _plan(("champion", models["v1"]))
    slow = _plan(("champion", models["v2"]), shadows=(models["sleepy"],))  # the pyfunc warm-up takes seconds
    plan_path = tmp_path / "plan.json"
    _write(plan_path, good)
    server = ServerProcess.start(plan_path, mlflow_server.url)
    try:
        server.wait_ready(timeout=120, digest=_digest(good))
        response = httpx.put(f"{server.url}/admin/plan", headers=ADMIN, content=json.dumps(slow), timeout=30)
        assert response.status_code == 202, response.text

        def loading() -> bool:
            body = httpx.get(f"{server.url}/admin/plan", headers=ADMIN, timeout=5).json()
            return (body.get("loading") or {}).get("digest") == _digest(slow)

        _wait_for(loading, 30, "the slow plan loading", step=0.02)
    finally:
        _kill9(server)
    assert load_plan(plan_path).digest() == _digest(good), "the plan file changed before the swap finished"
    restarted = ServerProcess.start(plan_path, mlflow_server.url, log_path=tmp_path / "restart.log")
    try:
        restarted.wait_ready(timeout=120, digest=_digest(good))
        assert _predict(restarted).status_code == 200
    finally:
        restarted.stop()


# ---------------------------------------------------------------------------- registry outage


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to the MLflow server: the registry is "down" until ``start``."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port, self.target = port, target
        self._listener: socket.socket | None = None
        self._closed = threading.Event()

    def start(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        listener.settimeout(0.2)
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self._closed.set()
        if self._listener is not None:
            self._listener.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=30)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def registry_proxy(mlflow_server) -> Iterator[TcpProxy]:
    host, port = mlflow_server.url.removeprefix("http://").split(":")
    proxy = TcpProxy(free_port(), (host, int(port)))
    try:
        yield proxy
    finally:
        proxy.stop()


def test_registry_down_at_start_then_back_becomes_ready_by_itself(models, registry_proxy, tmp_path):
    good = _plan(("champion", models["v1"]))
    plan_path = tmp_path / "plan.json"
    _write(plan_path, good)
    registry = f"http://127.0.0.1:{registry_proxy.port}"  # nothing listens yet
    started = time.monotonic()
    server = ServerProcess.start(plan_path, registry, env={"MODELYARD_SERVE_RETRY_MAX_SECONDS": "2"})
    try:

        def retrying() -> dict[str, Any] | None:
            status, detail = _readyz(server)
            return (detail.get("plan") or {}).get("retrying") if status == 503 else None

        reason = _wait_for(retrying, 60, "/readyz 503 naming the registry failure")
        first_failure_s = time.monotonic() - started
        assert reason["digest"] == _digest(good)
        assert "registry" in reason["error"], reason
        # /readyz shows one line of at most 300 characters (no traces): the registry call that failed.
        assert "faults-acceptance" in reason["error"], reason
        assert reason["attempt"] >= 1, reason
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        _wait_for(lambda: (retrying() or {}).get("attempt", 0) >= 2, 60, "a second attempt")
        assert _predict(server).status_code == 503

        registry_proxy.start()
        back = time.monotonic()
        detail = server.wait_ready(timeout=60, digest=_digest(good))
        recovered_s = time.monotonic() - back
        assert detail["plan"]["retrying"] is None
        assert detail["plan"]["last_rejected"] is None, "a transient failure was remembered as a rejection"
        assert _predict(server).status_code == 200
        print(f"registry down: first failure reported after {first_failure_s:.1f}s, ready {recovered_s:.1f}s after")
        assert recovered_s < 30
    finally:
        server.stop()


# ---------------------------------------------------------------------------- disk cache, workers


def test_the_model_cache_removed_while_serving(models, mlflow_server, tmp_path):
    good, newer = _plan(("champion", models["v1"])), _plan(("champion", models["v2"]))
    plan_path, cache = tmp_path / "plan.json", tmp_path / "model-cache"
    _write(plan_path, good)
    server = ServerProcess.start(plan_path, mlflow_server.url, env={"MODELYARD_SERVE_MODEL_CACHE": str(cache)})
    try:
        server.wait_ready(timeout=120, digest=_digest(good))
        shutil.rmtree(cache)
        assert all(_predict(server).status_code == 200 for _ in range(20)), "serving needs the files on disk"
        response = httpx.put(f"{server.url}/admin/plan?wait=1", headers=ADMIN, content=json.dumps(newer), timeout=120)
        assert response.status_code == 200, response.text
        assert _predict(server).json()["version"] == models["v2"].rsplit("/", 1)[1]
        assert load_plan(plan_path).digest() == _digest(newer)
    finally:
        server.stop()


class Load:
    """Threads posting predictions, one connection each; a failed connection is replaced."""

    def __init__(self, url: str, threads: int) -> None:
        self.url, self.threads = url, threads
        self.ok = 0
        self.failures: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(15)

    def _run(self) -> None:
        client = httpx.Client(timeout=10)
        while not self._stop.is_set():
            try:
                response = client.post(f"{self.url}/v1/predict/driver_acceptance/jakarta", json=RECORD)
                failure = None if response.status_code == 200 else f"HTTP {response.status_code} {response.text}"
            except httpx.HTTPError as exc:
                failure = f"{type(exc).__name__}: {exc}"
                client.close()
                client = httpx.Client(timeout=10)
            with self._lock:
                if failure is None:
                    self.ok += 1
                else:
                    self.failures.append((time.monotonic(), failure))
        client.close()


def _workers_of(server: ServerProcess) -> list[psutil.Process]:
    """The live uvicorn workers (spawned processes; not multiprocessing's resource tracker)."""
    workers = []
    for child in psutil.Process(server.process.pid).children():
        with contextlib.suppress(psutil.Error):  # gone, or a zombie the supervisor has not reaped yet
            if child.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(child.cmdline()):
                workers.append(child)
    return workers


def test_a_worker_killed_under_load_loses_only_its_connections(models, mlflow_server, tmp_path):
    good = _plan(("champion", models["v1"]))
    plan_path = tmp_path / "plan.json"
    _write(plan_path, good)
    server = ServerProcess.start(plan_path, mlflow_server.url, workers=2)
    threads = 6
    try:
        server.wait_ready(timeout=120, digest=_digest(good))
        workers = _wait_for(lambda: len(_workers_of(server)) == 2 and _workers_of(server), 60, "two workers")
        with Load(server.url, threads) as load:
            time.sleep(2)
            victim = workers[0]
            victim.kill()
            killed_at = time.monotonic()
            # Under load until the replacement worker has loaded the plan and answers its share.
            replacement = _wait_for(
                lambda: _answering_pid_other_than(server, {w.pid for w in workers}, _digest(good)),
                240,
                "the replacement worker answering with the plan active",
                step=0.2,
            )
            time.sleep(1)
        late = [f for at, f in load.failures if at > killed_at + 2]
        assert len(load.failures) <= threads, load.failures  # at most the one in flight per killed connection
        assert not late, f"requests failed after the kill: {late[:5]}"
        assert load.ok > 100
        print(
            f"worker killed under load: {load.ok} served, {len(load.failures)} failed; "
            f"replacement {replacement} ready {time.monotonic() - killed_at:.1f}s after the kill"
        )
    finally:
        server.stop()


def _answering_pid_other_than(server: ServerProcess, pids: set[int], digest: str) -> int | None:
    for _ in range(10):  # new connections spread over the workers that accept
        status, detail = _readyz(server)
        if status == 200 and detail["pid"] not in pids and detail["plan"]["active_digest"] == digest:
            return int(detail["pid"])
    return None


def test_workers_exit_when_the_supervisor_is_killed(models, mlflow_server, tmp_path):
    good = _plan(("champion", models["v1"]))
    plan_path = tmp_path / "plan.json"
    _write(plan_path, good)
    server = ServerProcess.start(plan_path, mlflow_server.url, workers=2)
    port = int(server.url.rsplit(":", 1)[1])
    try:
        server.wait_ready(timeout=120, digest=_digest(good))
        workers = _wait_for(lambda: len(_workers_of(server)) == 2 and _workers_of(server), 60, "two workers")
        server.process.send_signal(signal.SIGKILL)  # the supervisor only, not its process group
        server.process.wait(10)
        gone = psutil.wait_procs(workers, timeout=20)[1]
        assert not gone, f"workers {[w.pid for w in gone]} outlived the supervisor"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGKILL)
    # Nothing holds the port any more: a restart on it comes up ("Address already in use" before).
    again = _serve_on(plan_path, mlflow_server.url, port, tmp_path / "again.log")
    try:
        again.wait_ready(timeout=120, digest=_digest(good))
    finally:
        again.stop()


def _serve_on(plan_path: Path, tracking_uri: str, port: int, log_path: Path) -> ServerProcess:
    """``modelyard serve --workers 2`` on a given port (``ServerProcess.start`` picks a free one)."""
    command = [
        str(Path(sys.executable).with_name("modelyard")), "serve", "--plan", str(plan_path),
        "--port", str(port), "--workers", "2", "--poll-seconds", "0.2",
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": tracking_uri}
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return ServerProcess(f"http://127.0.0.1:{port}", plan_path, process, log_path)
