"""The two online stores behind one interface: Redis (production) and a SQLite file (the demo), ADR 0019.

Both keep :mod:`~modelyard.core.online.layout`'s keys and values, write a chunk of values in one
round trip (a Redis pipeline, one SQLite transaction) with "a newer or equal window end wins", let
a value expire ``ttl_seconds`` after its last write, and read many keys in one call (``MGET``,
one ``SELECT``). ``aread`` never blocks an event loop (redis-py's asyncio client; the SQLite read
in a thread). Clients are made on first use: nothing connects at import or construction.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from modelyard.core.errors import ModelyardError
from modelyard.core.online.layout import OnlineValue, Stored, decode, encode

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
# What a serving process reads (deploy/serving/online.py); the local deploy target sets them from the config.
SERVE_URL_ENV = "MODELYARD_SERVE_ONLINE_URL"
SERVE_PREFIX_ENV = "MODELYARD_SERVE_ONLINE_PREFIX"
SERVE_TIMEOUT_ENV = "MODELYARD_SERVE_ONLINE_TIMEOUT_MS"
SERVE_TTL_ENV = "MODELYARD_SERVE_ONLINE_TTL_HOURS"
# KEYS[1]: the key; ARGV: the encoded value, its window end, the TTL in seconds. Skips an older window.
_NEWER_WINS = """
local old = redis.call('GET', KEYS[1])
if old then
  local first = string.find(old, '|', 1, true)
  if first then
    local second = string.find(old, '|', first + 1, true)
    local ended = tonumber(string.sub(old, first + 1, (second or 0) - 1))
    if ended and ended > tonumber(ARGV[2]) then return 0 end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"""


class OnlineStoreError(ModelyardError, ConnectionError):
    """The online store cannot be reached or used; the message names the store and what to do."""


class OnlineStore(Protocol):
    """What the data stage, the push path and the server need of an online store."""

    url: str

    def write(self, values: Sequence[OnlineValue], prefix: str, chunk_rows: int = 5000) -> int:
        """Write ``values`` a chunk per round trip; how many landed (an older window end is skipped)."""
        ...

    def read(self, keys: Sequence[str]) -> list[Stored | None]:
        """The stored values of ``keys``, in order (None: none, or expired)."""
        ...

    async def aread(self, keys: Sequence[str]) -> list[Stored | None]:
        """:meth:`read` without blocking the event loop."""
        ...

    async def aping(self) -> None:
        """Connect now, so a first read does not pay for it."""
        ...

    def delete(self, prefix: str) -> int:
        """Delete every key under ``prefix`` (``<prefix>:...``); how many."""
        ...

    def close(self) -> None:
        """Release the store's connections."""
        ...


def _chunks(values: Sequence[OnlineValue], size: int) -> Iterator[Sequence[OnlineValue]]:
    for start in range(0, len(values), max(1, size)):
        yield values[start : start + size]


