"""Work that must never be on the response path: daemon threads behind a bounded queue."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger("modelyard.serving")


class BackgroundWorker:
    """Daemon threads with a bounded queue: work that must never be on the response path.

    Every shadow of every service shares one small pool (a plan with 1,000 shadows must not
    start 1,000 threads); the prediction log has its own writer thread (``sampling``). When a worker falls
    behind, new jobs are dropped (the caller counts them) instead of piling up memory; a
    stopped worker discards what is still queued.
    """

    def __init__(self, name: str, maxsize: int = 256, threads: int = 1) -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize)
        self._closed = False
        self._threads = [
            threading.Thread(target=self._run, name=f"modelyard-{name}-{i}", daemon=True) for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def offer(self, job: Callable[[], None]) -> bool:
        """Queue ``job``; False when the queue is full or the worker stopped (never blocks)."""
        if self._closed:
            return False
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            return False
        return True

    def stop(self) -> None:
        """Stop after the current job; never blocks the caller."""
        self._closed = True
        for _ in self._threads:
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None or self._closed:
                return
            try:
                job()
            except Exception:
                log.exception("background job failed")
