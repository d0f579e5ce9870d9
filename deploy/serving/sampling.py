"""The prediction log: a sample of served requests, written off the request path for monitoring.

Each sampled request becomes one JSON line: its request id, time, family, region, variant,
model version and plan, the raw records the client sent, the computed feature rows the model
read, and the predictions (shadow comparisons are logged too, with ``kind: shadow``). Lines go
to rotated, gzip-compressed files, one folder per served model version::

    <root>/<family>/<region>/<version>/<UTC start>-<host>-<pid>-<n>.jsonl.gz

``<root>`` is the server's prediction-log directory (``MODELYARD_SERVE_LOG_DIR``, in a
deployment ``<storage.root>/monitoring/samples``); the monitoring stage reads it. A file is
written under a hidden ``.*.part`` name and renamed when it is rotated (by size or age), so
a reader never sees a half-written file.

When ``storage.root`` is an object store there is no folder to share with the monitoring
stage: the server is then also given ``MODELYARD_SERVE_LOG_URL`` (the samples prefix of the
root, e.g. ``s3://bucket/modelyard/monitoring/samples``, with ``MODELYARD_SERVE_LOG_OPTIONS``,
its fsspec options as JSON, ``${VAR}`` read from the server's environment). The log dir is then
a local spool: each rotated file is shipped under the same relative key with one PUT (which
the store makes visible only once complete) and removed; a file that fails to ship stays in
the spool and is retried at the next rotation and at start. Shipping needs
universal-pathlib and the store's fsspec package in the server's environment (``s3fs``).

The request path only draws a random number and, for a sampled request, puts one tuple in a
bounded queue; a full queue drops the sample and counts it (:attr:`PredictionLogWriter.dropped`):
a slow disk never slows a response. One daemon thread serialises (orjson) and writes.

Clients are not trusted with the server's disk or memory: a sampled record keeps the fields the
model reads and at most :data:`MAX_EXTRA_FIELDS` others, each text cut to :data:`MAX_TEXT_CHARS`
(:func:`trim_records`, on the request path, so the queue holds no client junk); a line longer
than ``max_record_kb`` is dropped, and so is every sample while the folder holds more than
``max_spool_mb`` (each counted by reason, :attr:`PredictionLogWriter.refused`). Files are 0600.

A disk that refuses a write (full, over quota, read-only, the folder removed) costs samples, never
responses: the file being written is discarded (a gzip stream cut mid-write is unreadable), its
samples and every sample offered while the disk refuses are counted (``disk_full``, else
``write_error``), one warning says so, and the writer tries again every
:data:`WRITE_RETRY_SECONDS`; one info line says when writing resumed and how many were lost.
See ``docs/adr/0010-monitoring-and-drift.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import gzip
import logging
import os
import queue
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import orjson

from modelyard.core.contracts import prediction_log

log = logging.getLogger("modelyard.serving.sampling")

SUFFIX = prediction_log.SUFFIX
DEFAULT_ROTATE_MB = 8.0
DEFAULT_ROTATE_SECONDS = 300.0
DEFAULT_QUEUE_SIZE = 4096
DEFAULT_MAX_RECORD_KB = 64.0
DEFAULT_MAX_SPOOL_MB = 1024.0
MAX_EXTRA_FIELDS = 8  # fields a sampled record keeps beyond those the model reads
MAX_TEXT_CHARS = 256  # of any text value (and field name) a sampled record keeps
_SPOOL_RECOUNT_SECONDS = 10.0
_FILE_MODE = 0o600
MAX_REQUEST_ID_CHARS = 64
_IDLE_CHECK_SECONDS = 1.0
# After draining the queue the writer rests this long before it waits on the queue again: a sample
# then finds no waiting thread to wake (a wake-up and a GIL hand-off per sample cost the request
# path more than the sample itself); a flush or close ends the rest at once.
_DRAIN_PAUSE_SECONDS = 0.05
_RESHIP_SECONDS = 30.0
WRITE_RETRY_SECONDS = 5.0  # after a refused write, how long samples are dropped before the disk is tried again
_FULL_DISK = frozenset({errno.ENOSPC, errno.EDQUOT})


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    """How much is sampled and when a file is rotated."""

    sample_rate: float = 0.0
    rotate_mb: float = DEFAULT_ROTATE_MB
    rotate_seconds: float = DEFAULT_ROTATE_SECONDS
    queue_size: int = DEFAULT_QUEUE_SIZE
    max_record_kb: float = DEFAULT_MAX_RECORD_KB  # a longer JSON line is dropped (counted)
    max_spool_mb: float = DEFAULT_MAX_SPOOL_MB  # beyond this in the folder, samples are dropped (counted)


@dataclasses.dataclass(frozen=True)
class Sample:
    """What the request path hands over: references only, serialised by the writer thread."""

    kind: str
    request_id: str
    labels: tuple[str, str, str, str]  # family, region, variant, version
    plan: str
    records: Any
    features: Any
    predictions: Any
    at: float
    extra: dict[str, Any] | None = None
    model: str | None = None  # the registered model that answered (a pooled one when the service falls back)


def new_request_id(sent: str | None = None) -> str:
    """The client's ``X-Request-Id`` when it is a short token, else a fresh random id."""
    if sent and len(sent) <= MAX_REQUEST_ID_CHARS and sent.isprintable() and " " not in sent:
        return sent
    return f"{random.getrandbits(128):032x}"  # unique enough to join on, without uuid4's urandom syscall


