"""Worker processes exit with their supervisor.

With ``--workers N`` uvicorn's supervisor forks N workers that share the listening socket.
If the supervisor is killed (``kill -9``, the OOM killer) nothing stops the workers: they
keep serving as orphans, hold the port, and a restart fails with "Address already in use".
Each worker therefore asks the kernel for a signal when its parent dies (Linux
``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon thread watches the parent pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time

log = logging.getLogger("modelyard.serving")

PR_SET_PDEATHSIG = 1
WATCH_SECONDS = 1.0


def exit_with_supervisor(supervisor: int | None) -> bool:
    """In a worker of a multi-worker server, arrange to get SIGTERM when the supervisor dies.

    The supervisor (``modelyard serve``) exports its pid in ``MODELYARD_SERVE_SUPERVISOR_PID``
    (``ServeSettings.supervisor_pid``); a single-process server has no supervisor of its own and
    must outlive whoever started it (a detached dev-stack service), so it does nothing.

    Args:
        supervisor: the supervisor's pid; None (or this process's own pid): not a worker.

    Returns:
        True if this process is a worker and now exits with its supervisor.
    """
    if supervisor is None or supervisor == os.getpid():
        return False
    if not _set_parent_death_signal(signal.SIGTERM):
        threading.Thread(target=_watch_parent, args=(supervisor,), name="modelyard-lifeline", daemon=True).start()
    if os.getppid() != supervisor:  # it died before the signal was armed
        os.kill(os.getpid(), signal.SIGTERM)
    return True


def _set_parent_death_signal(sig: signal.Signals) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return False
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d; watching the parent pid", ctypes.get_errno())
        return False
    return True


def _watch_parent(supervisor: int) -> None:
    while os.getppid() == supervisor:
        time.sleep(WATCH_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.kill(os.getpid(), signal.SIGTERM)
