"""The HTTP model server: a raw ASGI app on uvicorn (uvloop + httptools), JSON via orjson.

Endpoints:

* ``POST /v1/predict/{family}/{region}``: one record, a list of records, or
  ``{"records": [...]}``; answers predictions, model name, version and variant.
* ``POST /invocations/{family}/{region}``: MLflow scoring-server drop-in
  (``dataframe_split``, ``dataframe_records``, ``inputs``/``instances``), answers
  ``{"predictions": [...]}``.
* ``GET /healthz`` (alive), ``GET /readyz`` (every model warm; per-model detail and swap
  status), ``GET /metrics`` (Prometheus).
* ``GET /admin/plan`` (active plan and digest), ``PUT /admin/plan`` (validate, swap, then
  write the plan file atomically; ``?wait=1`` waits for the result in this worker).

The ``PlanManager`` owns the active plan. A swap loads and warms the new plan's models in
a thread while the old plan keeps serving, reuses models whose URI did not change, then
replaces one reference; requests that started on the old plan finish on it, and its
models are released once none is left. Only a plan that became active is written to the
plan file and to its ``last-good`` copy, which the server falls back to when the plan file
holds a plan that cannot serve; a plan that failed for a transient cause (registry down) is
retried with backoff. See ``docs/adr/0002-serving-runtime.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hmac
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs

import orjson

from modelyard.deploy.serving.batching import Batcher
from modelyard.deploy.serving.faults import is_transient
from modelyard.deploy.serving.metrics import CONTENT_TYPE, ServingMetrics, observe_sample
from modelyard.deploy.serving.plan import Plan, PlanError, Service, dump_plan, load_plan, parse_plan_text
from modelyard.deploy.serving.router import ServiceRouter, fixed_clock, system_clock
from modelyard.deploy.serving.runtime import BadInput, LoadProgress, ServedModel, ServingError, load_model, load_models
from modelyard.deploy.serving.sampling import (
    LOG_OPTIONS_ENV,
    LOG_URL_ENV,
    PredictionLog,
    Sample,
    SamplingSettings,
    Shipper,
    new_request_id,
    sampling_from_env,
    shipper_from_env,
)

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("modelyard.serving")

PLAN_ENV = "MODELYARD_SERVE_PLAN"
POLL_ENV = "MODELYARD_SERVE_POLL_SECONDS"
CACHE_ENV = "MODELYARD_SERVE_MODEL_CACHE"
TOKEN_ENV = "MODELYARD_SERVE_ADMIN_TOKEN"
RETRY_MAX_ENV = "MODELYARD_SERVE_RETRY_MAX_SECONDS"
LOG_DIR_ENV = "MODELYARD_SERVE_LOG_DIR"
SHADOW_THREADS_ENV = "MODELYARD_SERVE_SHADOW_THREADS"
LOAD_THREADS_ENV = "MODELYARD_SERVE_LOAD_THREADS"
DEFAULT_LOAD_THREADS = 4  # downloads wait on the network; more threads than cores still overlap them
MAX_BODY_BYTES = 64 * 1024 * 1024
INLINE_PARSE_BYTES = 64 * 1024  # larger bodies are parsed and validated off the event loop
RETIRE_TIMEOUT_S = 60.0
# A worker of a multi-worker server that starts (or is restarted by the supervisor) waits this
# long for its first plan before it accepts connections, so the shared socket sends requests to
# the workers that can answer them instead of to a worker that would answer 503.
WORKER_FIRST_PLAN_WAIT_S = 120.0
MAX_FAILED_MODELS = 32  # failed-model entries (and their metric series) kept for /readyz
MAX_ERROR_CHARS = 300

_T = TypeVar("_T")
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


# ---------------------------------------------------------------------------- settings & logs


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """Read once at server start, from the environment the CLI prepared."""

    plan_path: Path
    poll_seconds: float = 1.0
    model_cache: Path | None = None
    admin_token: str | None = None  # None: the admin API is off
    log_dir: Path = Path("prediction-logs")
    shadow_threads: int = 2
    load_threads: int = DEFAULT_LOAD_THREADS
    retry_initial_seconds: float = 0.5
    retry_max_seconds: float = 15.0
    first_plan_wait_seconds: float = 0.0
    # The prediction log of a plan without a ``prediction_log`` section (rate 0: none).
    sampling: SamplingSettings = dataclasses.field(default_factory=SamplingSettings)
    # MODELYARD_SERVE_LOG_URL / _OPTIONS: where rotated sample files are shipped (log_dir is then a spool).
    shipping: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def last_good_path(self) -> Path:
        return last_good_path(self.plan_path)

    @classmethod
    def from_env(cls) -> ServeSettings:
        path = os.environ.get(PLAN_ENV)
        if not path:
            raise PlanError(f"no plan: set {PLAN_ENV} or run `modelyard serve --plan PLAN`")
        cache = Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV) else None
        log_dir = os.environ.get(LOG_DIR_ENV)
        folder = Path(log_dir) if log_dir else default_log_dir(cache)
        shipping = {name: os.environ[name] for name in (LOG_URL_ENV, LOG_OPTIONS_ENV) if os.environ.get(name)}
        shipper_from_env(shipping, folder)  # a bad URL, options or missing package stops the start, named
        return cls(
            plan_path=Path(path),
            poll_seconds=float(os.environ.get(POLL_ENV, "1.0")),
            model_cache=cache,
            admin_token=os.environ.get(TOKEN_ENV) or None,
            retry_max_seconds=float(os.environ.get(RETRY_MAX_ENV, "15")),
            log_dir=folder,
            shadow_threads=max(1, int(os.environ.get(SHADOW_THREADS_ENV, "2"))),
            load_threads=_positive_int(LOAD_THREADS_ENV, DEFAULT_LOAD_THREADS),
            sampling=sampling_from_env(os.environ),
            shipping=shipping,
        )


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ServingError(
            f"{name}={raw!r} is not a positive integer (the number of models loaded at once)", field=name
        )
    return int(raw)


def default_log_dir(model_cache: Path | None) -> Path:
    """``prediction-logs`` under the model cache, else under the user's state directory."""
    if model_cache is not None:
        return model_cache / "prediction-logs"
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "modelyard" / "prediction-logs"