def trim_records(records: Any, fields: Collection[str]) -> list[Any]:
    """The records as the log keeps them: ``fields`` (what the model reads) plus a few others, text cut short.

    A record that is not an object is kept as its type's name only.
    """
    if not isinstance(records, list):
        return []
    return [_trim_record(r, fields) if isinstance(r, Mapping) else type(r).__name__ for r in records]


def _trim_record(record: Mapping[Any, Any], fields: Collection[str]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    extra = 0
    for name, value in record.items():
        if name not in fields:
            if extra >= MAX_EXTRA_FIELDS:
                continue
            extra += 1
        kept[_short(str(name))] = _scalar(value)
    return kept


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _short(value)
    return f"<{type(value).__name__}>"  # a list or object a client nested: its shape only


def _short(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1] + "…"


class _Part:
    """One open file of one partition, written under a hidden name until it is published."""

    def __init__(self, folder: Path, opened_at: float, tag: str, seq: int) -> None:
        stamp = dt.datetime.fromtimestamp(opened_at, dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self.final = folder / f"{stamp}-{tag}-{seq}{SUFFIX}"
        self.temp = folder / f".{self.final.name}.part"
        self.opened_at = opened_at
        folder.mkdir(parents=True, exist_ok=True)
        # 0600: the log holds what clients sent; only the server (and what ships it) reads it.
        self._raw = os.fdopen(os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE), "wb")
        self._gzip = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=6)
        self.lines = 0
        self.samples = 0  # lines that are samples (not ``counts`` lines)
        self.bytes = 0  # of JSON before compression: zlib buffers, so the file's size lags behind

    def write(self, line: bytes, *, sample: bool = True) -> None:
        self._gzip.write(line)
        self.lines += 1
        self.samples += sample
        self.bytes += len(line)

    def publish(self) -> Path | None:
        """Close and rename to the visible name (an empty file is removed instead)."""
        self._gzip.close()
        self._raw.close()
        if self.lines == 0:
            self.temp.unlink(missing_ok=True)
            return None
        os.replace(self.temp, self.final)
        return self.final

    def flush(self) -> None:
        """Push what zlib and the file buffer hold to the disk (raises the disk's error, if any)."""
        self._gzip.flush()

    def discard(self) -> None:
        """Close without publishing and remove the hidden file (after a refused write: it cannot be read)."""
        for stream in (self._gzip, self._raw):
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        with contextlib.suppress(OSError):
            self.temp.unlink(missing_ok=True)


