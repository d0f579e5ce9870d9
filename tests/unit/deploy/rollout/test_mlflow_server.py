"""Starting and stopping server processes: the bounded wait and the whole process tree."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from modelyard.deploy.rollout.mlflow_server import (
    MlflowServer,
    MlflowServerError,
    _answers,
    _poll_until,
    free_port,
    stop_process_group,
)

# A "server" whose worker escaped into its own session (as a daemonising worker does), so a
# process-group kill of the server's group would miss it.
ESCAPING_SERVER = """
import subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
print(worker.pid, flush=True)
time.sleep(120)
"""
STUBBORN_SERVER = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(120)
"""


def _start(code: str) -> tuple[subprocess.Popen[bytes], str]:
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    assert process.stdout is not None
    return process, process.stdout.readline().decode().strip()


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_stop_ends_workers_that_left_the_process_group() -> None:
    process, worker = _start(ESCAPING_SERVER)
    try:
        stop_process_group(process, timeout=5)
        assert process.returncode is not None
        assert _gone(int(worker)), "the server's worker survived its stop"
    finally:
        if not _gone(int(worker)):
            psutil.Process(int(worker)).kill()


def test_stop_kills_a_server_that_ignores_sigterm_after_the_timeout() -> None:
    process, _ = _start(STUBBORN_SERVER)
    started = time.monotonic()
    stop_process_group(process, timeout=1)
    assert process.returncode == -9
    assert time.monotonic() - started < 5


def test_poll_until_returns_as_soon_as_the_check_holds() -> None:
    calls = iter([False, False, True])
    started = time.monotonic()
    assert _poll_until(5, lambda: next(calls), interval=0.05)
    assert time.monotonic() - started < 1


def test_poll_until_gives_up_at_the_timeout() -> None:
    started = time.monotonic()
    assert not _poll_until(0.3, lambda: False, interval=0.05)
    assert 0.25 <= time.monotonic() - started < 1.5


def test_a_server_that_exited_ends_the_wait_at_once_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "mlflow-server.log"
    log.write_text("Error: no such option: --workers\n")
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(2)"])
    process.wait()
    server = MlflowServer(url=f"http://127.0.0.1:{free_port()}", workdir=tmp_path, process=process, log_path=log)
    started = time.monotonic()
    with pytest.raises(MlflowServerError, match=r"exited with 2:\nError: no such option"):
        _poll_until(30, lambda: _answers(server))
    assert time.monotonic() - started < 1