class RedisStore:
    """Redis at ``url`` (``redis://host:port/db``): pipelined writes, ``MGET`` reads, an asyncio client for servers."""

    def __init__(self, url: str, ttl_seconds: float, timeout_seconds: float = 5.0) -> None:
        self.url = url
        self.ttl_seconds = max(1, int(ttl_seconds))
        self.timeout_seconds = timeout_seconds
        self._client: Any = None
        self._async: Any = None
        self._reader: Any = None  # the servers' read connection (see aread)
        self._reading = False

    def _sync(self) -> Any:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.url, socket_timeout=self.timeout_seconds)
        return self._client

    def write(self, values: Sequence[OnlineValue], prefix: str, chunk_rows: int = 5000) -> int:
        import redis

        client = self._sync()
        script = client.register_script(_NEWER_WINS)
        landed = 0
        try:
            for chunk in _chunks(values, chunk_rows):
                pipe = client.pipeline(transaction=False)
                for value in chunk:
                    script(
                        keys=[value.entry_key(prefix)],
                        args=[encode(value), value.window_end, self.ttl_seconds],
                        client=pipe,
                    )
                landed += sum(int(result) for result in pipe.execute())
        except redis.RedisError as exc:
            raise self._error("write", exc) from exc
        return landed

    def read(self, keys: Sequence[str]) -> list[Stored | None]:
        import redis

        if not keys:
            return []
        try:
            return [decode(raw) for raw in self._sync().mget(list(keys))]
        except redis.RedisError as exc:
            raise self._error("read", exc) from exc

    async def aread(self, keys: Sequence[str]) -> list[Stored | None]:
        """The stored values of ``keys`` (None where missing): one ``MGET``.

        A server's reads go one at a time (``CoalescedReads``) over one connection of its own,
        redis-py's ``Connection`` used directly: the client's per-command layer (pool, retries,
        response callbacks) cost ~30 of ~110 µs of CPU a read here. A read that finds that connection
        busy takes the pooled client, and so does one that finds it closed (a restarted Redis: the
        client's retries apply). A read that fails or is cancelled mid-way leaves the connection closed
        by redis-py; the next read reconnects.
        """
        import redis

        if not keys:
            return []
        if self._reading:
            raws = await self._asyncio().mget(list(keys))
        else:
            self._reading = True
            try:
                connection = self._read_connection()
                await connection.send_command("MGET", *keys)
                raws = await connection.read_response()
            except redis.ConnectionError:  # closed under it (a restarted Redis): the pooled client retries
                raws = await self._asyncio().mget(list(keys))
            finally:
                self._reading = False
        return [decode(raw) for raw in raws]

    async def aping(self) -> None:
        """Connect now (a server's start), so the first request's read does not pay for the connection."""
        await self._asyncio().ping()
        await self._read_connection().connect()

    def _read_connection(self) -> Any:
        if self._reader is None:
            self._reader = self._asyncio().connection_pool.make_connection()
        return self._reader

    def _asyncio(self) -> Any:
        if self._async is None:
            import redis.asyncio

            self._async = redis.asyncio.Redis.from_url(self.url, socket_timeout=self.timeout_seconds)
        return self._async

    def delete(self, prefix: str) -> int:
        client, deleted = self._sync(), 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += client.unlink(*batch)
                batch = []
        return deleted + (client.unlink(*batch) if batch else 0)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Close the asyncio client (a server's shutdown)."""
        if self._reader is not None:
            await self._reader.disconnect()
            self._reader = None
        if self._async is not None:
            await self._async.aclose()
            self._async = None

    def _error(self, what: str, exc: Exception) -> OnlineStoreError:
        return OnlineStoreError(
            f"online store {shown_url(self.url)}: cannot {what} ({type(exc).__name__}: {exc}); start Redis there "
            "or point online.url (MODELYARD_ONLINE__URL) at a running one"
        )


class EmbeddedStore:
    """A SQLite file (WAL) with the same keys and values as Redis: the demo's and the tests' online store."""

    def __init__(self, path: Path, ttl_seconds: float) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self.ttl_seconds = ttl_seconds
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                connection = sqlite3.connect(self.path, timeout=10, isolation_level=None)
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS online_values "
                    "(key TEXT PRIMARY KEY, value TEXT NOT NULL, window_end REAL NOT NULL, expires REAL NOT NULL)"
                )
            except (OSError, sqlite3.Error) as exc:
                raise OnlineStoreError(
                    f"online store {self.url}: cannot open ({exc}); check that its folder is writable"
                ) from exc
            self._local.connection = connection
        return connection

    def write(self, values: Sequence[OnlineValue], prefix: str, chunk_rows: int = 5000) -> int:
        connection, landed = self._connection(), 0
        for chunk in _chunks(values, chunk_rows):
            now = time.time()
            rows = [(v.entry_key(prefix), encode(v), v.window_end, now + self.ttl_seconds, now) for v in chunk]
            before = connection.total_changes
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(
                "INSERT INTO online_values (key, value, window_end, expires) VALUES (?1, ?2, ?3, ?4) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, window_end = excluded.window_end, "
                "expires = excluded.expires "
                "WHERE excluded.window_end >= online_values.window_end OR online_values.expires <= ?5",
                rows,
            )
            connection.execute("COMMIT")
            landed += connection.total_changes - before
        return landed

    def read(self, keys: Sequence[str]) -> list[Stored | None]:
        if not keys:
            return []
        marks = ",".join("?" * len(keys))
        found = dict(
            self._connection().execute(
                f"SELECT key, value FROM online_values WHERE key IN ({marks}) AND expires > ?", [*keys, time.time()]
            )
        )
        return [decode(found.get(key)) for key in keys]

    async def aread(self, keys: Sequence[str]) -> list[Stored | None]:
        return await asyncio.to_thread(self.read, keys)

    async def aping(self) -> None:
        """Open the file now (a server's start)."""
        await asyncio.to_thread(self.read, ["ping"])

    def delete(self, prefix: str) -> int:
        cursor = self._connection().execute(
            "DELETE FROM online_values WHERE substr(key, 1, ?) = ?", (len(prefix) + 1, f"{prefix}:")
        )
        return cursor.rowcount

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    async def aclose(self) -> None:
        """Nothing to close off the loop (each thread's connection closes with it)."""
        self.close()


def open_store(url: str, ttl_seconds: float) -> RedisStore | EmbeddedStore:
    """The store at ``url``: ``redis://``/``rediss://``/``unix://`` is Redis, ``sqlite:///path`` or a path the file.

    Raises:
        OnlineStoreError: an empty URL or a scheme that is neither.
    """
    url = url.strip()
    if url.startswith(REDIS_SCHEMES):
        return RedisStore(url, ttl_seconds)
    if url.startswith("sqlite:///"):
        return EmbeddedStore(Path(url.removeprefix("sqlite:///")), ttl_seconds)
    if not url or "://" in url:
        raise OnlineStoreError(
            f"online store {shown_url(url) or '(empty)'}: give redis://host:port/db for Redis, "
            "or sqlite:///path (or a path) for the embedded store"
        )
    return EmbeddedStore(Path(url), ttl_seconds)


def shown_url(url: str) -> str:
    """``url`` without a password (``redis://:secret@host`` -> ``redis://***@host``)."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
