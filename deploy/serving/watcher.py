"""The plan-file watcher: a changed plan file is applied; one that cannot serve falls back.

Every ``poll_seconds`` the watcher compares the plan file's modification time and size
with the last look. The file is read, parsed and hashed in a thread: a large plan file must not
stop the event loop (``/healthz`` answers meanwhile). A new, valid plan is handed to the plan
manager; a file that is gone, does not validate or names a plan that is rejected is recorded, and while nothing is
active the ``last-good`` copy next to it (the last plan that became active) is served
instead. Digests the manager already knows (active, loading, claimed by an admin request,
retrying, rejected) are left alone.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from modelyard.deploy.serving.plan import Plan, PlanError, last_good_path, load_plan

if TYPE_CHECKING:
    from modelyard.deploy.serving.active import ActivePlan

log = logging.getLogger("modelyard.serving")
_MISSING = (-1, -1)


class PlanTarget(Protocol):
    """What the watcher needs from the plan manager."""

    active: ActivePlan | None

    async def apply(self, plan: Plan, persist: bytes | None = None) -> dict[str, Any]: ...

    def known(self, digest: str) -> bool: ...

    def reject_unparsable(self, error: str, source: str) -> None: ...

    def file_checked(self) -> None: ...


class PlanFileWatcher:
    """Applies the plan file whenever it changes (run as one background task)."""

    def __init__(self, target: PlanTarget, path: Path, poll_seconds: float) -> None:
        self.target = target
        self.path = path
        self.poll_seconds = poll_seconds
        self._stamp: tuple[int, int] | None = None

    async def run(self) -> None:
        """Check the file every ``poll_seconds`` until cancelled; a failed check is logged, not fatal."""
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("plan file check failed", extra={"path": str(self.path)})
            self.target.file_checked()
            await asyncio.sleep(self.poll_seconds)

    async def check(self) -> None:
        """Apply the plan file if it changed since the last check."""
        path = self.path
        try:
            stat = path.stat()
        except OSError as exc:
            if self._stamp != _MISSING:
                self._stamp = _MISSING
                self.target.reject_unparsable(f"cannot read plan file {path}: {exc.strerror}", str(path))
                await self._fall_back()
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            plan, digest = await asyncio.to_thread(_read, path)
        except PlanError as exc:
            self.target.reject_unparsable(str(exc), str(path))
            await self._fall_back()
            return
        if self.target.known(digest):
            return
        log.info("plan file changed", extra={"event": "plan_file_changed", "digest": digest, "path": str(path)})
        if (await self.target.apply(plan))["status"] == "rejected":
            await self._fall_back()

    async def _fall_back(self) -> None:
        """With nothing active and a plan file that cannot serve, serve the last plan that did."""
        path = last_good_path(self.path)
        if self.target.active is not None or not path.exists():
            return
        try:
            plan, digest = await asyncio.to_thread(_read, path)
        except PlanError as exc:
            log.error("last good plan unreadable", extra={"event": "last_good_unreadable", "error": str(exc)})
            return
        if self.target.known(digest):
            return
        log.warning(
            "the plan file cannot serve; serving the last good plan",
            extra={"event": "plan_fallback", "digest": digest, "path": str(path)},
        )
        await self.target.apply(plan)


def _read(path: Path) -> tuple[Plan, str]:
    """The plan file and its plan digest (run in a thread: both cost time for a large plan)."""
    plan = load_plan(path)
    return plan, plan.digest()
