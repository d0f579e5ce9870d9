"""The per-model promotion lock: exclusive across processes and hosts, independent per model.

Two kinds, chosen by ``storage.lock_url`` (ADR 0004):

* unset (a local ``storage.root``): a ``flock`` on ``<storage.state_dir>/locks/promotion-<model>.lock``
  through filelock. Exact on one host (or a shared filesystem with working ``flock``), released
  by the kernel when the holder dies. Needs no service: the embedded default.
* ``postgresql://...``: a session-level advisory lock (``pg_try_advisory_lock``) in that database,
  on a 64-bit key derived from the model name, so different models never wait on each other.
  Like ``flock`` it belongs to the holder's connection: PostgreSQL drops it when the session ends,
  including when the holder's process or host dies (TCP keepalives bound how long a dead host's
  session lingers), so there is no lease to expire and nothing stale to clean. MLflow's backend
  database is the natural choice: every promotion already depends on it.

Both wait at most ``timeout`` seconds and then raise :class:`LockTimeoutError` naming the lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from modelyard.core.errors import ModelyardError
from modelyard.core.storage import local_file

if TYPE_CHECKING:
    import psycopg

    from modelyard.core.config import Storage

LOCK_TIMEOUT_SECONDS = 900.0
POLL_SECONDS = 0.1


class LockTimeoutError(ModelyardError, TimeoutError):
    """Another promotion held the lock for longer than the wait allows; the message names the lock."""


class LockUnavailableError(ModelyardError, ConnectionError):
    """The lock's database cannot be reached; the message names it and what to check."""


@contextlib.contextmanager
def promotion_lock(storage: Storage, model_name: str, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[str]:
    """Hold the exclusive promotion lock of ``model_name``; yields where the lock lives (for messages).

    Raises:
        LockTimeoutError: another holder kept it for more than ``timeout`` seconds.
        LockUnavailableError: ``storage.lock_url`` names a database that does not answer.
    """
    if storage.lock_url:
        with advisory_lock(storage.lock_url, f"modelyard.promotion:{model_name}", timeout) as where:
            yield where
        return
    with file_lock(storage, model_name, timeout) as where:
        yield where


@contextlib.contextmanager
def file_lock(storage: Storage, model_name: str, timeout: float) -> Iterator[str]:
    """The host-local kind: ``flock`` on a file under ``storage.state_dir/locks`` (local roots only)."""
    import filelock

    path = local_file(storage.state_dir / "locks" / f"promotion-{model_name}.lock")
    if path is None:  # the config refuses this combination; a Storage built by hand may not
        raise LockUnavailableError(
            f"{model_name}: a file lock needs a local storage.root, not {storage.root}; set storage.lock_url"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(path, timeout=timeout, poll_interval=POLL_SECONDS)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise LockTimeoutError(
            f"{model_name}: another promotion has held {path} for over {timeout:.0f}s; "
            f"wait for it or check for a stuck process holding the file (fuser {path})"
        ) from None
    try:
        yield str(path)
    finally:
        lock.release()


def advisory_key(name: str) -> int:
    """A signed 64-bit key for ``pg_advisory_lock`` from ``name`` (collisions only make two names share a lock)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


@contextlib.contextmanager
def advisory_lock(url: str, name: str, timeout: float) -> Iterator[str]:
    """Hold PostgreSQL's session-level advisory lock on ``advisory_key(name)`` in the database at ``url``."""
    key = advisory_key(name)
    where = f"advisory lock {key} ({name}) in {_safe(url)}"
    connection = _connect(url)
    try:
        _wait_for(connection, key, timeout, where)
        try:
            yield where
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (key,))
    finally:
        connection.close()  # ends the session, which drops the lock even if the unlock failed


def _connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    import psycopg

    try:
        # libpq keepalives: a host that vanished without closing its connection loses its lock in ~1 min.
        return psycopg.connect(
            url, autocommit=True, connect_timeout=10, keepalives=1, keepalives_idle=30, keepalives_interval=10,
            keepalives_count=3,
        )  # fmt: skip
    except psycopg.OperationalError as exc:
        raise LockUnavailableError(
            f"promotion lock: cannot connect to {_safe(url)} (storage.lock_url): {str(exc).strip()}; "
            "check the host, the database name and the credentials (PGPASSWORD, ~/.pgpass)"
        ) from exc


def _wait_for(connection: psycopg.Connection[tuple[object, ...]], key: int, timeout: float, where: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        row = connection.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if row and row[0]:
            return
        if time.monotonic() >= deadline:
            high, low = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF  # how pg_locks shows a bigint key
            holder = connection.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
                "AND classid = %s::bigint::oid AND objid = %s::bigint::oid",
                (high, low),
            ).fetchone()
            raise LockTimeoutError(
                f"another promotion has held the {where} for over {timeout:.0f}s (held by backend pid "
                f"{holder[0] if holder else '?'}: see pg_stat_activity); wait for it or end that session"
            )
        time.sleep(POLL_SECONDS)


def _safe(url: str) -> str:
    """``url`` without a password, for messages."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()
