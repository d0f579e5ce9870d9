"""The plan manager: progress in /readyz while a plan loads, and a swap that loads only what changed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

from modelyard.deploy.serving.manager import PlanManager
from modelyard.deploy.serving.metrics import ServingMetrics
from modelyard.deploy.serving.plan import parse_plan
from modelyard.deploy.serving.runtime import ServedModel
from modelyard.deploy.serving.settings import ServeSettings
from tests.unit.deploy.serving.fakes import fake_model, uris


class CountingManager(PlanManager):
    """A plan manager whose registry is in memory: ``_load`` is where it would download."""

    def __init__(self, settings: ServeSettings, gate: Callable[[str], None] | None = None) -> None:
        super().__init__(settings, ServingMetrics())
        self.loads: list[str] = []
        self.gate = gate

    def _load(self, uri: str, warmup_batch: int, source: str | None = None) -> ServedModel:
        if self.gate is not None:
            self.gate(uri)
        self.loads.append(uri)
        model = fake_model(uri)
        model.status.source = source  # the in-memory registry has what the plan pins
        return model


def plan_of(model_uris: list[str], source: str | None = None):
    pin = {"source": source} if source else {}
    services = [
        {"family": "f", "region": f"r{i}", "variants": [{"name": "main", "model_uri": uri, "weight": 100, **pin}]}
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


def test_services_that_share_a_model_share_its_one_batcher(tmp_path: Path):
    async def scenario() -> None:
        manager = CountingManager(ServeSettings(plan_path=tmp_path / "plan.json"))
        assert (await manager.apply(plan_of(["models:/m0/1"] * 3)))["status"] == "active"
        active = manager.active
        assert active is not None
        assert manager.loads == ["models:/m0/1"]
        assert len(active.batchers) == 1
        assert {id(h.variants["main"].batcher) for h in active.services.values()} == {
            id(active.batchers["models:/m0/1"])
        }
        collectors = [t for t in asyncio.all_tasks() if t.get_name().startswith("batcher:")]
        assert len(collectors) == 1  # no collector started for a batcher nobody uses
        await manager.stop()

    asyncio.run(scenario())


def test_the_same_uri_pinned_to_another_source_is_loaded_again_and_the_old_model_released(tmp_path: Path):
    # The registered model was deleted and registered again: its new v1 is another model under the old URI.
    async def scenario() -> None:
        manager = CountingManager(ServeSettings(plan_path=tmp_path / "plan.json"))
        assert (await manager.apply(plan_of(["models:/m0/1"], "models:/m-old")))["status"] == "active"
        old = manager.active
        assert old is not None
        old_model, old_batcher = old.models["models:/m0/1"], old.batchers["models:/m0/1"]
        assert (await manager.apply(plan_of(["models:/m0/1", "models:/m1/1"])))["status"] == "active"
        assert manager.loads == ["models:/m0/1", "models:/m1/1"]  # unpinned: what is in memory serves

        assert (await manager.apply(plan_of(["models:/m0/1"], "models:/m-new")))["status"] == "active"

        new = manager.active
        assert new is not None
        assert manager.loads[-1] == "models:/m0/1"
        assert new.models["models:/m0/1"] is not old_model
        assert new.models["models:/m0/1"].status.source == "models:/m-new"
        assert new.batchers["models:/m0/1"] is not old_batcher
        assert new.batchers["models:/m0/1"].model is new.models["models:/m0/1"]
        for _ in range(100):  # the old plan retires in the background
            if old_model.status.state == "released":
                break
            await asyncio.sleep(0.01)
        assert old_model.status.state == "released"
        await manager.stop()

    asyncio.run(scenario())


def test_a_service_served_by_a_pooled_model_is_a_metric_until_it_graduates(tmp_path: Path):
    """Issue 25: ``modelyard_service_fallback{family, region, pooled}`` follows the plan's fallback metadata."""
    name = "modelyard_service_fallback"
    labels = {"family": "f", "region": "r0", "pooled": "f/indonesia"}

    async def scenario() -> None:
        manager = CountingManager(ServeSettings(plan_path=tmp_path / "plan.json"))
        pooled = plan_of(["models:/pooled/1"]).model_copy(
            update={"metadata": {"fallback.f/r0": "f-indonesia v1 (group indonesia)"}}
        )
        assert (await manager.apply(pooled))["status"] == "active"
        assert manager.metrics.registry.get_sample_value(name, labels) == 1.0
        assert manager.readiness()[1]["fallbacks"] == {"f/r0": "f/indonesia"}
        assert (await manager.apply(plan_of(["models:/own/1"])))["status"] == "active"  # graduated
        assert manager.metrics.registry.get_sample_value(name, labels) is None
        assert manager.readiness()[1]["fallbacks"] == {}
        await manager.stop()

    asyncio.run(scenario())