_RECORD_KEYS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "color_message",
}  # fmt: skip


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RECORD_KEYS})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: int = logging.INFO) -> None:
    """Structured JSON logs on stderr for the server and uvicorn."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


# ---------------------------------------------------------------------------- background work


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


def confined_log_path(log_dir: Path, path: Path) -> Path:
    """Where a plan's ``prediction_log.path`` writes: inside ``log_dir``, never outside.

    The plan is validated to hold a relative path without ``..``; this also refuses a
    symlink inside ``log_dir`` that points out of it. The message names only the plan's
    own path, so a refusal tells nothing about what exists on the server.

    Raises:
        PlanError: the path is absolute or resolves outside ``log_dir``.
    """
    base = log_dir.resolve()
    if path.is_absolute() or ".." in path.parts:
        raise PlanError(_LOG_PATH_RULE.format(path=path))
    resolved = (base / path).resolve()
    if resolved == base or not resolved.is_relative_to(base):
        raise PlanError(_LOG_PATH_RULE.format(path=path))
    return resolved


_LOG_PATH_RULE = (
    "prediction_log.path: '{path}' must be a relative folder inside the server's prediction-log "
    f"directory (set by {LOG_DIR_ENV}), e.g. 'canary'"
)


def _check_log_target(log_dir: Path, path: Path) -> None:
    """A PUT plan's log must be a folder the server can write into (checked before any model loads)."""
    resolved = confined_log_path(log_dir, path)
    if resolved.exists() and not resolved.is_dir():  # only ever inside the server's own log directory
        raise PlanError(f"prediction_log.path: '{path}' is a file in the prediction-log directory; name a folder")


# ---------------------------------------------------------------------------- active plan


@dataclasses.dataclass
class VariantHandle:
    name: str
    model: ServedModel
    batcher: Batcher


@dataclasses.dataclass
class ShadowHandle:
    name: str
    model: ServedModel
    worker: BackgroundWorker


@dataclasses.dataclass
class ServiceHandle:
    service: Service
    router: ServiceRouter
    variants: dict[str, VariantHandle]
    shadows: list[ShadowHandle]


@dataclasses.dataclass
class ActivePlan:
    """An immutable snapshot a request holds from routing to response."""

    plan: Plan
    digest: str
    services: dict[tuple[str, str], ServiceHandle]
    models: dict[str, ServedModel]
    batchers: dict[str, Batcher]
    families: frozenset[str]
    prediction_log: PredictionLog | None
    activated_at: str
    inflight: int = 0
    # The metric children of each (family, region, variant, version), looked up once per plan.
    series: dict[tuple[str, str, str, str], RequestSeries] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RequestSeries:
    """The metric children every answered request of one (family, region, variant, version) writes."""

    ok: Any
    latency: Any
    predictions: Any

    @classmethod
    def of(cls, metrics: ServingMetrics, labels: tuple[str, str, str, str]) -> RequestSeries:
        family, region, variant = labels[:3]
        return cls(
            ok=metrics.requests.labels(*labels, "ok"),
            latency=metrics.latency.labels(family, region, variant),
            predictions=metrics.prediction.labels(family, region, variant),
        )


class FailedModels(OrderedDict[str, dict[str, Any]]):
    """The last ``limit`` models that failed to load; an evicted one also leaves ``/metrics``.

    Without a bound, every PUT of an unknown model URI would grow ``/readyz`` and the
    ``model_load_failures{model=...}`` series for the life of the process.
    """

    def __init__(self, limit: int, on_evict: Callable[[str], None]) -> None:
        super().__init__()
        self.limit = limit
        self._on_evict = on_evict

    def __setitem__(self, uri: str, entry: dict[str, Any]) -> None:
        super().__setitem__(uri, entry)
        self.move_to_end(uri)
        while len(self) > self.limit:
            evicted, _ = self.popitem(last=False)
            self._on_evict(evicted)


