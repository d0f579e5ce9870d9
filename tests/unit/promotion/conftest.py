"""Fixtures the promotion unit tests share."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest


@pytest.fixture
def busy_machine() -> Iterator[None]:
    """More CPU-bound processes than cores, at normal priority, for the length of the test."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range((os.cpu_count() or 1) + 1)]
    time.sleep(0.2)
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
