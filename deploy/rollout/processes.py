"""Managed processes of the embedded stack (MLflow server, serving process, Airflow).

Each is a detached process with a pid file and a log under ``<storage.root>/run/``, so
``modelyard demo`` can leave them running for the user and ``modelyard down`` can stop
exactly what it started. (A plan's *service* is something else: ``deploy.serving.plan.Service``.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from modelyard.core.errors import ModelyardError
from modelyard.core.tracking import is_healthy
from modelyard.deploy.rollout.mlflow_server import port_in_use, start_mlflow_server


class ManagedProcessError(ModelyardError, RuntimeError):
    """A managed process could not be started or stopped."""


@dataclass(frozen=True)
class ManagedProcess:
    """A named background process of the embedded stack: its pid file and log under ``run_dir``."""

    name: str
    run_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid of the running process, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def record(self, pid: int, url: str) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{pid} {url}\n")

    def url(self) -> str | None:
        try:
            parts = self.pid_file.read_text().split()
        except FileNotFoundError:
            return None
        return parts[1] if len(parts) > 1 else None

    def stop(self, timeout: float = 20) -> bool:
        """Stop the process group; True if something was running."""
        pid = self.pid()
        if pid is None:
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            _signal_group(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def ensure_mlflow(run_dir: Path, workdir: Path, host: str, port: int) -> str:
    """The URL of the embedded MLflow server, starting it detached if it is not running.

    Raises:
        ManagedProcessError: the port is taken by something else.
    """
    process = ManagedProcess("mlflow", run_dir)
    url = f"http://{host}:{port}"
    if process.pid() is not None and is_healthy(url):
        return url
    if port_in_use(host, port):
        if is_healthy(url):
            return url  # a server the user runs already: use it
        raise ManagedProcessError(f"port {port} on {host} is taken by another program; set MLFLOW_PORT to a free port")
    server = start_mlflow_server(workdir, host=host, port=port)
    assert server.process is not None
    process.record(server.process.pid, url)
    return url


def start_detached(process: ManagedProcess, command: list[str], env: dict[str, str] | None = None) -> int:
    """Start ``command`` in its own session with output to the process's log."""
    process.run_dir.mkdir(parents=True, exist_ok=True)
    with process.log_file.open("ab") as log:
        child = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env or dict(os.environ)
        )
    return child.pid


def stop_all(run_dir: Path) -> list[str]:
    """Stop every managed process with a pid file under ``run_dir``; the names of those stopped."""
    stopped = []
    for pid_file in sorted(run_dir.glob("*.pid")):
        process = ManagedProcess(pid_file.stem, run_dir)
        if process.stop():
            stopped.append(process.name)
    return stopped