class PlanManager:
    """Loads plans, swaps them atomically and releases what the old plan no longer needs."""

    def __init__(self, settings: ServeSettings, metrics: ServingMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.active: ActivePlan | None = None
        self.loading: dict[str, Any] | None = None
        self.progress: LoadProgress | None = None  # of the plan loading now, else of the last one
        self.last_rejected: dict[str, Any] | None = None
        self.failed_models: dict[str, dict[str, Any]] = FailedModels(MAX_FAILED_MODELS, self._forget_failure)
        self.shadow_pool = BackgroundWorker("shadows", maxsize=1024, threads=settings.shadow_threads)
        self.counts = {"applied": 0, "rejected": 0}
        self._lock = asyncio.Lock()
        self._file_stamp: tuple[int, int] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._claimed: set[str] = set()  # digests an admin request is applying: the file watcher leaves them alone
        self.retrying: dict[str, Any] | None = None  # the plan waiting for the registry, and why
        self._retry_digest: str | None = None  # the one plan worth retrying; any other swap supersedes it
        self._retry_loops: set[str] = set()
        self._settled = asyncio.Event()  # a plan is active, or the first one cannot become active

    # -- lifecycle

    def start(self) -> None:
        self._spawn(self._watch_file())

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
            self.loading = {"digest": digest, "since": _now()}
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
        if self.retrying is not None and state.next_action is not None:
            self.retrying["next_attempt_in_s"] = round(state.next_action.sleep, 2)

    def _stop_retrying(self) -> None:
        self._retry_digest = None
        self.retrying = None
        for uri in [uri for uri, f in self.failed_models.items() if f["state"] == "retrying"]:
            del self.failed_models[uri]  # in place: the bounded FailedModels must stay what it is

    def _failed(self, digest: str, uri: str | None, exc: Exception) -> dict[str, Any]:
        return self._transient(digest, uri, exc) if is_transient(exc) else self._reject(digest, uri, exc)

    def _transient(self, digest: str, uri: str | None, exc: Exception) -> dict[str, Any]:
        """Record a failure worth retrying: not remembered as rejected, shown in ``/readyz``."""
        error = public_error(exc)
        previous = self.retrying if self.retrying is not None and self.retrying["digest"] == digest else {}
        attempt = int(previous.get("attempt", 0)) + 1
        self._retry_digest = digest
        self.retrying = {
            "digest": digest, "model_uri": uri, "error": error, "attempt": attempt,
            "since": previous.get("since", _now()), "at": _now(),
        }  # fmt: skip
        if uri is not None:
            self.failed_models[uri] = {"uri": uri, "state": "retrying", "last_error": error, "at": _now()}
        log.warning(
            "plan load failed for a transient cause; retrying",
            extra={"event": "plan_retrying", "digest": digest, "model_uri": uri, "error": error, "attempt": attempt},
        )
        return {"status": "retrying", "digest": digest, "model_uri": uri, "error": error, "attempt": attempt}

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

    async def _fall_back(self) -> None:
        """With nothing active and a plan file that cannot serve, serve the last plan that did."""
        path = self.settings.last_good_path
        if self.active is not None or not path.exists():
            return
        try:
            plan = load_plan(path)
        except PlanError as exc:
            log.error("last good plan unreadable", extra={"event": "last_good_unreadable", "error": str(exc)})
            return
        if self._known(plan.digest()):
            return
        log.warning(
            "the plan file cannot serve; serving the last good plan",
            extra={"event": "plan_fallback", "digest": plan.digest(), "path": str(path)},
        )
        await self.apply(plan)

    async def _apply_locked(self, plan: Plan, digest: str) -> dict[str, Any]:
        started = time.perf_counter()
        current = self.active.models if self.active is not None else {}
        uris = plan.model_uris()
        self.progress = LoadProgress(total=len(uris), threads=self.settings.load_threads)
        outcome = await asyncio.to_thread(
            load_models,
            uris,
            current,
            lambda uri: self._load(uri, plan.batching.max_batch_size),
            self.progress,
            on_loaded=self._observe_load,
        )
        self._observe_progress(self.progress)
        if outcome.error is not None:
            return self._failed(digest, outcome.failed_uri, outcome.error)
        for uri in outcome.fresh:
            self.failed_models.pop(uri, None)
        new = self._build(plan, digest, outcome.models)
        old, self.active = self.active, new
        self._settled.set()
        self.counts["applied"] += 1
        self.metrics.swaps.labels("applied").inc()
        self.metrics.ready.set(1)
        self.metrics.plan_active.labels(digest).set(1)
        seconds = round(time.perf_counter() - started, 3)
        extra = {"event": "plan_active", "digest": digest, "loaded": outcome.fresh, "seconds": seconds}
        log.info("plan active", extra={**extra, "load": self.progress.to_dict()})
        if old is not None:
            self.metrics.plan_active.labels(old.digest).set(0)
            self._spawn(self._retire(old, keep=set(new.models) | {m.uri for m in new.models.values()}))
        return {"status": "active", "digest": digest, "seconds": seconds, "loaded": len(outcome.fresh)}

    def _observe_progress(self, progress: LoadProgress) -> None:
        self.metrics.models_reused.inc(progress.reused)
        if progress.rss_after_bytes is not None:
            self.metrics.process_rss.set(progress.rss_after_bytes)
        per_model = progress.rss_per_loaded_model_bytes
        if per_model is not None:
            self.metrics.rss_per_model.set(per_model)

    def _load(self, uri: str, warmup_batch: int) -> ServedModel:
        cache = self.settings.model_cache
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)  # removed under a running server: downloads go on
        return load_model(uri, cache, warmup_batch)

    def _reject(self, digest: str, uri: str | None, exc: Exception) -> dict[str, Any]:
        error, kind = public_error(exc), type(exc).__name__
        if uri is not None:
            self.failed_models[uri] = {
                "uri": uri,
                "state": "failed",
                "error_type": kind,
                "last_error": error,
                "at": _now(),
            }
            self.metrics.model_load_failures.labels(uri).inc()
        self.last_rejected = {"digest": digest, "model_uri": uri, "error_type": kind, "error": error, "at": _now()}
        self.counts["rejected"] += 1
        self.metrics.swaps.labels("rejected").inc()
        extra = {"event": "plan_rejected", "digest": digest, "model_uri": uri, "error": error}
        log.error("plan rejected", extra=extra, exc_info=exc)  # the traceback goes to the log only
        return {"status": "rejected", "digest": digest, "model_uri": uri, "error": error}

    def _forget_failure(self, uri: str) -> None:
        with contextlib.suppress(KeyError):
            self.metrics.model_load_failures.remove(uri)

    def reject_unparsable(self, error: str, source: str) -> None:
        """Record a plan file that does not validate (the old plan keeps serving)."""
        self.last_rejected = {"digest": None, "source": source, "error": error, "at": _now()}
        self.counts["rejected"] += 1
        self.metrics.swaps.labels("rejected").inc()
        log.error("plan rejected", extra={"event": "plan_rejected", "source": source, "error": error})

    def _observe_load(self, model: ServedModel) -> None:
        """Metrics and a log line for one freshly loaded model (called from a loader thread)."""
        status = model.status
        self.metrics.model_loads.inc()
        self.metrics.load_seconds.labels(status.name, model.version).set(status.load_seconds or 0)
        self.metrics.warmup_seconds.labels(status.name, model.version).set(status.warmup_seconds or 0)
        self.metrics.model_engine.labels(status.name, model.version, status.engine).set(1)
        log.info("model ready", extra={"event": "model_ready", "model": status.to_dict()})

    def _build(self, plan: Plan, digest: str, models: dict[str, ServedModel]) -> ActivePlan:
        old_batchers = self.active.batchers if self.active is not None else {}
        batchers: dict[str, Batcher] = {}
        for service in plan.services:
            for variant in service.variants:
                batchers.setdefault(variant.model_uri, self._batcher(old_batchers, models[variant.model_uri], plan))
        clock = fixed_clock(plan.clock_override) if plan.clock_override else system_clock
        services = {
            service.key: ServiceHandle(
                service=service,
                router=ServiceRouter(service, clock),
                variants={
                    v.name: VariantHandle(v.name, models[v.model_uri], batchers[v.model_uri]) for v in service.variants
                },
                shadows=[ShadowHandle(s.name, models[s.model_uri], self.shadow_pool) for s in service.shadows],
            )
            for service in plan.services
        }
        return ActivePlan(
            plan=plan,
            digest=digest,
            services=services,
            models=models,
            batchers=batchers,
            families=frozenset(s.family for s in plan.services),
            prediction_log=self._prediction_log(plan),
            activated_at=_now(),
        )

    def _batcher(self, old: dict[str, Batcher], model: ServedModel, plan: Plan) -> Batcher:
        batcher = old.get(model.uri)
        if batcher is not None:
            # Same model: keep its collector, only the bounds may have changed.
            batcher.max_batch_size = plan.batching.max_batch_size
            batcher.max_wait = plan.batching.max_wait_ms / 1000
            return batcher
        batcher = Batcher(
            model,
            max_batch_size=plan.batching.max_batch_size,
            max_wait_ms=plan.batching.max_wait_ms,
            on_batch=self._on_batch,
        )
        batcher.start()
        return batcher

    def _on_batch(self, model: ServedModel, rows: int) -> None:
        self.metrics.observe_batch(model.name, rows)

    def _prediction_log(self, plan: Plan) -> PredictionLog | None:
        section = plan.prediction_log
        sampling = self.settings.sampling
        if section is not None:
            sampling = SamplingSettings(section.sample_rate, section.rotate_mb, section.rotate_seconds)
        if sampling.sample_rate <= 0:
            return None
        try:
            base = self.settings.log_dir
            root = confined_log_path(base, section.path) if section and section.path else base.resolve()
            old = self.active.prediction_log if self.active is not None else None
            if old is not None and old.root == root and old.settings == sampling:
                return old
            on_drop = self.metrics.samples.labels("dropped").inc
            return PredictionLog(root, sampling, on_drop=on_drop, shipper=self._shipper(base.resolve(), root))
        except (PlanError, OSError) as exc:
            # The models are loaded by now: failing the swap here would strand them. PUT refuses
            # such a plan up front (422); a plan file that gets here serves without its log.
            log.error("prediction log off", extra={"event": "prediction_log_off", "error": public_error(exc)})
            return None

    def _shipper(self, base: Path, root: Path) -> Shipper | None:
        """Ship ``root``'s files to the same relative place under the server's log URL (None: keep them here)."""
        shipper = shipper_from_env(self.settings.shipping, base)
        return shipper.for_folder(root) if shipper is not None else None

    async def _retire(self, old: ActivePlan, keep: set[str]) -> None:
        """Wait for the old plan's in-flight requests, then stop and release what is unused."""
        deadline = time.monotonic() + RETIRE_TIMEOUT_S
        while old.inflight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.active is None or self.active.digest != old.digest:
            with contextlib.suppress(KeyError):
                self.metrics.plan_active.remove(old.digest)
        for uri, batcher in old.batchers.items():
            if uri not in keep:
                await batcher.close()
        released = [uri for uri in old.models if uri not in keep]
        for uri in released:
            old.models[uri].release()
        if old.prediction_log is not None and (
            self.active is None or self.active.prediction_log is not old.prediction_log
        ):
            old.prediction_log.close()  # its thread publishes what is queued
        if released:
            log.info("models released", extra={"event": "models_released", "models": released, "plan": old.digest})

    # -- plan file

    async def _watch_file(self) -> None:
        while True:
            try:
                await self._check_file()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("plan file check failed", extra={"path": str(self.settings.plan_path)})
            if self.retrying is None:
                self._settled.set()  # nothing will become active without a new plan: stop waiting for one
            await asyncio.sleep(self.settings.poll_seconds)

    async def _check_file(self) -> None:
        path = self.settings.plan_path
        try:
            stat = path.stat()
        except OSError as exc:
            if self._file_stamp != (-1, -1):
                self._file_stamp = (-1, -1)
                self.reject_unparsable(f"cannot read plan file {path}: {exc.strerror}", str(path))
                await self._fall_back()
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._file_stamp:
            return
        self._file_stamp = stamp
        try:
            plan = load_plan(path)
        except PlanError as exc:
            self.reject_unparsable(str(exc), str(path))
            await self._fall_back()
            return
        digest = plan.digest()
        if self._known(digest):
            return
        log.info("plan file changed", extra={"event": "plan_file_changed", "digest": digest, "path": str(path)})
        if (await self.apply(plan))["status"] == "rejected":
            await self._fall_back()

    def _known(self, digest: str) -> bool:
        return (
            digest in self._claimed
            or digest in self._retry_loops
            or (self.active is not None and self.active.digest == digest)
            or (self.loading is not None and self.loading["digest"] == digest)
            or (self.last_rejected is not None and self.last_rejected.get("digest") == digest)
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
        active = self.active
        models = {uri: m.status.to_dict() for uri, m in (active.models.items() if active else [])}
        for uri, failure in self.failed_models.items():
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
                "last_rejected": self.last_rejected,
                "retrying": self.retrying,
                "swaps": dict(self.counts),
                "path": str(self.settings.plan_path),
            },
            "models": models,
        }
        return ready, detail

    def _progress_line(self, ready: bool, active: ActivePlan | None) -> str:
        """One line for people and probes: ``loading 137/500``, ``ready 500/500``, ``retrying``, ``no plan``."""
        if self.loading is not None:
            return self.progress.summary() if self.progress is not None else "loading"
        if active is not None:
            count = len(active.models)
            return f"ready {count}/{count}" if ready else f"not ready ({count} models)"
        return "retrying" if self.retrying is not None else "no plan"


