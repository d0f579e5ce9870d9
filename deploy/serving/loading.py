"""Loading a plan's many models at once: a bounded pool, progress, reuse, all or nothing (ADR 0009).

Models already in memory with the same (name, version) are reused; the rest are downloaded,
loaded and warmed by a pool of threads, so downloads (network) and loads (mostly native
code) of different models overlap. ``LoadProgress`` counts as it goes (``/readyz`` shows it);
the first failure cancels what has not started and releases what this call loaded.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from modelyard.deploy.serving.registry import ModelRef
from modelyard.deploy.serving.runtime import ServedModel


def process_rss() -> int:
    """This process's resident set size in bytes."""
    import psutil

    return int(psutil.Process().memory_info().rss)


@dataclasses.dataclass
class LoadProgress:
    """How far the loading of one plan's models got (``/readyz`` shows it while it runs).

    ``reused`` models were already in memory with the same (name, version) and cost nothing;
    ``loaded`` ones were downloaded, loaded and warmed by this plan. Counters are updated by
    the loader threads; a reader may see them a moment apart, never torn.
    """

    total: int
    reused: int = 0
    loaded: int = 0
    failed: int = 0
    in_flight: int = 0
    threads: int = 1
    rss_before_bytes: int | None = None
    rss_after_bytes: int | None = None
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def done(self) -> int:
        return self.reused + self.loaded

    @property
    def rss_per_loaded_model_bytes(self) -> int | None:
        """RSS growth divided by the models this plan loaded (concurrent loads share the delta)."""
        if self.rss_before_bytes is None or self.rss_after_bytes is None or not self.loaded:
            return None
        return max(0, self.rss_after_bytes - self.rss_before_bytes) // self.loaded

    def summary(self) -> str:
        """``loading 137/500`` (models ready of the plan's total)."""
        return f"loading {self.done}/{self.total}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "progress": self.summary(),
            "total": self.total,
            "done": self.done,
            "reused": self.reused,
            "loaded": self.loaded,
            "failed": self.failed,
            "in_flight": self.in_flight,
            "threads": self.threads,
            "rss_before_bytes": self.rss_before_bytes,
            "rss_after_bytes": self.rss_after_bytes,
            "rss_per_loaded_model_bytes": self.rss_per_loaded_model_bytes,
        }

    def _count(self, field: str, delta: int = 1) -> None:
        with self._lock:
            setattr(self, field, getattr(self, field) + delta)


@dataclasses.dataclass
class LoadOutcome:
    """What :func:`load_models` made: the plan's models, or the first failure (nothing kept)."""

    models: dict[str, ServedModel]
    fresh: list[str]
    failed_uri: str | None = None
    error: Exception | None = None


def reusable(uri: str, current: dict[str, ServedModel], source: str | None = None) -> ServedModel | None:
    """A loaded model ``uri`` names: the same URI, or a concrete ``models:/name/N`` already in memory
    under another URI (an alias that resolved to version N): one (name, version) loads once.

    With ``source`` (the plan pins the version's source), only a model loaded from that source: a
    registered model deleted and registered again has a new version N under the old URI.
    """
    model = current.get(uri)
    if model is None:
        ref = ModelRef.parse(uri)
        if ref.version is None:
            return None  # an alias is resolved by loading; the deploy stage writes concrete versions
        model = next((m for m in current.values() if m.name == ref.name and m.status.version == ref.version), None)
    if model is not None and source is not None and model.status.source != source:
        return None
    return model


def load_models(
    uris: Sequence[str],
    current: dict[str, ServedModel],
    load: Callable[[str], ServedModel],
    progress: LoadProgress,
    *,
    on_loaded: Callable[[ServedModel], None] | None = None,
    sources: Mapping[str, str] | None = None,
) -> LoadOutcome:
    """Reuse what is in memory and load the rest with a bounded pool of ``progress.threads`` threads.

    Downloads (network) and loads (mostly native code) of different models overlap. On the first
    failure the loads not yet started are cancelled, the running ones are waited for, and every
    model this call loaded is released: a plan is all or nothing.

    Args:
        uris: the plan's model URIs (normalised, unique).
        current: the models the active plan holds, by URI.
        load: loads and warms one URI (raises ``ServingError`` or anything the registry raises).
        progress: counters to update; ``progress.total`` should be ``len(uris)``.
        on_loaded: called (in a loader thread) for each model as soon as it is ready.
        sources: URI -> the source the plan pins (a model in memory from another source is loaded again).

    Returns:
        The models by URI and which were loaded; or, after a failure, the failing URI and error.
    """
    models: dict[str, ServedModel] = {}
    pending: list[str] = []
    for uri in uris:
        found = reusable(uri, current, (sources or {}).get(uri))
        if found is not None:
            models[uri] = found
            progress._count("reused")
        else:
            pending.append(uri)
    progress.rss_before_bytes = process_rss()
    outcome = _load_pending(pending, load, progress, on_loaded)
    progress.rss_after_bytes = process_rss()
    if outcome.error is not None:
        return outcome
    models.update(outcome.models)
    return LoadOutcome(models={uri: models[uri] for uri in uris}, fresh=outcome.fresh)


def _load_pending(
    pending: list[str],
    load: Callable[[str], ServedModel],
    progress: LoadProgress,
    on_loaded: Callable[[ServedModel], None] | None,
) -> LoadOutcome:
    from concurrent.futures import ThreadPoolExecutor

    abort = threading.Event()  # set by the first failure: queued loads then return without loading
    failures: list[tuple[str, BaseException]] = []

    def one(uri: str) -> ServedModel | None:
        if abort.is_set():
            return None
        progress._count("in_flight")
        try:
            model = load(uri)
        except BaseException as exc:
            abort.set()
            failures.append((uri, exc))
            progress._count("failed")
            return None
        finally:
            progress._count("in_flight", -1)
        progress._count("loaded")
        if on_loaded is not None:
            on_loaded(model)
        return model

    workers = max(1, min(progress.threads, len(pending)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="model-load") as pool:
        results = list(pool.map(one, pending))
    loaded = {uri: model for uri, model in zip(pending, results, strict=True) if model is not None}
    if not failures:
        return LoadOutcome(models=loaded, fresh=list(loaded))
    for model in loaded.values():
        model.release()
    uri, error = failures[0]
    if not isinstance(error, Exception):
        error = RuntimeError(f"loading {uri} was interrupted: {error!r}")
    return LoadOutcome(models={}, fresh=[], failed_uri=uri, error=error)