class Shipper:
    """Moves published sample files from a local spool to an object-store prefix, then removes them.

    Args:
        spool: The local folder the prediction log writes (its ``root``).
        target: The object-store path (a ``UPath``) that mirrors ``spool``.
    """

    def __init__(self, spool: Path, target: Any) -> None:
        self.spool = spool
        self.target = target
        self.shipped = 0
        self.failed = 0

    def for_folder(self, folder: Path) -> Shipper:
        """The shipper of ``folder`` (inside the spool): its files go to the same relative place."""
        return Shipper(folder, self.target.joinpath(*folder.relative_to(self.spool).parts))

    def ship(self, path: Path) -> bool:
        """Upload ``path`` (one PUT) to its key under the target and delete it; False (kept) on failure."""
        relative = path.relative_to(self.spool)
        try:
            self.target.joinpath(*relative.parts).write_bytes(path.read_bytes())
        except Exception as exc:  # the store's client raises its own types; the file stays for the next try
            self.failed += 1
            log.warning(
                "prediction log upload of %s failed: %s", relative, exc, extra={"event": "prediction_log_upload_error"}
            )
            return False
        path.unlink(missing_ok=True)
        self.shipped += 1
        return True

    def ship_pending(self) -> int:
        """Ship every published file left in the spool (an earlier failure, a previous process); how many."""
        if not self.spool.is_dir():
            return 0
        pending = [p for p in sorted(self.spool.rglob(f"*{SUFFIX}")) if not p.name.startswith(".")]
        return sum(self.ship(path) for path in pending)


