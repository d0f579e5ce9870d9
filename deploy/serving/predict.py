"""The prediction endpoints: ``POST /v1/predict/{family}/{region}`` and ``POST /invocations/{family}/{region}``.

A request is parsed into records, routed to a variant of its service, validated against the
variant's model, batched with concurrent requests, and answered; then, off the response path,
it is counted, sampled into the plan's prediction log and handed to the service's shadows.
Our endpoint answers predictions with the model, version, variant and routing reason;
MLflow's answers ``{"predictions": [...]}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modelyard.core.contracts.prediction_log import PROBE_HEADER
from modelyard.deploy.serving.active import ActivePlan, ServiceHandle, ShadowHandle, VariantHandle
from modelyard.deploy.serving.asgi import Response, Scope, header, json_response
from modelyard.deploy.serving.errors import BadInput, RequestError, ServingError
from modelyard.deploy.serving.manager import PlanManager
from modelyard.deploy.serving.metrics import RequestSeries, ServingMetrics, observe_sample
from modelyard.deploy.serving.online import OnlineLookup, fitted_of
from modelyard.deploy.serving.records import request_records, routing_key_of
from modelyard.deploy.serving.sampling import PredictionLogWriter, Sample, new_request_id, trim_records

if TYPE_CHECKING:
    import numpy as np

    from modelyard.deploy.serving.runtime import ServedModel

log = logging.getLogger("modelyard.serving")

INLINE_PARSE_BYTES = 64 * 1024  # larger bodies are parsed and validated off the event loop
Labels = tuple[str, str, str, str]  # family, region, variant, version
_PROBE = PROBE_HEADER.lower().encode()


class Predictions:
    """Answers prediction requests on the active plan of ``manager()``."""

    def __init__(
        self, metrics: ServingMetrics, manager: Callable[[], PlanManager], online: OnlineLookup | None = None
    ) -> None:
        self.metrics = metrics
        self._manager = manager
        self.online = online  # fills online features a raw record lacks (ADR 0019)

    async def answer(self, family: str, region: str, body: bytes, scope: Scope, *, mlflow_format: bool) -> Response:
        """Validate, route, batch and answer one prediction request."""
        started = time.perf_counter()
        active = self._manager().active
        if active is None:
            raise RequestError("no plan is active yet; see /readyz", status=503, code="not_ready")
        handle = _service(active, family, region)
        large = len(body) > INLINE_PARSE_BYTES  # parse and validate off the loop: /healthz keeps answering
        if large:
            records = await asyncio.to_thread(request_records, body, active.plan.max_records, mlflow_format)
        else:  # called, not awaited: a coroutine per step is a measurable share of a one-row request
            records = request_records(body, active.plan.max_records, mlflow_format)
        key = routing_key_of(records, header(scope, b"x-routing-key"), active.plan.routing_key)
        route = handle.router.route(key)
        variant = handle.variants[route.variant]
        output, request_id = await self.run(active, handle, variant, records, scope, large=large, started=started)
        if mlflow_format:
            return json_response(200, {"predictions": output})
        return json_response(
            200,
            {
                "predictions": output,
                "model": variant.model.name,
                "version": variant.model.version,
                "variant": variant.name,
                "routed_by": route.reason,
                "request_id": request_id,
            },
        )

    async def run(
        self,
        active: ActivePlan,
        handle: ServiceHandle,
        variant: VariantHandle,
        records: list[Any],
        scope: Scope,
        *,
        large: bool,
        started: float,
        request_id: str | None = None,
    ) -> tuple[np.ndarray, str]:
        """Prepare, batch and observe one routed request on ``variant``: the steps every protocol shares.

        Returns the output and the request id (the client's ``x-request-id``, else ``request_id``,
        else a new one).
        """
        family, region = handle.service.key
        labels = (family, region, variant.name, variant.model.version)
        fitted = fitted_of(variant.model)
        if self.online is not None and fitted is not None and fitted.online:
            await self.online.fill(family, region, fitted, records)
        try:
            if large:
                prepared = await asyncio.to_thread(variant.model.prepare_counted, records, variant.calendar)
            else:
                prepared = variant.model.prepare_counted(records, variant.calendar)
        except BadInput:
            self.metrics.requests.labels(*labels, "bad_input").inc()
            _count(active.prediction_log, labels, "bad_input")
            raise
        for feature, count in prepared.unknown.items():
            self.metrics.unknown_categories.labels(family, region, variant.name, feature).inc(count)
        for field, count in prepared.clipped.items():
            self.metrics.clipped_values.labels(family, region, variant.name, field).inc(count)
        active.inflight += 1
        batcher = variant.batcher
        try:
            output = (
                batcher.predict_now(prepared.matrix) if batcher.answers_now() else await batcher.submit(prepared.matrix)
            )
        except ServingError:
            self.metrics.requests.labels(*labels, "error").inc()
            _count(active.prediction_log, labels, "error")
            raise
        finally:
            active.inflight -= 1
        request_id = new_request_id(header(scope, b"x-request-id") or request_id)
        probe = header(scope, _PROBE) is not None
        self._observe(active, handle, variant, labels, (request_id, records, prepared.matrix), output, started, probe)
        return output, request_id

    def _observe(
        self,
        active: ActivePlan,
        handle: ServiceHandle,
        variant: VariantHandle,
        labels: Labels,
        request: tuple[str, list[Any], np.ndarray],
        output: np.ndarray,
        started: float,
        probe: bool,
    ) -> None:
        """Count and time the request; unless it is modelyard's own probe (``PROBE_HEADER``), observe its
        predictions, sample it into the prediction log and hand it to the shadows."""
        request_id, records, _ = request
        series = active.series.get(labels)
        if series is None:
            series = active.series[labels] = RequestSeries.of(self.metrics, labels)
        series.ok.inc()
        series.latency.observe(time.perf_counter() - started)
        if probe:  # a deploy's smoke test: its row of zeros must not reach drift, quality or sent fields
            return
        observe_sample(series.predictions, output)
        self._sample(active.prediction_log, labels, active.digest, request, output, variant.model)
        for shadow in handle.shadows:
            self._shadow(active, labels, shadow, records, output, request_id)

    def _shadow(
        self,
        active: ActivePlan,
        labels: Labels,
        shadow: ShadowHandle,
        records: list[Any],
        served: np.ndarray,
        request_id: str,
    ) -> None:
        family, region = labels[0], labels[1]
        metrics, plog = self.metrics, active.prediction_log

        def run() -> None:
            if shadow.model.status.state == "released":  # queued before its plan was retired
                return
            try:
                predicted = shadow.model.predict(shadow.model.prepare(records, shadow.calendar))
            except Exception as exc:
                metrics.shadow.labels(family, region, shadow.name, "error").inc()
                log.warning("shadow failed", extra={"event": "shadow_error", "shadow": shadow.name, "error": str(exc)})
                return
            metrics.shadow.labels(family, region, shadow.name, "ok").inc()
            diff = _mean_abs_diff(predicted, served)
            if diff is not None:
                metrics.shadow_diff.labels(family, region, shadow.name).observe(diff)
            if plog is not None:  # every shadow comparison, as the shadow ran off the request path anyway
                extra: dict[str, Any] = {"shadow": shadow.name, "shadow_model": shadow.model.name}
                extra.update(shadow_version=shadow.model.version, shadow_predictions=predicted, mean_abs_diff=diff)
                plog.offer(Sample("shadow", request_id, labels, active.digest, None, None, served, time.time(), extra))

        if not shadow.worker.offer(run):
            metrics.shadow.labels(family, region, shadow.name, "dropped").inc()

    def _sample(
        self,
        plog: PredictionLogWriter | None,
        labels: Labels,
        digest: str,
        request: tuple[str, list[Any], np.ndarray],
        output: np.ndarray,
        model: ServedModel,
    ) -> None:
        """Count the request; hand a sampled one to the prediction log (a tuple into a bounded queue; never blocks).

        The records are trimmed to the fields ``model`` reads and a few others first, so the queue
        never holds what a client sent beyond that.
        """
        if plog is None:
            return
        plog.count(labels, "ok")
        if not plog.sampled():
            return
        request_id, records, matrix = request
        kept = trim_records(records, model.fields)
        sample = Sample("prediction", request_id, labels, digest, kept, matrix, output, time.time(), model=model.name)
        queued = plog.offer(sample)
        if queued:
            self.metrics.samples.labels("queued").inc()


def _service(active: ActivePlan, family: str, region: str) -> ServiceHandle:
    handle = active.services.get((family, region))
    if handle is not None:
        return handle
    if family not in active.families:
        raise RequestError(
            f"unknown family '{family}' (served: {', '.join(sorted(active.families))})",
            field="family",
            status=404,
            code="unknown_service",
        )
    regions = sorted(r for f, r in active.services if f == family)
    raise RequestError(
        f"region '{region}' is not served for family '{family}' (served: {', '.join(regions)})",
        field="region",
        status=404,
        code="unknown_service",
    )


def _count(plog: PredictionLogWriter | None, labels: Labels, outcome: str) -> None:
    if plog is not None:
        plog.count(labels, outcome)


def _mean_abs_diff(a: Any, b: Any) -> float | None:
    import numpy as np

    try:
        return float(np.mean(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))
    except (TypeError, ValueError):
        return None
