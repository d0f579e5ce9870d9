"""Online features at request time: look a record's online window aggregates up by its key (ADR 0019).

Before a routed request is featurised, every online feature a raw record does not carry is
read from the online store by the record's key field, all of a request's keys in one read
(``MGET``; concurrent requests' keys are coalesced into one, :class:`CoalescedReads`) bounded by
``timeout_ms``; a key the store lacks, a read that times out or fails,
and a store that is not configured all give the feature's declared ``default``. A value the
client sends wins (replays send what was served). Each lookup is counted by outcome (``hit``,
``miss``, ``timeout``, ``error``, ``sent``) and a hit's age (now minus its window's end) observed.

``POST /admin/features/{family}/{region}`` (admin token) pushes fresher values: the same
checks as ``modelyard features push`` (:func:`modelyard.core.online.pushed_values`), against the
online features of the version that serves the pair now.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson
from prometheus_client import Counter, Histogram

from modelyard.core.featurespec import FeatureDef, FittedSpec
from modelyard.core.online import (
    SERVE_PREFIX_ENV,
    SERVE_TIMEOUT_ENV,
    SERVE_TTL_ENV,
    SERVE_URL_ENV,
    EmbeddedStore,
    PushError,
    RedisStore,
    entry_key,
    key_text,
    open_store,
    pushed_values,
)
from modelyard.deploy.serving.active import ActivePlan
from modelyard.deploy.serving.asgi import Response, allow, json_response
from modelyard.deploy.serving.errors import RequestError
from modelyard.deploy.serving.metrics import ServingMetrics

log = logging.getLogger("modelyard.serving")

URL_ENV, PREFIX_ENV, TIMEOUT_ENV, TTL_ENV = SERVE_URL_ENV, SERVE_PREFIX_ENV, SERVE_TIMEOUT_ENV, SERVE_TTL_ENV
DEFAULT_TIMEOUT_MS = 20.0
AGE_BUCKETS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400, 30 * 86400, 365 * 86400)
Wanted = tuple[dict[str, Any], FeatureDef, str]  # record, feature, store key


class OnlineMetrics:
    """The lookups by outcome and the age of the values found."""

    def __init__(self, metrics: ServingMetrics) -> None:
        self.lookups = Counter(
            "modelyard_online_lookups",
            "Online feature values by outcome: hit, miss (default served), timeout, error, sent (by the client)",
            ["family", "region", "feature", "outcome"],
            registry=metrics.registry,
        )
        self.age = Histogram(
            "modelyard_online_value_age_seconds",
            "Age of a served online value: request time minus the end of its window",
            ["family", "region", "feature"],
            buckets=AGE_BUCKETS,
            registry=metrics.registry,
        )
        self._counts: dict[tuple[str, str, str, str], Any] = {}
        self._ages: dict[tuple[str, str, str], Any] = {}

    def count(self, family: str, region: str, feature: str, outcome: str) -> None:
        """One lookup of ``feature`` by outcome (the labelled child kept: ``labels()`` is a lock and a lookup)."""
        key = (family, region, feature, outcome)
        child = self._counts.get(key)
        if child is None:
            child = self._counts[key] = self.lookups.labels(*key)
        child.inc()

    def observe_age(self, family: str, region: str, feature: str, seconds: float) -> None:
        key = (family, region, feature)
        child = self._ages.get(key)
        if child is None:
            child = self._ages[key] = self.age.labels(*key)
        child.observe(seconds)


class _Batch(list[tuple[list[str], "asyncio.Future[list[Any] | None]"]]):
    """The reads waiting for one store read, and the timer that gives up on them."""

    timer: asyncio.TimerHandle | None = None

    def expire(self) -> None:
        """Answer every read of the batch still waiting with None (the bound passed; the read goes on)."""
        for _, future in self:
            if not future.done():
                future.set_result(None)


class CoalescedReads:
    """Concurrent requests' reads merged into one store read at a time (one ``MGET`` for many requests).

    A request's keys wait while the read before them is in flight, then go together with every
    other request's that arrived meanwhile: under load the store sees a few reads carrying many keys
    instead of one read per request, and the client's per-command cost (most of a lookup's) is shared.
    The bound is one timer a batch, set when its first read arrives: at ``timeout_seconds`` every
    read still waiting in it is answered None (a later read in the batch waits less, never more).
    The store read itself is not cancelled: it finishes in the background and its connection goes
    back to the pool (cancelling would close it, and the next request would pay to reopen it).
    """

    def __init__(self, store: RedisStore | EmbeddedStore, timeout_seconds: float) -> None:
        self.store = store
        self.timeout_seconds = timeout_seconds
        self._pending = _Batch()
        self._flushing = False
        self._flusher: asyncio.Task[None] | None = None

    def read(self, keys: list[str]) -> asyncio.Future[list[Any] | None]:
        """A future of the stored values of ``keys`` (in order), None past the bound; a failed read raises."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any] | None] = loop.create_future()
        batch = self._pending
        if not batch:
            batch.timer = loop.call_later(self.timeout_seconds, batch.expire)
        batch.append((keys, future))
        if not self._flushing:
            self._flushing = True
            self._flusher = loop.create_task(self._flush())  # held: the loop keeps only a weak reference
        return future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, _Batch()
                try:
                    values = await self.store.aread([key for keys, _ in batch for key in keys])
                except Exception as exc:
                    _settle(batch, exc)
                    continue
                _settle(batch, values)
        finally:
            self._flushing = False


