"""The active plan: an immutable snapshot a request holds from routing to response.

Built once per swap from the plan and its loaded models: one router per service, one
batcher per model (a model the old plan already served keeps its batcher), the shadows on
the shared shadow pool, and the plan's prediction-log writer. Requests that started on the
old snapshot finish on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from modelyard.core.featurespec import Calendar
from modelyard.deploy.serving.background import BackgroundWorker
from modelyard.deploy.serving.batching import Batcher
from modelyard.deploy.serving.metrics import RequestSeries
from modelyard.deploy.serving.plan import Plan, Service
from modelyard.deploy.serving.router import Clock, ServiceRouter, fixed_clock, system_clock
from modelyard.deploy.serving.runtime import ServedModel
from modelyard.deploy.serving.sampling import PredictionLogWriter
from modelyard.deploy.serving.swap_outcomes import now


@dataclasses.dataclass
class VariantHandle:
    name: str
    model: ServedModel
    batcher: Batcher
    calendar: Calendar | None = None  # the service region's, when the model was fitted for another's (ADR 0015)


@dataclasses.dataclass
class ShadowHandle:
    name: str
    model: ServedModel
    worker: BackgroundWorker
    calendar: Calendar | None = None


@dataclasses.dataclass
class ServiceHandle:
    service: Service
    router: ServiceRouter
    variants: dict[str, VariantHandle]
    shadows: list[ShadowHandle]


@dataclasses.dataclass
class ActivePlan:
    """An immutable snapshot a request holds from routing to response."""

    plan: Plan
    digest: str
    services: dict[tuple[str, str], ServiceHandle]
    models: dict[str, ServedModel]
    batchers: dict[str, Batcher]
    families: frozenset[str]
    prediction_log: PredictionLogWriter | None
    activated_at: str
    inflight: int = 0
    # (family, region) -> "<family>/<group>" for services served by their group's pooled model (ADR 0015).
    fallbacks: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)
    # The metric children of each (family, region, variant, version), looked up once per plan.
    series: dict[tuple[str, str, str, str], RequestSeries] = dataclasses.field(default_factory=dict)

    def served_note(self, limit: int = 20) -> str:
        """`` (served: fare/jakarta, ...)``: at most ``limit`` services, for an error message."""
        names = sorted(f"{family}/{region}" for family, region in self.services)
        more = ", ..." if len(names) > limit else ""
        return f" (served: {', '.join(names[:limit])}{more})"


def build_active(
    plan: Plan,
    digest: str,
    models: dict[str, ServedModel],
    *,
    old: ActivePlan | None,
    shadow_pool: BackgroundWorker,
    on_batch: Callable[[ServedModel, int], None],
    prediction_log: PredictionLogWriter | None,
) -> ActivePlan:
    """The snapshot of ``plan`` on ``models`` (by URI), reusing the batchers of ``old``.

    Args:
        plan: the plan becoming active.
        digest: its digest.
        models: every model the plan names, loaded and warm.
        old: the plan being replaced, if any.
        shadow_pool: the threads every shadow runs on.
        on_batch: called with each model call's model and row count (metrics).
        prediction_log: the plan's prediction-log writer, if it samples.
    """
    batchers = _batchers(plan, models, old.batchers if old is not None else {}, on_batch)
    clock = fixed_clock(plan.clock_override) if plan.clock_override else system_clock
    services = {
        service.key: _service_handle(service, clock, models, batchers, shadow_pool) for service in plan.services
    }
    return ActivePlan(
        plan=plan,
        digest=digest,
        services=services,
        models=models,
        batchers=batchers,
        families=frozenset(s.family for s in plan.services),
        prediction_log=prediction_log,
        activated_at=now(),
        fallbacks=plan.fallbacks(),
    )


def _service_handle(
    service: Service,
    clock: Clock,
    models: dict[str, ServedModel],
    batchers: dict[str, Batcher],
    shadow_pool: BackgroundWorker,
) -> ServiceHandle:
    return ServiceHandle(
        service=service,
        router=ServiceRouter(service, clock),
        variants={
            v.name: VariantHandle(
                v.name, models[v.model_uri], batchers[v.model_uri], _calendar(service, models[v.model_uri])
            )
            for v in service.variants
        },
        shadows=[
            ShadowHandle(s.name, models[s.model_uri], shadow_pool, _calendar(service, models[s.model_uri]))
            for s in service.shadows
        ],
    )


def _calendar(service: Service, model: ServedModel) -> Calendar | None:
    """A pooled model serving a region computes its time features in that region's zone and holidays."""
    return model.calendar_for(service.region, service.calendar)


def _batchers(
    plan: Plan,
    models: dict[str, ServedModel],
    old: dict[str, Batcher],
    on_batch: Callable[[ServedModel, int], None],
) -> dict[str, Batcher]:
    batchers: dict[str, Batcher] = {}
    for service in plan.services:
        for variant in service.variants:
            uri = variant.model_uri
            if uri not in batchers:  # one batcher per model, however many variants name it
                batchers[uri] = _batcher(old, models[uri], plan, on_batch)
    return batchers


def _batcher(
    old: dict[str, Batcher], model: ServedModel, plan: Plan, on_batch: Callable[[ServedModel, int], None]
) -> Batcher:
    batcher = old.get(model.uri)
    if batcher is not None and batcher.model is model:
        # Same model: keep its collector, only the bounds may have changed.
        batcher.max_batch_size = plan.batching.max_batch_size
        batcher.max_wait = plan.batching.max_wait_ms / 1000
        return batcher
    batcher = Batcher(
        model,
        max_batch_size=plan.batching.max_batch_size,
        max_wait_ms=plan.batching.max_wait_ms,
        on_batch=on_batch,
    )
    batcher.start()
    return batcher