class _StillFailing(Exception):
    """A retry attempt failed for a transient cause again (tenacity retries on it)."""


class _Superseded(Exception):
    """Another plan was applied while this one waited for its next attempt."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def public_error(exc: BaseException) -> str:
    """A one-line reason for ``/readyz`` and admin answers: never a traceback.

    Errors from model loading can carry a whole remote or native stack trace in their
    text; that belongs in the server log (``exc_info``), not on an unauthenticated page.
    """
    text = exc.message if isinstance(exc, ServingError) else f"{type(exc).__name__}: {exc}"
    return one_line(text)


def one_line(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """The first meaningful line of ``text`` (a traceback header is skipped), at most ``limit`` characters."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Traceback (most recent call last)")] or [""]
    first = lines[0]
    return first if len(first) <= limit else first[: limit - 1] + "…"


# ---------------------------------------------------------------------------- request parsing


class ClientGone(Exception):
    """The client disconnected (or was cut off by the read deadline) before its body arrived."""


class RequestError(ServingError):
    """A request problem that is not about one record (JSON, shape, size, routing)."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, status: int = 400, code: str = "bad_request"):
        super().__init__(message, field=field)
        self.status = status
        self.code = code


def parse_json(body: bytes) -> Any:
    """Decode a request body (raises ``RequestError`` naming the position)."""
    if not body.strip():
        raise RequestError("request body is empty; send a JSON object or array", field="body", code="bad_json")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"body is not valid JSON: {exc}", field="body", code="bad_json") from None


def request_records(body: bytes, max_records: int, mlflow_format: bool) -> list[Any]:
    """The records of a prediction body, in our format or MLflow's (one entry point for both routes)."""
    payload = parse_json(body)
    return mlflow_records(payload, max_records) if mlflow_format else records_of(payload, max_records)