def _settle(batch: _Batch, outcome: list[Any] | Exception) -> None:
    """Give each waiting read of ``batch`` its values (or the read's error); stop the batch's timer."""
    if batch.timer is not None:
        batch.timer.cancel()
    start = 0
    for keys, future in batch:
        if not future.done():
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome[start : start + len(keys)])
        start += len(keys)


class OnlineLookup:
    """Fills the online features of raw records from ``store`` (None: no store, every lookup a miss).

    Args:
        store: The online store (Redis or the embedded file), or None.
        prefix: The keys' prefix (``online.prefix`` of the config that materialised them).
        timeout_seconds: The bound on one request's read.
        metrics: The server's metrics (the series are added to its registry).
    """

    def __init__(
        self, store: RedisStore | EmbeddedStore | None, prefix: str, timeout_seconds: float, metrics: ServingMetrics
    ) -> None:
        self.store = store
        self.prefix = prefix
        self.timeout_seconds = timeout_seconds
        self.metrics = OnlineMetrics(metrics)
        self._reads = CoalescedReads(store, timeout_seconds) if store is not None else None

    @classmethod
    def from_env(cls, env: Mapping[str, str], metrics: ServingMetrics) -> OnlineLookup:
        """The lookup the environment describes (``MODELYARD_SERVE_ONLINE_URL``, ``_PREFIX``, ``_TIMEOUT_MS``).

        Raises:
            OnlineStoreError: the URL is neither Redis nor a SQLite file.
        """
        url = (env.get(URL_ENV) or "").strip()
        ttl_hours = float(env.get(TTL_ENV) or 168)
        store = open_store(url, ttl_hours * 3600) if url else None
        timeout_ms = float(env.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_MS)
        if timeout_ms <= 0:
            raise RequestError(f"{TIMEOUT_ENV} is {timeout_ms}; give a positive number of milliseconds")
        return cls(store, env.get(PREFIX_ENV) or "modelyard", timeout_ms / 1000, metrics)

    async def fill(self, family: str, region: str, fitted: FittedSpec | None, records: list[Any]) -> None:
        """Set each online feature a raw record lacks: the stored value, else the declared default."""
        if fitted is None or not fitted.online:
            return
        wanted = self._wanted(family, region, fitted.online, records)
        if not wanted:
            return
        stored, outcome = await self._read([key for _, _, key in wanted])
        now = time.time()
        for (record, feature, _), value in zip(wanted, stored, strict=True):
            if value is None:
                record[feature.name] = feature.default
                self.metrics.count(family, region, feature.name, outcome)
            else:
                record[feature.name] = value.value
                self.metrics.count(family, region, feature.name, "hit")
                self.metrics.observe_age(family, region, feature.name, max(0.0, now - value.window_end))

    def _wanted(self, family: str, region: str, online: tuple[FeatureDef, ...], records: list[Any]) -> list[Wanted]:
        wanted: list[Wanted] = []
        for record in records:
            if not isinstance(record, dict):
                continue  # the featuriser names a record that is not an object
            for feature in online:
                if feature.name in record:
                    self.metrics.count(family, region, feature.name, "sent")
                elif str(feature.key) in record:  # without its key the featuriser names the missing field
                    key = key_text(record[str(feature.key)])
                    wanted.append((record, feature, entry_key(self.prefix, family, region, feature.name, key or "")))
        return wanted

    async def _read(self, keys: list[str]) -> tuple[list[Any], str]:
        """The stored values (None where missing) and the outcome of a None: miss, timeout or error."""
        if self._reads is None:
            return [None] * len(keys), "miss"
        try:
            values = await self._reads.read(keys)
        except Exception as exc:  # a store that fails must not fail the request: the default is served
            log.warning("online lookup failed", extra={"event": "online_error", "error": f"{type(exc).__name__}"})
            return [None] * len(keys), "error"
        if values is None:
            return [None] * len(keys), "timeout"
        return values, "miss"

    async def warm_up(self) -> None:
        """Connect to the store at the server's start; a store that does not answer is logged, not fatal."""
        if self.store is None:
            return
        try:
            await asyncio.wait_for(self.store.aping(), 5.0)
        except Exception as exc:  # requests then serve defaults and count errors until it answers
            log.warning("online store not reachable at start", extra={"event": "online_error", "error": repr(exc)})

    async def close(self) -> None:
        """Release the store's connections (the server's shutdown)."""
        if self.store is not None:
            await self.store.aclose()

    async def push(self, method: str, family: str, region: str, body: bytes, active: ActivePlan | None) -> Response:
        """``POST /admin/features/{family}/{region}``: write pushed values (the caller checked the token)."""
        allow(method, f"/admin/features/{family}/{region}", "POST")
        if self.store is None:
            raise RequestError(
                f"no online store: start the server with {URL_ENV} (redis://... or sqlite:///path) to push values",
                status=409,
                code="no_online_store",
            )
        online = _served_online(active, family, region)
        try:
            items = orjson.loads(body).get("values") if body else None
        except (orjson.JSONDecodeError, AttributeError):
            raise RequestError('send a JSON object {"values": [...]}', field="values", status=400) from None
        try:
            values = pushed_values(items, family, region, online)
        except PushError as exc:
            raise RequestError(exc.message, field=exc.field or "values", status=422, code="bad_push") from None
        landed = await asyncio.to_thread(self.store.write, values, self.prefix)
        return json_response(
            200, {"written": landed, "skipped_older": len(values) - landed, "store": _store_name(self)}
        )


