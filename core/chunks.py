"""Many (family, region) pairs per task: split a stage's pairs into chunks and run a chunk's
pairs in a pool of worker processes, one outcome per pair.

Airflow-free, so it runs and tests without Airflow; the DAGs map one task over each chunk
(ADR 0008). A pair that fails (an exception in its work function, or its worker process
dying) becomes a failed :class:`PairOutcome` and the other pairs of the chunk go on. Workers
are started once per chunk and import the heavy modules once, then do many pairs.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import multiprocessing
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from modelyard.core.errors import ModelyardError

Pair = tuple[str, str]
Work = Callable[[Pair], "PairOutcome"]

# Airflow stores a mapped task's label in a VARCHAR(250); long labels are cut well before.
LABEL_LIMIT = 100
START_METHOD = "forkserver"  # workers fork from a clean server process, not from the (threaded) task


class ChunkError(ModelyardError, RuntimeError):
    """Pairs of a chunk failed with errors a retry may fix; the message names each pair and its error."""


@dataclass(frozen=True)
class PairOutcome:
    """What happened to one (family, region) in a chunk, as the task log and the Asset events need it.

    Attributes:
        family: the pair's family.
        region: the pair's region.
        status: the stage's own word (published, unchanged, registered, promoted, rejected, skipped, failed, ...).
        ok: False when the pair failed; the chunk then fails after its other pairs finished.
        detail: one line: the reason, the digest, the version decided.
        link: the MLflow run (or model version) URL, or the snapshot digest for data.
        event_uri: the Asset this pair announces (None: nothing new to announce).
        event_extra: the ``extra`` of that Asset event.
        retryable: a failure that may pass on a retry (a bug's exception, a server not answering),
            as opposed to an expected error (bad data, a bad form) that a retry cannot fix.
        seconds: how long the pair took.
        notes: further lines for the log, printed indented under the pair's line (a gate table).
        facts: what a later task of the stage needs of the pair (promotion: the version awaiting approval).
    """

    family: str
    region: str
    status: str
    ok: bool = True
    detail: str = ""
    link: str = ""
    event_uri: str | None = None
    event_extra: dict[str, Any] = field(default_factory=dict)
    retryable: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def pair(self) -> Pair:
        return (self.family, self.region)

    @property
    def name(self) -> str:
        return f"{self.family}/{self.region}"

    def line(self) -> str:
        """The pair's one line in the task log: name, outcome, detail, link, time."""
        parts = [f"{self.name}: {self.status if self.ok else 'FAILED'}"]
        parts += [p for p in (self.detail, self.link) if p]
        return " | ".join(parts) + f" ({self.seconds:.1f} s)"

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (XCom, Airflow's task state store); :meth:`from_json` reads it back."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PairOutcome:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def split(pairs: Sequence[Pair], chunk_size: int, max_chunks: int) -> list[list[Pair]]:
    """Split ``pairs`` into at most ``max_chunks`` contiguous chunks of about equal size.

    Chunks hold at most ``chunk_size`` pairs unless that would need more than ``max_chunks``
    chunks; then ``max_chunks`` chunks share the pairs. Sizes differ by one at most, order is kept.

    Raises:
        ValueError: ``chunk_size`` or ``max_chunks`` is below 1.
    """
    if chunk_size < 1 or max_chunks < 1:
        raise ValueError(f"chunk_size and max_chunks must be at least 1, got {chunk_size} and {max_chunks}")
    if not pairs:
        return []
    count = min(max_chunks, math.ceil(len(pairs) / chunk_size))
    base, extra = divmod(len(pairs), count)
    chunks, start = [], 0
    for index in range(count):
        end = start + base + (1 if index < extra else 0)
        chunks.append(list(pairs[start:end]))
        start = end
    return chunks


def label(pairs: Sequence[Pair], limit: int = LABEL_LIMIT) -> str:
    """A chunk's name in the Airflow UI: its pairs, cut to ``limit`` characters with the count left out.

    ``pickup_eta/jakarta, pickup_eta/manila`` when it fits, else ``pickup_eta/jakarta, … (+38)``.
    """
    names = [f"{family}/{region}" for family, region in pairs]
    if not names:
        return "(no pairs)"
    full = ", ".join(names)
    if len(full) <= limit:
        return full
    shown: list[str] = []
    for index, name in enumerate(names):
        rest = len(names) - index - 1
        candidate = ", ".join([*shown, name]) + f", … (+{rest})"
        if shown and len(candidate) > limit:
            break
        shown.append(name)
    return ", ".join(shown) + f", … (+{len(names) - len(shown)})"


def failed(pair: Pair, exc: BaseException, seconds: float = 0.0) -> PairOutcome:
    """The outcome of a pair whose work raised: expected errors are final, anything else may pass on retry."""
    expected = isinstance(exc, ModelyardError) and not isinstance(exc, ConnectionError | TimeoutError)
    return PairOutcome(
        family=pair[0],
        region=pair[1],
        status="failed",
        ok=False,
        detail=f"{type(exc).__name__}: {exc}",
        retryable=not expected,
        seconds=seconds,
    )


def run_pairs(
    pairs: Sequence[Pair],
    work: Work,
    *,
    workers: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
    done: Mapping[Pair, PairOutcome] | None = None,
    on_outcome: Callable[[PairOutcome], None] | None = None,
) -> list[PairOutcome]:
    """Run ``work`` on every pair not already ``done``, in a pool of ``workers`` processes.

    Args:
        pairs: the chunk's pairs.
        work: a module-level (picklable) function of one pair; it should return a failed
            outcome for bad data, but any exception it raises is caught and made one.
        workers: pool size; 1 (or one pair to do, or a daemonic process, which may not
            have children) runs the pairs in this process.
        initializer: called once in each worker (and once here when running inline) with ``initargs``.
        done: outcomes of an earlier try of the same chunk; those pairs are not run again.
        on_outcome: called here with each new outcome as it arrives (the task's log line).

    Returns:
        One outcome per pair, in the order of ``pairs``.
    """
    done = dict(done or {})
    todo = [pair for pair in pairs if pair not in done]
    if workers <= 1 or len(todo) <= 1 or multiprocessing.current_process().daemon:
        new = _run_inline(todo, work, initializer, initargs, on_outcome)
    else:
        new = _run_pool(todo, work, min(workers, len(todo)), initializer, initargs, on_outcome)
    outcomes = {**done, **new}
    return [outcomes[pair] for pair in pairs]


def guarded(work: Work, pair: Pair) -> PairOutcome:
    """``work(pair)`` timed, with any exception turned into a failed outcome (its traceback printed)."""
    started = time.monotonic()
    try:
        outcome = work(pair)
    except Exception as exc:
        if not isinstance(exc, ModelyardError):
            traceback.print_exc()  # a bug: the reader of the task log needs where it happened
        return failed(pair, exc, time.monotonic() - started)
    return _timed(outcome, time.monotonic() - started)


def _timed(outcome: PairOutcome, seconds: float) -> PairOutcome:
    return PairOutcome(**{**asdict(outcome), "seconds": round(seconds, 2)})


def _run_inline(
    todo: Iterable[Pair],
    work: Work,
    initializer: Callable[..., None] | None,
    initargs: tuple[Any, ...],
    on_outcome: Callable[[PairOutcome], None] | None,
) -> dict[Pair, PairOutcome]:
    if initializer is not None:
        initializer(*initargs)
    results: dict[Pair, PairOutcome] = {}
    for pair in todo:
        results[pair] = _report(guarded(work, pair), on_outcome)
    return results


@contextlib.contextmanager
def _main_not_rerun() -> Iterator[None]:
    """Keep workers from re-running the parent's ``__main__`` script while the pool starts them.

    multiprocessing hands a new worker the path of ``__main__`` to run first. In an Airflow task
    that is the ``airflow`` console script, and importing Airflow there fails: a task process has
    no metadata database connection (Airflow 3 keeps tasks off the database). The work functions
    are module-level functions of the package, pickled by name, so workers never need ``__main__``.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def _run_pool(
    todo: Sequence[Pair],
    work: Work,
    workers: int,
    initializer: Callable[..., None] | None,
    initargs: tuple[Any, ...],
    on_outcome: Callable[[PairOutcome], None] | None,
) -> dict[Pair, PairOutcome]:
    context = multiprocessing.get_context(START_METHOD)
    results: dict[Pair, PairOutcome] = {}
    with _main_not_rerun(), concurrent.futures.ProcessPoolExecutor(workers, context, initializer, initargs) as pool:
        futures = {pool.submit(guarded, work, pair): pair for pair in todo}
        for future in concurrent.futures.as_completed(futures):
            pair = futures[future]
            try:
                outcome = future.result()
            except Exception as exc:  # the worker died (killed, out of memory) or the outcome did not pickle
                outcome = failed(pair, RuntimeError(f"worker process failed: {type(exc).__name__}: {exc}"))
            results[pair] = _report(outcome, on_outcome)
    return results


def _report(outcome: PairOutcome, on_outcome: Callable[[PairOutcome], None] | None) -> PairOutcome:
    if on_outcome is not None:
        on_outcome(outcome)
    return outcome


def summary(outcomes: Sequence[PairOutcome]) -> str:
    """``12 pairs: 10 ok, 2 failed (pickup_eta/jakarta, driver_acceptance/manila)``."""
    bad = [o.name for o in outcomes if not o.ok]
    text = f"{len(outcomes)} pairs: {len(outcomes) - len(bad)} ok, {len(bad)} failed"
    return text + (f" ({', '.join(bad)})" if bad else "")


class SuccessLog:
    """A chunk task's successes in Airflow's task state store, written in batches (ADR 0008).

    The store (``context["task_state_store"]``: ``get(key)``, ``set(key, value)``, shared by the
    tries of one task instance) has no listing, and each call is a round trip through the task's
    supervisor to the API server. One key a pair cost two calls a pair, ~30 ms each under load,
    ~2,000 a stage at 1,000 pairs (issue 26). Here the successes since the last write go to the
    next key of ``done:0``, ``done:1``, ... once ``every`` seconds have passed (and at
    :meth:`flush`), and a try reads the keys in order until one is missing. A try that dies loses
    at most the last ``every`` seconds of successes: the next try redoes those pairs (the stages
    are idempotent).
    """

    PREFIX = "done:"

    def __init__(self, store: Any, every: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._every = every
        self._clock = clock
        self._next = 0
        self._pending: list[dict[str, Any]] = []
        self._written_at = clock()

    def earlier(self) -> dict[Pair, PairOutcome]:
        """The successes earlier tries wrote (later writes continue after their keys)."""
        done: dict[Pair, PairOutcome] = {}
        while isinstance(batch := self._store.get(f"{self.PREFIX}{self._next}"), list):
            for stored in batch:
                outcome = PairOutcome.from_json(stored)
                done[outcome.pair] = outcome
            self._next += 1
        return done

    def add(self, outcome: PairOutcome) -> None:
        """Note a success; write the pending ones when ``every`` seconds passed since the last write."""
        self._pending.append(outcome.to_json())
        if self._clock() - self._written_at >= self._every:
            self.flush()

    def flush(self) -> None:
        """Write the pending successes now (a chunk's end)."""
        self._written_at = self._clock()
        if not self._pending:
            return
        self._store.set(f"{self.PREFIX}{self._next}", self._pending)
        self._next += 1
        self._pending = []
