"""The plan manager: loads plans, swaps them atomically and releases what the old plan no longer needs.

A swap loads and warms the new plan's models in a thread while the old plan keeps serving,
reuses models whose URI did not change, then replaces one reference; requests that started
on the old plan finish on it, and its models are released once none is left. Only a plan
that became active is written to the plan file and to its ``last-good`` copy; a plan that
failed for a transient cause (registry down) is retried with backoff. The plan file itself
is watched by ``watcher``. See ``docs/adr/0002-serving-runtime.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from modelyard.deploy.serving.active import ActivePlan, build_active
from modelyard.deploy.serving.background import BackgroundWorker
from modelyard.deploy.serving.faults import is_transient, model_cache_faults
from modelyard.deploy.serving.loading import LoadProgress, load_models
from modelyard.deploy.serving.metrics import ServingMetrics
from modelyard.deploy.serving.plan import Plan, dump_plan
from modelyard.deploy.serving.plan_log import prediction_log_for
from modelyard.deploy.serving.registry import import_client
from modelyard.deploy.serving.runtime import ServedModel, load_model
from modelyard.deploy.serving.settings import ServeSettings
from modelyard.deploy.serving.swap_outcomes import SwapOutcomes, now
from modelyard.deploy.serving.watcher import PlanFileWatcher

log = logging.getLogger("modelyard.serving")

RETIRE_TIMEOUT_S = 60.0


class PlanManager:
    """Loads plans, swaps them atomically and releases what the old plan no longer needs."""

    def __init__(self, settings: ServeSettings, metrics: ServingMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.active: ActivePlan | None = None
        self.loading: dict[str, Any] | None = None
        self.progress: LoadProgress | None = None  # of the plan loading now, else of the last one
        self.outcomes = SwapOutcomes(metrics)
        self.shadow_pool = BackgroundWorker("shadows", maxsize=1024, threads=settings.shadow_threads)
        self.watcher = PlanFileWatcher(self, settings.plan_path, settings.poll_seconds)
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._claimed: set[str] = set()  # digests an admin request is applying: the file watcher leaves them alone
        self._retry_digest: str | None = None  # the one plan worth retrying; any other swap supersedes it
        self._retry_loops: set[str] = set()
        self._settled = asyncio.Event()  # a plan is active, or the first one cannot become active

    # -- lifecycle

    def start(self) -> None:
        self._spawn(self.watcher.run())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.active is not None:
            await self._retire(self.active, keep=set())
            if self.active.prediction_log is not None:  # publish the open sample files
                await asyncio.to_thread(self.active.prediction_log.close, 5.0)
        self.shadow_pool.stop()

    async def settled(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until a plan is active (or the first one failed for good)."""
        if timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), timeout)
        return self._settled.is_set()

    def file_checked(self) -> None:
        """The watcher looked at the plan file: unless a plan waits for the registry, stop waiting for one."""
        if self.outcomes.retrying is None:
            self._settled.set()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- swaps

    async def apply(self, plan: Plan, persist: bytes | None = None) -> dict[str, Any]:
        """Load, warm and switch to ``plan``; on any model failure keep the current plan.

        A plan that failed for a transient cause (registry unreachable, timeout, 5xx) is
        retried in the background with backoff until it is active, fails for good, or
        another plan is applied.

        Args:
            plan: the plan to serve.
            persist: the plan file's new content (an admin ``PUT``), written only once the
                plan is active, so a restart never comes up on a plan that did not serve.

        Returns:
            ``{"status": "active"|"rejected"|"retrying", "digest": ..., "error"?: ...}``.
        """
        result = await self._apply_once(plan, persist)
        digest = result["digest"]
        if result["status"] == "retrying" and digest not in self._retry_loops:
            self._retry_loops.add(digest)
            self._spawn(self._retry(plan, persist))
        return result

    async def _apply_once(self, plan: Plan, persist: bytes | None, *, retry: bool = False) -> dict[str, Any]:
        digest = plan.digest()
        async with self._lock:
            if retry and self._retry_digest != digest:
                return {"status": "superseded", "digest": digest}
            if self._retry_digest not in (None, digest):
                self._stop_retrying()  # a newer plan supersedes the one waiting for the registry
            if self.active is not None and self.active.digest == digest:
                self._stop_retrying()
                return {"status": "active", "digest": digest, "unchanged": True}
            self.loading = {"digest": digest, "since": now()}
            self.progress = None  # until this plan's loader starts counting
            try:
                result = await self._apply_locked(plan, digest)
            except Exception as exc:
                log.exception("plan swap failed", extra={"digest": digest})
                result = self._failed(digest, None, exc)
            finally:
                self.loading = None
            if result["status"] != "retrying":
                self._stop_retrying()
        if result["status"] == "active":
            result.update(await self._persist(plan, persist))
        return result

    async def _apply_locked(self, plan: Plan, digest: str) -> dict[str, Any]:
        started = time.perf_counter()
        current = self.active.models if self.active is not None else {}
        uris, sources = plan.model_uris(), plan.model_sources()
        self.progress = LoadProgress(total=len(uris), threads=self.settings.load_threads)
        await asyncio.to_thread(import_client)  # before the loader threads import it at once
        outcome = await asyncio.to_thread(
            load_models,
            uris,
            current,
            lambda uri: self._load(uri, plan.batching.max_batch_size, sources.get(uri)),
            self.progress,
            on_loaded=self._observe_load,
            sources=sources,
        )
        self._observe_progress(self.progress)
        if outcome.error is not None:
            return self._failed(digest, outcome.failed_uri, outcome.error)
        new = self._build(plan, digest, outcome.models)
        old, self.active = self.active, new
        self._settled.set()
        self.outcomes.applied(outcome.fresh)
        self.metrics.ready.set(1)
        self.metrics.plan_active.labels(digest).set(1)
        self.metrics.mark_fallbacks(new.fallbacks, old.fallbacks if old is not None else {})
        seconds = round(time.perf_counter() - started, 3)
        extra = {"event": "plan_active", "digest": digest, "loaded": outcome.fresh, "seconds": seconds}
        log.info("plan active", extra={**extra, "load": self.progress.to_dict()})
        if old is not None:
            self.metrics.plan_active.labels(old.digest).set(0)
            self._spawn(self._retire(old, keep={id(m) for m in new.models.values()}))
        return {"status": "active", "digest": digest, "seconds": seconds, "loaded": len(outcome.fresh)}

    def _load(self, uri: str, warmup_batch: int, source: str | None) -> ServedModel:
        cache = self.settings.model_cache
        with model_cache_faults(uri, cache):  # a full or removed cache is retried like a registry outage
            settings = self.settings
            return load_model(
                uri, cache, warmup_batch, calibrate_each=settings.calibrate_each, trust=settings.trust, source=source
            )

    def _build(self, plan: Plan, digest: str, models: dict[str, ServedModel]) -> ActivePlan:
        old_log = self.active.prediction_log if self.active is not None else None
        return build_active(
            plan,
            digest,
            models,
            old=self.active,
            shadow_pool=self.shadow_pool,
            on_batch=self._on_batch,
            prediction_log=prediction_log_for(plan, self.settings, old_log, self._sample_dropped),
        )

    def _on_batch(self, model: ServedModel, rows: int) -> None:
        self.metrics.observe_batch(model.name, rows)

    def _sample_dropped(self) -> None:
        self.metrics.samples.labels("dropped").inc()

    def _observe_load(self, model: ServedModel) -> None:
        """Metrics and a log line for one freshly loaded model (called from a loader thread)."""
        status = model.status
        self.metrics.model_loads.inc()
        self.metrics.load_seconds.labels(status.name, model.version).set(status.load_seconds or 0)
        self.metrics.warmup_seconds.labels(status.name, model.version).set(status.warmup_seconds or 0)
        self.metrics.model_engine.labels(status.name, model.version, status.engine).set(1)
        log.info("model ready", extra={"event": "model_ready", "model": status.to_dict()})

    def _observe_progress(self, progress: LoadProgress) -> None:
        self.metrics.models_reused.inc(progress.reused)
        if progress.rss_after_bytes is not None:
            self.metrics.process_rss.set(progress.rss_after_bytes)
        per_model = progress.rss_per_loaded_model_bytes
        if per_model is not None:
            self.metrics.rss_per_model.set(per_model)

    async def _persist(self, plan: Plan, body: bytes | None) -> dict[str, Any]:
        """Write the active plan's ``last-good`` copy (and the plan file, for an admin PUT)."""
        writes = [(self.settings.last_good_path, dump_plan(plan, "json"))]
        if body is not None:
            writes.insert(0, (self.settings.plan_path, body))
        for path, data in writes:
            try:
                await asyncio.to_thread(_write_plan_file, path, data)
            except OSError as exc:
                # A read-only plan (a ConfigMap mount) still serves; it just does not survive a restart.
                warning = f"plan is active but {path} could not be written: {exc.strerror or exc}"
                log.warning(warning, extra={"event": "plan_not_persisted", "path": str(path)})
                if path == self.settings.plan_path:
                    return {"persisted": False, "warning": warning}
        return {}

    async def _retire(self, old: ActivePlan, keep: set[int]) -> None:
        """Wait for the old plan's in-flight requests, then stop and release what is unused.

        ``keep``: the ``id`` of every model the new plan serves (a model loaded again under the same
        URI, from another source, releases the old one).
        """
        deadline = time.monotonic() + RETIRE_TIMEOUT_S
        while old.inflight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.active is None or self.active.digest != old.digest:
            with contextlib.suppress(KeyError):
                self.metrics.plan_active.remove(old.digest)
        for batcher in old.batchers.values():
            if id(batcher.model) not in keep:
                await batcher.close()
        released = [uri for uri, model in old.models.items() if id(model) not in keep]
        for uri in released:
            old.models[uri].release()
        if old.prediction_log is not None and (
            self.active is None or self.active.prediction_log is not old.prediction_log
        ):
            old.prediction_log.close()  # its thread publishes what is queued
        if released:
            log.info("models released", extra={"event": "models_released", "models": released, "plan": old.digest})

    # -- failures and retries

    def _failed(self, digest: str, uri: str | None, exc: Exception) -> dict[str, Any]:
        if is_transient(exc):
            self._retry_digest = digest
            return self.outcomes.transient(digest, uri, exc)
        return self.outcomes.rejected(digest, uri, exc)

    def reject_unparsable(self, error: str, source: str) -> None:
        """Record a plan file that does not validate (the old plan keeps serving)."""
        self.outcomes.unparsable(error, source)

    async def _retry(self, plan: Plan, persist: bytes | None) -> None:
        """Retry a transiently failed plan with capped exponential backoff (jittered)."""
        import tenacity

        digest = plan.digest()
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception_type(_StillFailing),
            wait=tenacity.wait_exponential_jitter(
                initial=self.settings.retry_initial_seconds, max=self.settings.retry_max_seconds
            ),
            before_sleep=self._note_next_attempt,
            reraise=True,
        )
        try:
            await asyncio.sleep(self.settings.retry_initial_seconds)
            await retrying(self._retry_once, plan, persist)
        except _Superseded:
            log.info("plan retry superseded", extra={"event": "plan_retry_superseded", "digest": digest})
        finally:
            self._retry_loops.discard(digest)

    async def _retry_once(self, plan: Plan, persist: bytes | None) -> None:
        result = await self._apply_once(plan, persist, retry=True)
        if result["status"] == "superseded":
            raise _Superseded
        if result["status"] == "retrying":
            raise _StillFailing(result["error"])

    def _note_next_attempt(self, state: Any) -> None:
        if state.next_action is not None:
            self.outcomes.next_attempt_in(state.next_action.sleep)

    def _stop_retrying(self) -> None:
        self._retry_digest = None
        self.outcomes.stop_retrying()

    # -- plans applied by a caller

    def known(self, digest: str) -> bool:
        """Whether ``digest`` is active, loading, claimed, retrying or the last rejected plan."""
        last_rejected = self.outcomes.last_rejected
        return (
            digest in self._claimed
            or digest in self._retry_loops
            or (self.active is not None and self.active.digest == digest)
            or (self.loading is not None and self.loading["digest"] == digest)
            or (last_rejected is not None and last_rejected.get("digest") == digest)
        )

    def claim(self, digest: str) -> None:
        """Mark ``digest`` as being applied by a caller (before it writes the plan file)."""
        self._claimed.add(digest)

    def unclaim(self, digest: str) -> None:
        self._claimed.discard(digest)

    async def apply_claimed(self, plan: Plan, persist: bytes | None = None) -> dict[str, Any]:
        """``apply`` a claimed plan, then release the claim."""
        try:
            return await self.apply(plan, persist)
        finally:
            self.unclaim(plan.digest())

    def schedule(self, plan: Plan, persist: bytes | None = None) -> None:
        """Apply a claimed ``plan`` in the background (the admin endpoint's default)."""
        self._spawn(self.apply_claimed(plan, persist))

    # -- status

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether every model of the active plan is warm, and the ``/readyz`` detail."""
        active, outcomes = self.active, self.outcomes
        models = {uri: m.status.to_dict() for uri, m in (active.models.items() if active else [])}
        for uri, failure in outcomes.failed_models.items():
            models.setdefault(uri, failure)
        ready = active is not None and all(m.status.state == "ready" for m in active.models.values())
        loading = self.loading
        if loading is not None and self.progress is not None:
            loading = {**loading, **self.progress.to_dict()}
        detail = {
            "ready": ready,
            "progress": self._progress_line(ready, active),
            "pid": os.getpid(),
            "plan": {
                "active_digest": active.digest if active else None,
                "activated_at": active.activated_at if active else None,
                "loading": loading,
                "last_load": self.progress.to_dict() if self.progress is not None and loading is None else None,
                "last_rejected": outcomes.last_rejected,
                "retrying": outcomes.retrying,
                "swaps": dict(outcomes.counts),
                "path": str(self.settings.plan_path),
            },
            "models": models,
            # Services served by their region group's pooled model (ADR 0015): "fare/jakarta" -> "fare/indonesia".
            "fallbacks": {f"{f}/{r}": pooled for (f, r), pooled in sorted(active.fallbacks.items())} if active else {},
        }
        return ready, detail

    def _progress_line(self, ready: bool, active: ActivePlan | None) -> str:
        """One line for people and probes: ``loading 137/500``, ``ready 500/500``, ``retrying``, ``no plan``."""
        if self.loading is not None:
            return self.progress.summary() if self.progress is not None else "loading"
        if active is not None:
            count = len(active.models)
            return f"ready {count}/{count}" if ready else f"not ready ({count} models)"
        return "retrying" if self.outcomes.retrying is not None else "no plan"


class _StillFailing(Exception):
    """A retry attempt failed for a transient cause again (tenacity retries on it)."""


class _Superseded(Exception):
    """Another plan was applied while this one waited for its next attempt."""


def _write_plan_file(path: Path, body: bytes) -> None:
    from modelyard.core.storage import write_bytes_atomic

    write_bytes_atomic(path, body)