def _served_online(active: ActivePlan | None, family: str, region: str) -> list[str]:
    """The online features of the version(s) serving (family, region) now."""
    if active is None:
        raise RequestError("no plan is active yet; see /readyz", status=503, code="not_ready")
    handle = active.services.get((family, region))
    if handle is None:
        served = ", ".join(f"{f}/{r}" for f, r in sorted(active.services))
        raise RequestError(
            f"'{family}/{region}' is not served here (served: {served})",
            field="family",
            status=404,
            code="unknown_service",
        )
    names: set[str] = set()
    for variant in handle.variants.values():
        raw = variant.model.raw
        if raw is not None:
            names.update(f.name for f in raw.fitted.online)
    return sorted(names)


def _store_name(lookup: OnlineLookup) -> str:
    return "redis" if isinstance(lookup.store, RedisStore) else "embedded"


def admin_features_path(parts: list[str]) -> bool:
    """Whether ``parts`` is ``admin/features/{family}/{region}``."""
    return len(parts) == 4 and parts[:2] == ["admin", "features"] and all(parts)


def fitted_of(model: Any) -> FittedSpec | None:
    """The fitted spec of a loaded model (None: a model without one takes feature records)."""
    raw = getattr(model, "raw", None)
    return None if raw is None else raw.fitted
