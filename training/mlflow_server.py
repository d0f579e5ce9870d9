"""Start and stop a real ``mlflow server`` (SQLite backend, local artifact store).

This is the embedded default for ``make demo`` and the server every integration test
talks to: the same process a team runs, only on SQLite instead of PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from modelyard.pipeline.errors import ModelyardError


class MlflowServerError(ModelyardError, RuntimeError):
    """The MLflow server could not be started; the message carries its log tail."""


class TrackingServerUnreachableError(ModelyardError, ConnectionError):
    """The MLflow tracking server does not answer; the message says how to start or point at one."""


@dataclass
class MlflowServer:
    """A running ``mlflow server`` process."""

    url: str
    workdir: Path
    process: subprocess.Popen[bytes] | None
    log_path: Path

    def stop(self, timeout: float = 15) -> None:
        if self.process is not None:
            stop_process_group(self.process, timeout)

    def __enter__(self) -> MlflowServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_process_group(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM the process group a server was started in (``start_new_session``), SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) == 0


def is_healthy(url: str, timeout: float = 2) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def require_reachable(uri: str, timeout: float = 5) -> str:
    """Fail fast when an HTTP tracking server does not answer its health check.

    The MLflow client retries a refused connection for minutes before it gives up, so
    every command checks once, up front, and says what to do.

    Raises:
        TrackingServerUnreachableError: ``GET <uri>/health`` did not answer 200.
    """
    if uri.startswith(("http://", "https://")) and not is_healthy(uri.rstrip("/"), timeout=timeout):
        raise TrackingServerUnreachableError(
            f"cannot reach the MLflow server at {uri} (GET /health failed): start the embedded stack with "
            "`make up`, or point MLFLOW_TRACKING_URI (or mlflow.tracking_uri in modelyard.yaml) at your server"
        )
    return uri


def start_mlflow_server(
    workdir: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    startup_timeout: float = 120,
) -> MlflowServer:
    """Start ``mlflow server`` on SQLite under ``workdir`` and wait until it answers.

    Raises:
        MlflowServerError: the port is taken or the server died or did not answer in time.
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    if port_in_use(host, port):
        raise MlflowServerError(f"port {port} on {host} is already in use (choose another with MLFLOW_PORT=...)")
    log_path = workdir / "mlflow-server.log"
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
        "--artifacts-destination", str(workdir / "artifacts"),
        "--host", host, "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = MlflowServer(url=f"http://{host}:{port}", workdir=workdir, process=process, log_path=log_path)
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise MlflowServerError(f"mlflow server exited with {process.returncode}:\n{_tail(log_path)}")
        if is_healthy(server.url):
            return server
        time.sleep(0.5)
    server.stop()
    raise MlflowServerError(f"mlflow server did not answer within {startup_timeout:.0f}s:\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
