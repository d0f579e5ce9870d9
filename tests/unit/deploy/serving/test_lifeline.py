"""A worker exits when its supervisor is killed: real processes, a real kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from modelyard.deploy.serving.lifeline import exit_with_supervisor
from modelyard.deploy.serving.settings import SUPERVISOR_ENV

# The "supervisor" starts one "worker" that arms the lifeline (or not) and then sleeps.
SUPERVISOR = """
import os, subprocess, sys, time
env = dict(os.environ)
if sys.argv[1] == "armed":
    env["{var}"] = str(os.getpid())
child = subprocess.Popen([sys.executable, "-c", sys.argv[2]], env=env)
print(child.pid, flush=True)
time.sleep(120)
"""
WORKER = """
import os, time
from modelyard.deploy.serving.lifeline import exit_with_supervisor
from modelyard.deploy.serving.settings import ServeSettings
exit_with_supervisor(ServeSettings.from_env({**os.environ, "MODELYARD_SERVE_PLAN": "unused"}).supervisor_pid)
time.sleep(120)
"""


def _start(mode: str) -> tuple[subprocess.Popen[str], int]:
    code = SUPERVISOR.replace("{var}", SUPERVISOR_ENV)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[4])}
    supervisor = subprocess.Popen(
        [sys.executable, "-c", code, mode, WORKER], stdout=subprocess.PIPE, text=True, env=env
    )
    assert supervisor.stdout is not None
    return supervisor, int(supervisor.stdout.readline())


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_an_armed_worker_exits_when_its_supervisor_is_killed() -> None:
    supervisor, worker = _start("armed")
    time.sleep(1.5)  # the worker imports and arms the lifeline
    assert psutil.pid_exists(worker)
    supervisor.send_signal(signal.SIGKILL)
    supervisor.wait(10)
    assert _gone_within(worker, 10), "the worker outlived its supervisor"


def test_an_unarmed_process_outlives_its_parent() -> None:
    # The control: without the supervisor variable (a single-process server started detached),
    # nothing kills the process, which is what makes the test above able to fail.
    supervisor, worker = _start("unarmed")
    time.sleep(1.5)
    supervisor.send_signal(signal.SIGKILL)
    supervisor.wait(10)
    try:
        assert not _gone_within(worker, 2)
    finally:
        os.kill(worker, signal.SIGKILL)


def test_a_process_that_is_its_own_supervisor_is_not_armed() -> None:
    assert not exit_with_supervisor(os.getpid())
    assert not exit_with_supervisor(None)
