"""Start and stop a real ``mlflow server`` (SQLite backend, local artifact store).

This is the embedded default for ``make demo`` and the server every integration test
talks to: the same process a team runs, only on SQLite instead of PostgreSQL.

MLflow 3's server also starts a job runner (huey consumers for its GenAI jobs: prompt optimisation,
scorers on traces) unless ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION`` is false. modelyard submits no
jobs; the runner is eight more processes and ~2.1 GB of RSS that poll while idle (10 processes,
2.6 GB against 2 and 0.5 GB, measured). The embedded server runs without it unless the variable is
set in the environment (issue 26).

It is served by gunicorn (MLflow's Flask app in one worker process of threads), not by MLflow's
default uvicorn (its FastAPI app mounting the same Flask app): the same requests cost the server
~25-50% less CPU (ADR 0022). ``MODELYARD_MLFLOW_HTTP_SERVER=uvicorn`` brings MLflow's default back.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import tenacity

from modelyard.core.errors import ModelyardError
from modelyard.core.tracking import is_healthy

HTTP_SERVERS = ("gunicorn", "uvicorn")
DEFAULT_HTTP_SERVER = "gunicorn"
HTTP_SERVER_VARIABLE = "MODELYARD_MLFLOW_HTTP_SERVER"
# One worker process of threads, as uvicorn's one worker runs the Flask app in a thread pool; keep-alive
# as uvicorn's; request lines up to gunicorn's largest bounded limit (its default 4,094 bytes refused a
# 200-name registry search: modelyard's own searches now stay under 3,000, a user's UI filter may not).
GUNICORN_OPTIONS = "--worker-class gthread --threads 16 --timeout 300 --keep-alive 5 --limit-request-line 8190"


class MlflowServerError(ModelyardError, RuntimeError):
    """The MLflow server could not be started; the message carries its log tail."""


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
    """SIGTERM a server and every process it started (its workers), SIGKILL whatever lingers.

    The workers are read before the first signal, so they are found while their parent lives
    (and even when one left the server's process group).
    """
    if process.poll() is not None:
        return
    try:
        workers = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        workers = []
    for worker in workers:
        with contextlib.suppress(psutil.NoSuchProcess):
            worker.terminate()
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)
    _, lingering = psutil.wait_procs(workers, timeout=timeout)
    for worker in lingering:
        with contextlib.suppress(psutil.NoSuchProcess):
            worker.kill()
    psutil.wait_procs(lingering, timeout=timeout)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) == 0


def start_mlflow_server(
    workdir: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    startup_timeout: float = 120,
    http_server: str | None = None,
) -> MlflowServer:
    """Start ``mlflow server`` on SQLite under ``workdir`` and wait until it answers.

    ``http_server``: ``gunicorn`` (the default: MLflow's Flask app itself, one process of threads)
    or ``uvicorn`` (MLflow's own default: its FastAPI app around the Flask app, which adds OTel
    trace ingestion, the job API and the AI gateway, none of which modelyard uses); None reads
    ``MODELYARD_MLFLOW_HTTP_SERVER``. ADR 0022: gunicorn costs the server ~25% less CPU a request.

    Raises:
        MlflowServerError: an unknown ``http_server``, the port is taken, the server died or did not answer in time.
    """
    chosen = http_server or os.environ.get(HTTP_SERVER_VARIABLE) or DEFAULT_HTTP_SERVER
    if chosen not in HTTP_SERVERS:
        raise MlflowServerError(
            f"{HTTP_SERVER_VARIABLE}={chosen!r} is not an HTTP server for MLflow; use one of {', '.join(HTTP_SERVERS)}"
        )
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
    if chosen == "gunicorn":
        command += ["--gunicorn-opts", GUNICORN_OPTIONS]
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}  # the variable, when set, wins
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    server = MlflowServer(url=f"http://{host}:{port}", workdir=workdir, process=process, log_path=log_path)
    try:
        answered = _poll_until(startup_timeout, lambda: _answers(server))
    except MlflowServerError:
        server.stop()
        raise
    if not answered:
        server.stop()
        raise MlflowServerError(f"mlflow server did not answer within {startup_timeout:.0f}s:\n{_tail(log_path)}")
    return server


def _poll_until(timeout: float, check: Callable[[], bool], interval: float = 0.5) -> bool:
    """Call ``check`` every ``interval`` seconds until it is true (True) or ``timeout`` passes (False).

    An exception from ``check`` is not retried: it ends the wait at once.
    """
    waiting = tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout),
        wait=tenacity.wait_fixed(interval),
        retry=tenacity.retry_if_result(lambda done: not done),
        retry_error_callback=lambda _: False,
    )
    return bool(waiting(check))


def _answers(server: MlflowServer) -> bool:
    if server.process is not None and server.process.poll() is not None:
        code = server.process.returncode
        raise MlflowServerError(f"mlflow server exited with {code}:\n{_tail(server.log_path)}")
    return is_healthy(server.url)


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