def records_of(payload: Any, max_records: int) -> list[Any]:
    """The records of a predict body: one object, a list, or ``{"records": [...]}``."""
    if isinstance(payload, dict):
        records = payload.get("records", [payload])
        if not isinstance(records, list):
            raise RequestError("'records' must be a JSON array of objects", field="records")
    elif isinstance(payload, list):
        records = payload
    else:
        raise RequestError(
            f"body must be a JSON object (one record) or an array of records, got {type(payload).__name__}",
            field="body",
        )
    return _bounded(records, max_records)


def _bounded(records: list[Any], max_records: int) -> list[Any]:
    if not records:
        raise RequestError("no records to predict", field="records", status=422)
    if len(records) > max_records:
        raise _too_many(len(records), max_records, "records")
    return records


def mlflow_records(payload: Any, max_records: int) -> list[Any]:
    """The records of an MLflow scoring body (``dataframe_split``/``dataframe_records``/``inputs``)."""
    if not isinstance(payload, dict):
        raise RequestError("body must be a JSON object with dataframe_split, dataframe_records or inputs", field="body")
    if "dataframe_split" in payload:
        return _bounded(_split_records(payload["dataframe_split"], max_records), max_records)
    if "dataframe_records" in payload:
        records = payload["dataframe_records"]
        if not isinstance(records, list):
            raise RequestError("must be a JSON array of objects", field="dataframe_records")
        return _bounded(records, max_records)
    for key in ("inputs", "instances"):
        if key in payload:
            return _bounded(_columnar_or_records(payload[key], key, max_records), max_records)
    raise RequestError(
        f"unknown format: keys {sorted(payload)}; use dataframe_split, dataframe_records, inputs or instances",
        field="body",
    )


