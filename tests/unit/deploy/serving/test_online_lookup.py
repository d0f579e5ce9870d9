"""The server's online lookup: stored values, defaults on a miss or a timeout, the client's value wins (ADR 0019)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.core.featurespec import Calendar, FeatureDef, FeatureSpec, FittedSpec
from modelyard.core.online import EmbeddedStore, OnlineValue, RedisStore
from modelyard.deploy.serving.metrics import ServingMetrics
from modelyard.deploy.serving.online import OnlineLookup

COLUMNS = {"event_time": "timestamp", "area": "category", "km": "float"}
DEMAND = FeatureDef("demand", kind="window_count", key="area", online=True, default=1.0)


@pytest.fixture
def fitted() -> FittedSpec:
    spec = FeatureSpec("rides", "event_time", COLUMNS, (FeatureDef("km"), DEMAND))
    return spec.fit({}, Calendar("jakarta", "Asia/Jakarta"))


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a Redis that hangs)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server.getsockname()[1]
    server.close()


def _count(metrics: ServingMetrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "modelyard_online_lookups_total",
        {"family": "rides", "region": "jakarta", "feature": "demand", "outcome": outcome},
    )
    return value or 0.0


def test_stored_values_fill_records_and_a_sent_value_wins(tmp_path: Path, fitted: FittedSpec) -> None:
    store = EmbeddedStore(tmp_path / "o.sqlite", ttl_seconds=3600)
    store.write([OnlineValue("rides", "jakarta", "demand", "airport", 2.5, time.time() - 60, "push")], "t")
    metrics = ServingMetrics()
    lookup = OnlineLookup(store, "t", 1.0, metrics)
    records = [
        {"km": 1.0, "area": "airport"},
        {"km": 1.0, "area": "moon"},
        {"km": 1.0, "area": "airport", "demand": 7.0},
        {"km": 1.0},  # no key: left for the featuriser to name 'area'
    ]
    asyncio.run(lookup.fill("rides", "jakarta", fitted, records))
    assert [r.get("demand") for r in records] == [2.5, 1.0, 7.0, None]
    assert (_count(metrics, "hit"), _count(metrics, "miss"), _count(metrics, "sent")) == (1, 1, 1)
    age = metrics.registry.get_sample_value(
        "modelyard_online_value_age_seconds_sum", {"family": "rides", "region": "jakarta", "feature": "demand"}
    )
    assert age is not None
    assert 59 <= age < 120


def test_a_store_that_hangs_gives_the_default_within_the_bound(black_hole: int, fitted: FittedSpec) -> None:
    metrics = ServingMetrics()
    lookup = OnlineLookup(RedisStore(f"redis://127.0.0.1:{black_hole}/0", 60), "t", 0.05, metrics)
    records = [{"km": 1.0, "area": "airport"}, {"km": 2.0, "area": "north"}]

    async def fill() -> None:
        await lookup.fill("rides", "jakarta", fitted, records)
        await lookup.close()

    asyncio.run(fill())
    assert [r["demand"] for r in records] == [1.0, 1.0]
    assert _count(metrics, "timeout") == 2


def test_a_store_that_refuses_gives_the_default_and_counts_an_error(fitted: FittedSpec) -> None:
    metrics = ServingMetrics()
    lookup = OnlineLookup(RedisStore("redis://127.0.0.1:1/0", 60, timeout_seconds=0.5), "t", 2.0, metrics)
    records = [{"km": 1.0, "area": "airport"}]
    asyncio.run(lookup.fill("rides", "jakarta", fitted, records))
    assert records[0]["demand"] == 1.0
    assert _count(metrics, "error") == 1


def test_without_a_store_every_lookup_is_a_miss(fitted: FittedSpec) -> None:
    metrics = ServingMetrics()
    lookup = OnlineLookup.from_env({}, metrics)
    records = [{"km": 1.0, "area": "airport"}]
    asyncio.run(lookup.fill("rides", "jakarta", fitted, records))
    assert records[0]["demand"] == 1.0
    assert _count(metrics, "miss") == 1


class CountingStore(EmbeddedStore):
    """The embedded store, counting its reads."""

    reads = 0

    async def aread(self, keys):  # type: ignore[no-untyped-def]
        self.reads += 1
        await asyncio.sleep(0.01)  # a round trip, during which other requests arrive
        return self.read(keys)


def test_concurrent_requests_share_store_reads_and_each_gets_its_own_values(tmp_path: Path, fitted: FittedSpec) -> None:
    store = CountingStore(tmp_path / "o.sqlite", ttl_seconds=3600)
    areas = [f"area{i}" for i in range(20)]
    store.write(
        [OnlineValue("rides", "jakarta", "demand", a, float(i), time.time(), "push") for i, a in enumerate(areas)], "t"
    )
    lookup = OnlineLookup(store, "t", 5.0, ServingMetrics())
    requests = [[{"km": 1.0, "area": area}, {"km": 2.0, "area": "moon"}] for area in areas]

    async def fill_all() -> None:
        await asyncio.gather(*(lookup.fill("rides", "jakarta", fitted, records) for records in requests))

    asyncio.run(fill_all())
    assert [[r["demand"] for r in records] for records in requests] == [[float(i), 1.0] for i in range(20)]
    assert store.reads <= 2  # the first request's read, then one for the 19 that arrived during it


class SlowThenFastStore(EmbeddedStore):
    """The embedded store whose first read takes longer than the lookup's bound."""

    reads = 0

    async def aread(self, keys):  # type: ignore[no-untyped-def]
        self.reads += 1
        if self.reads == 1:
            await asyncio.sleep(0.3)
        return self.read(keys)


def test_a_slow_read_gives_its_batch_the_default_and_the_next_read_its_values(tmp_path: Path, fitted: FittedSpec):
    store = SlowThenFastStore(tmp_path / "o.sqlite", ttl_seconds=3600)
    store.write([OnlineValue("rides", "jakarta", "demand", "airport", 2.5, time.time(), "push")], "t")
    metrics = ServingMetrics()
    lookup = OnlineLookup(store, "t", 0.05, metrics)
    first, second, later = ([{"km": 1.0, "area": "airport"}] for _ in range(3))

    async def scenario() -> float:
        started = time.perf_counter()
        await asyncio.gather(
            lookup.fill("rides", "jakarta", fitted, first), lookup.fill("rides", "jakarta", fitted, second)
        )
        waited = time.perf_counter() - started
        await asyncio.sleep(0.4)  # the slow read finishes in the background, its values unused
        await lookup.fill("rides", "jakarta", fitted, later)
        return waited

    waited = asyncio.run(scenario())
    assert waited < 0.25  # the bound, not the read's 0.3 s
    assert [first[0]["demand"], second[0]["demand"], later[0]["demand"]] == [1.0, 1.0, 2.5]
    assert (_count(metrics, "timeout"), _count(metrics, "hit")) == (2, 1)
