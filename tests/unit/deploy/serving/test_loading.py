"""Loading many models: a bounded pool, progress while it runs, reuse by (name, version), all or nothing."""

from __future__ import annotations

import threading

from modelyard.deploy.serving.errors import ModelLoadFailed
from modelyard.deploy.serving.loading import LoadProgress, load_models, reusable
from modelyard.deploy.serving.runtime import ServedModel
from tests.unit.deploy.serving.fakes import fake_model, uris


def test_models_load_concurrently_up_to_the_bound():
    barrier = threading.Barrier(3, timeout=10)  # breaks (and fails the load) unless 3 loads overlap
    outcome = load_models(uris(3), {}, lambda uri: (barrier.wait(), fake_model(uri))[1], LoadProgress(3, threads=3))
    assert outcome.error is None, outcome.error
    assert sorted(outcome.fresh) == sorted(uris(3))


def test_no_more_loads_run_at_once_than_the_pool_allows():
    lock, running, peak = threading.Lock(), [0], [0]
    release = threading.Event()

    def load(uri: str) -> ServedModel:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        release.wait(0.02)
        with lock:
            running[0] -= 1
        return fake_model(uri)

    outcome = load_models(uris(12), {}, load, LoadProgress(12, threads=2))
    assert len(outcome.models) == 12
    assert peak[0] == 2


def test_progress_counts_while_loading_and_after():
    progress = LoadProgress(5, threads=1)
    gate, seen = threading.Event(), threading.Event()

    def load(uri: str) -> ServedModel:
        if uri == "models:/m3/1":  # the fourth of five: three are ready when it starts
            seen.set()
            assert gate.wait(10)
        return fake_model(uri)

    done: list[object] = []
    thread = threading.Thread(target=lambda: done.append(load_models(uris(5), {}, load, progress)))
    thread.start()
    assert seen.wait(10)
    assert progress.summary() == "loading 3/5"
    counts = {k: progress.to_dict()[k] for k in ("total", "done", "loaded", "in_flight", "failed")}
    assert counts == {"total": 5, "done": 3, "loaded": 3, "in_flight": 1, "failed": 0}
    gate.set()
    thread.join(10)
    assert progress.summary() == "loading 5/5"
    assert progress.rss_before_bytes
    assert progress.rss_after_bytes
    assert progress.rss_per_loaded_model_bytes is not None


def test_a_changed_plan_loads_only_the_changed_model():
    current = {uri: fake_model(uri) for uri in uris(500)}
    wanted = [*uris(499), "models:/m499/2"]  # one model of 500 moves to version 2
    loaded: list[str] = []
    progress = LoadProgress(len(wanted), threads=4)
    outcome = load_models(wanted, current, lambda uri: (loaded.append(uri), fake_model(uri))[1], progress)
    assert loaded == ["models:/m499/2"]
    assert outcome.fresh == ["models:/m499/2"]
    assert (progress.reused, progress.loaded) == (499, 1)
    assert all(outcome.models[u] is current[u] for u in uris(499))  # the same objects: not reloaded or re-warmed


def test_a_concrete_version_reuses_the_same_version_loaded_through_an_alias():
    by_alias = fake_model("models:/fare@champion", version="7")
    current = {"models:/fare@champion": by_alias}
    assert reusable("models:/fare/7", current) is by_alias
    assert reusable("models:/fare/8", current) is None
    assert reusable("models:/fare@challenger", current) is None  # an alias is resolved only by loading


def test_one_failure_keeps_nothing_and_names_the_model():
    made: list[ServedModel] = []

    def load(uri: str) -> ServedModel:
        if uri == "models:/m2/1":
            raise ModelLoadFailed(f"{uri}: warm-up failed")
        made.append(fake_model(uri))
        return made[-1]

    progress = LoadProgress(40, threads=1)
    outcome = load_models(uris(40), {}, load, progress)
    assert outcome.failed_uri == "models:/m2/1"
    assert isinstance(outcome.error, ModelLoadFailed)
    assert outcome.models == {}
    assert len(made) == 2  # the loads queued behind the failure never started
    assert {m.status.state for m in made} == {"released"}
    assert progress.failed == 1
