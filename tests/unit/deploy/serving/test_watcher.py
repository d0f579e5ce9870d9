"""The plan-file watcher reads and parses a plan file off the event loop."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from modelyard.deploy.serving.watcher import PlanFileWatcher


class Target:
    """Records what the watcher hands to the plan manager."""

    active = None

    def __init__(self) -> None:
        self.rejected: list[str] = []

    async def apply(self, plan: Any, persist: bytes | None = None) -> dict[str, Any]:
        return {"status": "active"}

    def known(self, digest: str) -> bool:
        return False

    def reject_unparsable(self, error: str, source: str) -> None:
        self.rejected.append(error)

    def file_checked(self) -> None:
        pass


def test_a_large_plan_file_does_not_stop_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("junk: [" + ",".join(str(i) for i in range(60_000)) + "]\n")  # ~350 kB of YAML to parse
    target = Target()

    async def run() -> float:
        watcher = PlanFileWatcher(target, path, poll_seconds=1.0)
        check = asyncio.create_task(watcher.check())
        longest, last = 0.0, time.perf_counter()
        started = last
        while not check.done():  # what /healthz needs: the loop comes round every few milliseconds
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            longest, last = max(longest, now - last), now
        await check
        return longest, time.perf_counter() - started

    longest, took = asyncio.run(run())
    assert len(target.rejected) == 1  # parsed, then refused: not a plan
    # Parsed on the loop, the longest stall would be the whole check; off it, a small share of it
    # (relative, so a loaded machine slows both sides alike).
    assert longest < max(0.25, took / 3), f"the event loop stood still {longest:.2f} s of the {took:.2f} s parse"
