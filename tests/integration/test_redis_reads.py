"""The server's reads from the machine's real Redis: its own read connection, the pooled client beside it.

``RedisStore.aread`` sends ``MGET`` over one connection of its own (redis-py's ``Connection``
without the client's per-command layer) and gives a read that overlaps it to the pooled client.
These tests check that overlapping reads each get their own values, and that a read over a
connection Redis closed is answered by the pooled client, the next one over its own connection
opened again. Keys live under a prefix of their own, deleted at the end.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from modelyard.core.online import OnlineValue, RedisStore

REDIS_URL = "redis://127.0.0.1:6379/0"
AREAS = [f"area-{i}" for i in range(40)]


@pytest.fixture
def store() -> Iterator[tuple[RedisStore, str]]:
    """A store holding one value per area under a fresh prefix (deleted afterwards)."""
    prefix = f"test-reads-{uuid.uuid4().hex[:8]}"
    store = RedisStore(REDIS_URL, ttl_seconds=600)
    now = time.time()
    store.write(
        [OnlineValue("rides", "jakarta", "demand", a, float(i), now, "push") for i, a in enumerate(AREAS)], prefix
    )
    try:
        yield store, prefix
    finally:
        store.delete(prefix)
        store.close()


def keys(prefix: str, areas: list[str]) -> list[str]:
    return [f"{prefix}:rides:jakarta:demand:{area}" for area in areas]


def test_overlapping_reads_each_get_their_own_values(store: tuple[RedisStore, str]) -> None:
    redis_store, prefix = store
    wanted = [[AREAS[i], AREAS[(i * 7) % 40], "nowhere"] for i in range(40)]

    async def read_all() -> list[list[float | None]]:
        try:
            answers = await asyncio.gather(*(redis_store.aread(keys(prefix, areas)) for areas in wanted))
            return [[None if stored is None else stored.value for stored in answer] for answer in answers]
        finally:
            await redis_store.aclose()

    got = asyncio.run(read_all())

    assert got == [[float(i), float((i * 7) % 40), None] for i in range(40)]


def test_a_read_over_a_connection_redis_closed_is_answered_and_the_next_opens_it_again(
    store: tuple[RedisStore, str],
) -> None:
    redis_store, prefix = store
    admin = redis.Redis.from_url(REDIS_URL)

    async def read_kill_read() -> list[float | None]:
        try:
            await redis_store.aping()
            first = (await redis_store.aread(keys(prefix, AREAS[3:4])))[0]
            own = redis_store._read_connection()._writer.get_extra_info("sockname")
            assert admin.client_kill(f"{own[0]}:{own[1]}")  # Redis closes the read connection
            noticed = (await redis_store.aread(keys(prefix, AREAS[4:5])))[0]  # finds it closed: the pool answers
            again = (await redis_store.aread(keys(prefix, AREAS[5:6])))[0]  # its own connection, opened again
            return [None if stored is None else stored.value for stored in (first, noticed, again)]
        finally:
            await redis_store.aclose()
            admin.close()

    assert asyncio.run(read_kill_read()) == [3.0, 4.0, 5.0]