def _too_many(count: int, max_records: int, field: str) -> RequestError:
    return RequestError(
        f"{count} records, at most {max_records} per request (split the request)",
        field=field,
        status=413,
        code="too_many_records",
    )


def _column_names(columns: list[Any], field: str) -> list[str]:
    """Column names must be strings (a list or object as a name is a client bug, not a 500)."""
    for index, name in enumerate(columns):
        if not isinstance(name, str):
            raise RequestError(f"column names must be strings, got {type(name).__name__}", field=f"{field}[{index}]")
    return columns


def _split_records(split: Any, max_records: int) -> list[Any]:
    """``dataframe_split`` as records; names and the row count are checked before any row is built."""
    if (
        not isinstance(split, dict)
        or not isinstance(split.get("columns"), list)
        or not isinstance(split.get("data"), list)
    ):
        raise RequestError("must be {'columns': [...], 'data': [[...], ...]}", field="dataframe_split")
    columns = _column_names(split["columns"], "dataframe_split.columns")
    if len(split["data"]) > max_records:
        raise _too_many(len(split["data"]), max_records, "dataframe_split.data")
    records = []
    for index, row in enumerate(split["data"]):
        if not isinstance(row, list) or len(row) != len(columns):
            raise RequestError(
                f"row has not {len(columns)} values (one per column)", field=f"dataframe_split.data[{index}]"
            )
        records.append(dict(zip(columns, row, strict=True)))
    return records


def _columnar_or_records(inputs: Any, key: str, max_records: int) -> list[Any]:
    """``inputs``/``instances`` as records; the row count is checked before any row is built."""
    if isinstance(inputs, list):
        return inputs
    if isinstance(inputs, dict):
        columns = {name: (values if isinstance(values, list) else [values]) for name, values in inputs.items()}
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise RequestError(f"columns have different lengths {sorted(lengths)}", field=key)
        size = lengths.pop() if lengths else 0
        if size > max_records:
            raise _too_many(size, max_records, key)
        return [{name: values[i] for name, values in columns.items()} for i in range(size)]
    raise RequestError("must be a list of records or an object of column -> values", field=key)


def routing_key_of(records: list[Any], header: str | None, field: str) -> str | None:
    """The sticky routing key: the ``x-routing-key`` header, else the first record's field."""
    if header:
        return header
    first = records[0]
    value = first.get(field) if isinstance(first, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadInput(
            f"routing key must be a string or an integer, got {type(value).__name__}", field=f"records[0].{field}"
        )
    return str(value)


# ---------------------------------------------------------------------------- the ASGI app


@dataclasses.dataclass
class Response:
    status: int
    body: bytes
    content_type: bytes = b"application/json"


def json_response(status: int, payload: Any) -> Response:
    return Response(status, orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY))


def error_response(exc: ServingError) -> Response:
    return json_response(exc.status, exc.to_dict())


