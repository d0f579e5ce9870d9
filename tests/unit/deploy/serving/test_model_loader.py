"""Loading many models: a bounded pool, progress while it runs, reuse by (name, version), all or nothing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from modelyard.deploy.serving.metrics import ServingMetrics
from modelyard.deploy.serving.plan import parse_plan
from modelyard.deploy.serving.runtime import (
    Feature,
    InputSchema,
    LoadProgress,
    ModelLoadFailed,
    ModelRef,
    ModelStatus,
    ServedModel,
    load_models,
    reusable,
)
from modelyard.deploy.serving.server import PlanManager, ServeSettings


def fake_model(uri: str, version: str | None = None) -> ServedModel:
    """A ready in-memory model: what ``load_model`` returns, without a registry."""
    ref = ModelRef.parse(uri)
    status = ModelStatus(uri=uri, name=ref.name, version=version or ref.version, state="ready")
    schema = InputSchema([Feature("x", "double")])
    return ServedModel(status, schema, lambda m: m[:, 0], inline=True, example=[{"x": 1.0}], workdir=None)


def uris(count: int, version: int = 1) -> list[str]:
    return [f"models:/m{i}/{version}" for i in range(count)]


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


# ---------------------------------------------------------------------------- through the plan manager


class CountingManager(PlanManager):
    """A plan manager whose registry is in memory: ``_load`` is where it would download."""

    def __init__(self, settings: ServeSettings, gate: Callable[[str], None] | None = None) -> None:
        super().__init__(settings, ServingMetrics())
        self.loads: list[str] = []
        self.gate = gate

    def _load(self, uri: str, warmup_batch: int) -> ServedModel:
        if self.gate is not None:
            self.gate(uri)
        self.loads.append(uri)
        return fake_model(uri)


def plan_of(model_uris: list[str]):
    services = [
        {"family": "f", "region": f"r{i}", "variants": [{"name": "main", "model_uri": uri, "weight": 100}]}
        for i, uri in enumerate(model_uris)
    ]
    return parse_plan({"services": services})


def metric(manager: PlanManager, name: str) -> float:
    value = manager.metrics.registry.get_sample_value(name)
    assert value is not None, name
    return value


def test_readyz_shows_progress_then_ready_and_a_swap_loads_one(tmp_path: Path):
    gate, started = threading.Event(), threading.Event()

    def hold(uri: str) -> None:
        if uri == "models:/m9/1":
            started.set()
            assert gate.wait(10)

    async def scenario() -> None:
        manager = CountingManager(ServeSettings(plan_path=tmp_path / "plan.json", load_threads=1), hold)
        first = asyncio.ensure_future(manager.apply(plan_of(uris(30))))
        assert await asyncio.to_thread(started.wait, 10)
        ready, detail = manager.readiness()
        assert not ready
        assert detail["progress"] == "loading 9/30"
        assert detail["plan"]["loading"]["done"] == 9
        assert detail["plan"]["loading"]["total"] == 30
        gate.set()
        assert (await first)["status"] == "active"
        ready, detail = manager.readiness()
        assert ready
        assert detail["progress"] == "ready 30/30"
        assert detail["plan"]["last_load"]["loaded"] == 30
        assert metric(manager, "modelyard_model_loads_total") == 30

        changed = [*uris(29), "models:/m29/2"]
        result = await manager.apply(plan_of(changed))
        assert result["status"] == "active"
        assert result["loaded"] == 1
        assert manager.loads[30:] == ["models:/m29/2"]
        assert metric(manager, "modelyard_model_loads_total") == 31
        assert metric(manager, "modelyard_models_reused_total") == 29
        await manager.stop()

    asyncio.run(scenario())


def test_a_bad_load_threads_setting_is_named(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MODELYARD_SERVE_PLAN", "plan.json")
    monkeypatch.setenv("MODELYARD_SERVE_LOAD_THREADS", "zero")
    with pytest.raises(Exception, match="MODELYARD_SERVE_LOAD_THREADS='zero' is not a positive integer"):
        ServeSettings.from_env()
    monkeypatch.setenv("MODELYARD_SERVE_LOAD_THREADS", "8")
    assert ServeSettings.from_env().load_threads == 8
