"""The plan-file watcher reads and parses a plan file off the event loop."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from modelyard.deploy.serving import watcher as watcher_module
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


def test_the_plan_file_is_parsed_while_the_event_loop_goes_on(tmp_path: Path, monkeypatch) -> None:
    """The parse waits for the loop to come round: it would deadlock (and time out) on the loop itself."""
    path = tmp_path / "plan.yaml"
    path.write_text("junk: [" + ",".join(str(i) for i in range(1_000)) + "]\n")
    target = Target()
    loop_went_on = threading.Event()
    parsed_in: list[str] = []
    real_read = watcher_module._read

    def read_after_the_loop_ticks(file: Path) -> Any:
        parsed_in.append(threading.current_thread().name)
        assert loop_went_on.wait(timeout=10), "the event loop did not run while the plan file was parsed"
        return real_read(file)

    monkeypatch.setattr(watcher_module, "_read", read_after_the_loop_ticks)

    async def run() -> None:
        watcher = PlanFileWatcher(target, path, poll_seconds=1.0)
        check = asyncio.create_task(watcher.check())
        await asyncio.sleep(0.01)  # the loop comes round while the check is in its thread
        loop_went_on.set()
        await check

    asyncio.run(run())
    assert parsed_in
    assert parsed_in[0] != threading.main_thread().name
    assert len(target.rejected) == 1  # parsed, then refused: not a plan