class ServingApp:
    """The ASGI application (one per worker process)."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.metrics = ServingMetrics()
        self.manager: PlanManager | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            response = await self._http(scope, receive)
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [
                        (b"content-type", response.content_type),
                        (b"content-length", b"%d" % len(response.body)),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": response.body})
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.startup()
                await self._manager().settled(self.settings.first_plan_wait_seconds)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def startup(self) -> None:
        """Start the plan manager: the first plan loads in the background (``/healthz`` answers meanwhile)."""
        self.manager = PlanManager(self.settings, self.metrics)
        self.metrics.ready.set(0)
        self.manager.start()
        log.info("server starting", extra={"event": "start", "plan": str(self.settings.plan_path)})

    async def shutdown(self) -> None:
        if self.manager is not None:
            await self.manager.stop()

    async def _http(self, scope: Scope, receive: Receive) -> Response:
        try:
            _check_declared_length(_header(scope, b"content-length"))
            body = await _read_body(receive)
            return await self._dispatch(scope, body)
        except ClientGone:
            return Response(499, b"")  # nobody reads it: uvicorn drops a response to a closed connection
        except ServingError as exc:
            return error_response(exc)
        except Exception as exc:
            log.exception("unhandled error", extra={"path": scope.get("path")})
            return json_response(500, {"error": "internal", "message": f"{type(exc).__name__}: {exc}"})

    async def _dispatch(self, scope: Scope, body: bytes) -> Response:
        method, path = scope["method"], scope["path"]
        parts = path.strip("/").split("/")
        if method == "POST" and len(parts) == 4 and parts[:2] == ["v1", "predict"]:
            return await self.predict(parts[2], parts[3], body, scope, mlflow_format=False)
        if method == "POST" and len(parts) == 3 and parts[0] == "invocations":
            return await self.predict(parts[1], parts[2], body, scope, mlflow_format=True)
        if path == "/healthz":
            return json_response(200, {"status": "alive", "pid": os.getpid()})
        if path == "/readyz":
            ready, detail = self._manager().readiness()
            return json_response(200 if ready else 503, detail)
        if path == "/metrics":
            return Response(200, self.metrics.exposition(), CONTENT_TYPE.encode())
        if path == "/admin/plan":
            return await self.admin_plan(method, body, scope)
        if len(parts) >= 2 and parts[0] in ("v1", "invocations"):
            raise RequestError(f"{method} not allowed on {path}; use POST", status=405, code="method_not_allowed")
        raise RequestError(f"no endpoint {path}", field="path", status=404, code="not_found")

    def _manager(self) -> PlanManager:
        if self.manager is None:
            raise RequestError("server is starting", status=503, code="not_ready")
        return self.manager

    # -- prediction

    async def predict(self, family: str, region: str, body: bytes, scope: Scope, *, mlflow_format: bool) -> Response:
        """Validate, route, batch and answer one prediction request."""
        started = time.perf_counter()
        active = self._manager().active
        if active is None:
            raise RequestError("no plan is active yet; see /readyz", status=503, code="not_ready")
        handle = _service(active, family, region)
        large = len(body) > INLINE_PARSE_BYTES  # parse and validate off the loop: /healthz keeps answering
        records = await _maybe_off_loop(large, request_records, body, active.plan.max_records, mlflow_format)
        key = routing_key_of(records, _header(scope, b"x-routing-key"), active.plan.routing_key)
        decision = handle.router.route(key)
        variant = handle.variants[decision.variant]
        labels = (family, region, variant.name, variant.model.version)
        try:
            prepared = await _maybe_off_loop(large, variant.model.prepare_counted, records)
        except BadInput:
            self.metrics.requests.labels(*labels, "bad_input").inc()
            _count(active.prediction_log, labels, "bad_input")
            raise
        for feature, count in prepared.unknown.items():
            self.metrics.unknown_categories.labels(family, region, variant.name, feature).inc(count)
        active.inflight += 1
        try:
            output = await variant.batcher.submit(prepared.matrix)
        except ServingError:
            self.metrics.requests.labels(*labels, "error").inc()
            _count(active.prediction_log, labels, "error")
            raise
        finally:
            active.inflight -= 1
        request_id = new_request_id(_header(scope, b"x-request-id"))
        self._observe(active, handle, variant, labels, (request_id, records, prepared.matrix), output, started)
        if mlflow_format:
            return json_response(200, {"predictions": output})
        return json_response(
            200,
            {
                "predictions": output,
                "model": variant.model.name,
                "version": variant.model.version,
                "variant": variant.name,
                "routed_by": decision.reason,
                "request_id": request_id,
            },
        )

    def _observe(
        self,
        active: ActivePlan,
        handle: ServiceHandle,
        variant: VariantHandle,
        labels: tuple[str, str, str, str],
        request: tuple[str, list[Any], np.ndarray],
        output: np.ndarray,
        started: float,
    ) -> None:
        request_id, records, _ = request
        series = active.series.get(labels)
        if series is None:
            series = active.series[labels] = RequestSeries.of(self.metrics, labels)
        series.ok.inc()
        series.latency.observe(time.perf_counter() - started)
        observe_sample(series.predictions, output)
        self._sample(active.prediction_log, labels, active.digest, request, output)
        for shadow in handle.shadows:
            self._shadow(active, labels, shadow, records, output, request_id)

    def _shadow(
        self,
        active: ActivePlan,
        labels: tuple[str, str, str, str],
        shadow: ShadowHandle,
        records: list[Any],
        served: np.ndarray,
        request_id: str,
    ) -> None:
        family, region = labels[0], labels[1]
        metrics, plog = self.metrics, active.prediction_log

        def run() -> None:
            if shadow.model.status.state == "released":  # queued before its plan was retired
                return
            try:
                predicted = shadow.model.predict(shadow.model.prepare(records))
            except Exception as exc:
                metrics.shadow.labels(family, region, shadow.name, "error").inc()
                log.warning("shadow failed", extra={"event": "shadow_error", "shadow": shadow.name, "error": str(exc)})
                return
            metrics.shadow.labels(family, region, shadow.name, "ok").inc()
            diff = _mean_abs_diff(predicted, served)
            if diff is not None:
                metrics.shadow_diff.labels(family, region, shadow.name).observe(diff)
            if plog is not None:  # every shadow comparison, as the shadow ran off the request path anyway
                extra: dict[str, Any] = {"shadow": shadow.name, "shadow_model": shadow.model.name}
                extra.update(shadow_version=shadow.model.version, shadow_predictions=predicted, mean_abs_diff=diff)
                plog.offer(Sample("shadow", request_id, labels, active.digest, None, None, served, time.time(), extra))

        if not shadow.worker.offer(run):
            metrics.shadow.labels(family, region, shadow.name, "dropped").inc()

    def _sample(
        self,
        plog: PredictionLog | None,
        labels: tuple[str, str, str, str],
        digest: str,
        request: tuple[str, list[Any], np.ndarray],
        output: np.ndarray,
    ) -> None:
        """Count the request; hand a sampled one to the prediction log (a tuple into a bounded queue; never blocks)."""
        if plog is None:
            return
        plog.count(labels, "ok")
        if not plog.sampled():
            return
        request_id, records, matrix = request
        queued = plog.offer(Sample("prediction", request_id, labels, digest, records, matrix, output, time.time()))
        if queued:
            self.metrics.samples.labels("queued").inc()

    # -- admin

    async def admin_plan(self, method: str, body: bytes, scope: Scope) -> Response:
        """``GET``: the active plan. ``PUT``: validate, swap, then write the plan file. Both need the token."""
        self._authorize(scope)
        manager = self._manager()
        if method == "GET":
            active = manager.active
            return json_response(
                200,
                {
                    "digest": active.digest if active else None,
                    "plan": active.plan.model_dump(mode="json") if active else None,
                    "loading": manager.loading,
                    "last_rejected": manager.last_rejected,
                },
            )
        if method != "PUT":
            raise RequestError("use GET or PUT on /admin/plan", status=405, code="method_not_allowed")
        plan = await asyncio.to_thread(self._admin_plan_of, body)
        if manager.active is not None and manager.active.digest == plan.digest():
            return json_response(200, {"status": "active", "digest": plan.digest(), "unchanged": True})
        manager.claim(plan.digest())
        # The plan file is written by the manager once the plan is active: a rejected plan never lands there.
        if _query(scope).get("wait") in ("1", "true", "yes"):
            result = await manager.apply_claimed(plan, persist=body)
            return json_response({"active": 200, "rejected": 409}.get(result["status"], 503), result)
        manager.schedule(plan, persist=body)
        return json_response(202, {"status": "loading", "digest": plan.digest()})

    def _admin_plan_of(self, body: bytes) -> Plan:
        """Validate a PUT body as a plan this server may apply (parsing a large plan is CPU work: run in a thread)."""
        try:
            plan = parse_plan_text(body, "request body")
            if plan.prediction_log is not None and plan.prediction_log.path is not None:
                _check_log_target(self.settings.log_dir, plan.prediction_log.path)
        except PlanError as exc:
            raise RequestError(str(exc), field="plan", status=422, code="invalid_plan") from None
        return plan

    def _authorize(self, scope: Scope) -> None:
        check_admin_token(self.settings.admin_token, _header(scope, b"authorization"))


def check_admin_token(token: str | None, authorization: str | None) -> None:
    """Admit an admin request only with ``Authorization: Bearer <token>``, and only when a token is configured.

    Raises:
        RequestError: 403 when the admin API is off (no token configured), 401 when the
            header is missing or carries another token (compared in constant time).
    """
    if not token:
        raise RequestError(
            f"the admin API is off: start the server with {TOKEN_ENV} set to enable it "
            "(without it, plans come only from the plan file)",
            status=403,
            code="admin_disabled",
        )
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise RequestError(
            "admin endpoints need 'Authorization: Bearer <token>' with the server's token",
            status=401,
            code="unauthorized",
        )


async def _maybe_off_loop(off: bool, fn: Callable[..., _T], *args: Any) -> _T:
    return await asyncio.to_thread(fn, *args) if off else fn(*args)


def _service(active: ActivePlan, family: str, region: str) -> ServiceHandle:
    handle = active.services.get((family, region))
    if handle is not None:
        return handle
    if family not in active.families:
        raise RequestError(
            f"unknown family '{family}' (served: {', '.join(sorted(active.families))})",
            field="family",
            status=404,
            code="unknown_service",
        )
    regions = sorted(r for f, r in active.services if f == family)
    raise RequestError(
        f"region '{region}' is not served for family '{family}' (served: {', '.join(regions)})",
        field="region",
        status=404,
        code="unknown_service",
    )


def _count(plog: PredictionLog | None, labels: tuple[str, str, str, str], outcome: str) -> None:
    if plog is not None:
        plog.count(labels, outcome)


def _mean_abs_diff(a: Any, b: Any) -> float | None:
    import numpy as np

    try:
        return float(np.mean(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))
    except (TypeError, ValueError):
        return None


def last_good_path(plan_path: Path) -> Path:
    """The copy of the last plan that was active, next to the plan file (``plan.json.last-good``)."""
    return plan_path.with_name(f"{plan_path.name}.last-good")


def _write_plan_file(path: Path, body: bytes) -> None:
    from modelyard.core.storage import write_bytes_atomic

    write_bytes_atomic(path, body)


def _too_large() -> RequestError:
    return RequestError(f"body larger than {MAX_BODY_BYTES} bytes", field="body", status=413, code="too_large")


def _check_declared_length(content_length: str | None) -> None:
    """Refuse a body whose declared size is over the limit before reading any of it."""
    if content_length is not None and content_length.strip().isdigit() and int(content_length) > MAX_BODY_BYTES:
        raise _too_large()


async def _read_body(receive: Receive) -> bytes:
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body
    chunks = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _query(scope: Scope) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}


def create_app() -> ServingApp:
    """uvicorn factory (one call per worker process): settings from the environment."""
    from modelyard.deploy.serving.lifeline import exit_with_supervisor

    configure_logging()
    settings = ServeSettings.from_env()
    if exit_with_supervisor():
        settings = dataclasses.replace(settings, first_plan_wait_seconds=WORKER_FIRST_PLAN_WAIT_S)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import warnings

    # scikit-learn estimators fitted on frames warn on every numpy call; the column order is the signature's.
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    return ServingApp(settings)