class PredictionLogWriter:
    """Samples served requests into rotated JSONL.gz files, one folder per (family, region, version).

    Args:
        root: The folder that holds ``<family>/<region>/<version>/``.
        settings: Sample rate, rotation bounds and queue size.
        clock: Seconds since the epoch (tests pass a fake one).
        on_drop: Called once per dropped sample (the server counts them in ``/metrics``).
        shipper: Moves each published file to an object store (``root`` is then a spool).
    """

    def __init__(
        self,
        root: Path,
        settings: SamplingSettings,
        *,
        clock: Callable[[], float] = time.time,
        on_drop: Callable[[], None] | None = None,
        shipper: Shipper | None = None,
    ) -> None:
        self.root = root
        self.settings = settings
        self.shipper = shipper
        self._reshipped_at = 0.0
        self.sample_rate = settings.sample_rate
        self.dropped = 0
        self.written = 0
        self.refused: dict[str, int] = {}  # samples the writer dropped, by reason (too_large, spool_full)
        self._spool_bytes = 0
        self._spool_counted_at = float("-inf")
        self._refusing: str | None = None  # why the disk refuses writes ("disk_full", "write_error"), if it does
        self._retry_at = 0.0
        self._lost = 0  # samples lost since the disk began refusing
        self._clock = clock
        self._on_drop = on_drop
        self._tag = f"{_host()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._seq = 0
        self._parts: dict[tuple[str, str, str], _Part] = {}
        # Written by the event loop, swapped out by the writer thread (a lost increment in the swap is harmless).
        self._counts: dict[tuple[str, str, str, str], int] = {}
        self._counts_since = clock()
        self._queue: queue.Queue[Sample | None] = queue.Queue(settings.queue_size)
        self._closed = threading.Event()
        self._nudge = threading.Event()  # ends the writer's rest (flush, close)
        self._thread = threading.Thread(target=self._run, name="modelyard-prediction-log", daemon=True)
        self._thread.start()

    def count(self, labels: tuple[str, str, str, str], outcome: str) -> None:
        """Count one request's outcome, sampled or not (written as ``kind: counts`` lines: volume, error rate)."""
        key = (labels[0], labels[1], labels[3], outcome)
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1

    def sampled(self) -> bool:
        """Whether this request is one of the sample (the one call the request path makes first)."""
        rate = self.sample_rate
        return rate > 0 and (rate >= 1 or random.random() < rate)

    def offer(self, sample: Sample) -> bool:
        """Queue ``sample`` for writing; never blocks. False (and counted) when the queue is full or closed."""
        if not self._closed.is_set():
            try:
                self._queue.put_nowait(sample)
                return True
            except queue.Full:
                pass
        self.dropped += 1
        if self._on_drop is not None:
            self._on_drop()
        return False

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued sample is written and publish the open files (tests, shutdown)."""
        done = threading.Event()
        marker = Sample("flush", "", ("", "", "", ""), "", None, None, None, 0.0, {"done": done})
        self._queue.put(marker, timeout=timeout)
        self._nudge.set()
        done.wait(timeout)

    def close(self, wait: float | None = None) -> None:
        """Stop taking samples; the thread writes what is queued, publishes every file and ends.

        Args:
            wait: Seconds to wait for that (None: return at once, e.g. on the event loop).
        """
        if self._closed.is_set():
            return
        self._closed.set()
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=wait or 5.0)
        self._nudge.set()
        if wait:
            self._thread.join(wait)

    # -- the writer thread

    def _run(self) -> None:
        if self.shipper is not None:
            self._reship()  # what a previous process (or a failed upload) left in the spool
        while True:
            try:
                sample = self._queue.get(timeout=_IDLE_CHECK_SECONDS)
            except queue.Empty:
                self._safely(self._rotate_old)
                continue
            if sample is None:
                self._safely(self._write_counts)
                self._safely(self._publish_all)
                return
            self._safely(self._handle, sample)
            if self._queue.empty():
                self._nudge.wait(_DRAIN_PAUSE_SECONDS)
                self._nudge.clear()

    def _safely(self, step: Callable[..., None], *args: Any) -> None:
        try:
            step(*args)
        except Exception:  # nothing may kill the thread (a refused write is handled in _write)
            log.exception("prediction log write failed", extra={"event": "prediction_log_error"})

    def _handle(self, sample: Sample) -> None:
        if sample.kind == "flush":
            self._write_counts()
            self._publish_all()
            (sample.extra or {})["done"].set()
            return
        family, region, _variant, version = sample.labels
        entry = entry_of(sample)
        entry["sample_rate"] = self.sample_rate  # the monitoring stage estimates the volume from it
        line = orjson.dumps(entry, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
        if len(line) > self.settings.max_record_kb * 1024:
            self._refuse("too_large")
            return
        if self._spool_full(len(line)):
            self._refuse("spool_full")
            return
        key = (family, region, version)
        if not self._write(key, line):
            return
        self.written += 1
        if self._parts[key].bytes >= self.settings.rotate_mb * 1e6:
            self._publish(key)
        self._rotate_old()

    def _refuse(self, reason: str, samples: int = 1) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + samples
        self.dropped += samples
        if self._refusing is not None:
            self._lost += samples
        if self._on_drop is not None:
            for _ in range(samples):
                self._on_drop()

    def _write(self, key: tuple[str, str, str], line: bytes, *, sample: bool = True) -> bool:
        """Append ``line`` to ``key``'s open file; False (the sample counted as dropped) when the disk refuses."""
        if self._refusing is not None and self._clock() < self._retry_at:
            if sample:
                self._refuse(self._refusing)
            return False
        try:
            part = self._part(key)
            part.write(line, sample=sample)
            if self._refusing is not None:
                part.flush()  # zlib buffers: only a write that reaches the disk shows that space is back
        except OSError as exc:
            self._write_refused(key, exc, lost=1 if sample else 0)
            return False
        if self._refusing is not None:
            log.info(
                "prediction log writing again in %s after %d samples were lost (%s)", self.root, self._lost,
                self._refusing, extra={"event": "prediction_log_resumed", "lost": self._lost},
            )  # fmt: skip
            self._refusing, self._lost = None, 0
        return True

    def _write_refused(self, key: tuple[str, str, str], exc: OSError, lost: int) -> None:
        """The disk refused a write to ``key``'s file: drop that file and the samples in it, pause, warn once."""
        part = self._parts.pop(key, None)
        if part is not None:
            part.discard()
            lost += part.samples
        reason = "disk_full" if exc.errno in _FULL_DISK else "write_error"
        if self._refusing is None:
            log.warning(
                "prediction log cannot write to %s (%s): samples are dropped and counted in "
                'modelyard_prediction_log_samples{outcome="dropped"}; retrying every %.0f s',
                self.root, exc.strerror or exc, WRITE_RETRY_SECONDS,
                extra={"event": "prediction_log_write_refused", "reason": reason},
            )  # fmt: skip
            self._refusing = reason
        self._retry_at = self._clock() + WRITE_RETRY_SECONDS
        if lost:
            self._refuse(reason, lost)

    def _spool_full(self, adding: int) -> bool:
        """Whether the folder (files on disk plus what is buffered) would pass ``max_spool_mb``.

        The folder is measured every few seconds (shipping and the monitoring stage empty it);
        in between, written bytes are added up.
        """
        now = self._clock()
        if now - self._spool_counted_at >= _SPOOL_RECOUNT_SECONDS:
            self._spool_counted_at = now
            self._spool_bytes = folder_bytes(self.root) + sum(p.bytes for p in self._parts.values())
        if self._spool_bytes + adding > self.settings.max_spool_mb * 1e6:
            return True
        self._spool_bytes += adding
        return False

    def _part(self, key: tuple[str, str, str]) -> _Part:
        part = self._parts.get(key)
        if part is None:
            self._seq += 1
            part = _Part(self.root.joinpath(*key), self._clock(), self._tag, self._seq)
            self._parts[key] = part
        return part

    def _write_counts(self) -> None:
        """One ``counts`` line per (family, region, version) with the outcomes since the last one."""
        counts, self._counts = self._counts, {}
        since, self._counts_since = self._counts_since, self._clock()
        totals: dict[tuple[str, str, str], dict[str, int]] = {}
        for (family, region, version, outcome), n in counts.items():
            totals.setdefault((family, region, version), {})[outcome] = n
        for key, outcomes in totals.items():
            stamp = dt.datetime.fromtimestamp(since, dt.UTC).isoformat(timespec="milliseconds")
            line = prediction_log.counts_entry(at=self._counts_since, since=stamp, counts=outcomes)
            line.update(family=key[0], region=key[1], version=key[2])
            self._write(key, orjson.dumps(line) + b"\n", sample=False)

    def _rotate_old(self) -> None:
        now = self._clock()
        if now - self._counts_since >= self.settings.rotate_seconds:
            self._write_counts()
        for key in [k for k, p in self._parts.items() if now - p.opened_at >= self.settings.rotate_seconds]:
            self._publish(key)
        if self.shipper is not None and self.shipper.failed and now - self._reshipped_at >= _RESHIP_SECONDS:
            self._reship()

    def _publish(self, key: tuple[str, str, str]) -> None:
        part = self._parts[key]
        try:
            published = part.publish()
        except OSError as exc:  # the disk refused the end of the gzip stream: the file cannot be read
            self._write_refused(key, exc, lost=0)
            return
        del self._parts[key]
        if published is not None and self.shipper is not None:
            self.shipper.ship(published)

    def _reship(self) -> None:
        self._reshipped_at = self._clock()
        if self.shipper is not None:
            self.shipper.ship_pending()

    def _publish_all(self) -> None:
        for key in list(self._parts):
            self._publish(key)


def entry_of(sample: Sample) -> dict[str, Any]:
    """The JSON line of one sample (the schema of :mod:`modelyard.core.contracts.prediction_log`)."""
    return prediction_log.prediction_entry(
        at=sample.at,
        kind=sample.kind,
        request_id=sample.request_id,
        labels=sample.labels,
        plan_digest=sample.plan,
        predictions=sample.predictions,
        records=sample.records,
        features=sample.features,
        extra=sample.extra,
        model=sample.model,
    )


def folder_bytes(root: Path) -> int:
    """The bytes of every file under ``root`` (0 when it does not exist)."""
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(folder, name)).st_size
    return total


def _host() -> str:
    name = socket.gethostname().split(".")[0] or "host"
    return "".join(c if c.isalnum() else "_" for c in name)[:32]
