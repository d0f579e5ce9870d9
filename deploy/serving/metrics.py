"""Prometheus metrics of the serving runtime (``/metrics``).

With several worker processes, prometheus_client's multiprocess mode is used: the CLI
sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker imports prometheus_client, every
worker writes its samples there, and ``/metrics`` (answered by any worker) aggregates
all of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    import numpy as np

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
VALUE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1, 2, 5, 10, 20, 30, 60)
VALUES_OBSERVED_PER_REQUEST = 16
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def multiprocess_enabled() -> bool:
    """Whether samples go to ``PROMETHEUS_MULTIPROC_DIR`` (set for more than one worker)."""
    return bool(os.environ.get(MULTIPROC_ENV))


class ServingMetrics:
    """Every metric the server exports, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._batch_rows: dict[str, Any] = {}
        reg = self.registry
        self.requests = Counter(
            "modelyard_requests",
            "Prediction requests by outcome",
            ["family", "region", "variant", "version", "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "modelyard_request_seconds",
            "Prediction request latency, body read to response",
            ["family", "region", "variant"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.batch_rows = Histogram(
            "modelyard_batch_rows",
            "Rows per model call (micro-batch size)",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=reg,
        )
        self.prediction = Histogram(
            "modelyard_prediction_value",
            f"Predicted values (at most {VALUES_OBSERVED_PER_REQUEST} evenly spaced rows per request)",
            ["family", "region", "variant"],
            buckets=VALUE_BUCKETS,
            registry=reg,
        )
        self.load_seconds = Gauge(
            "modelyard_model_load_seconds", "Download + load time", ["model", "version"], registry=reg,
            multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.warmup_seconds = Gauge(
            "modelyard_model_warmup_seconds", "Warm-up time", ["model", "version"], registry=reg,
            multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.model_engine = Gauge(
            "modelyard_model_engine",
            "1 for the engine a loaded model answers small batches with (onnx or native; reason in /readyz)",
            ["model", "version", "engine"],
            registry=reg,
            multiprocess_mode="mostrecent",
        )
        self.model_loads = Counter(
            "modelyard_model_loads",
            "Model versions downloaded, loaded and warmed (reused ones not counted)",
            registry=reg,
        )
        self.models_reused = Counter(
            "modelyard_models_reused", "Models a new plan took over from the active one (same name and version)",
            registry=reg,
        )  # fmt: skip
        self.process_rss = Gauge(
            "modelyard_process_rss_bytes", "Resident memory after the last plan load", registry=reg,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self.rss_per_model = Gauge(
            "modelyard_model_rss_bytes",
            "RSS growth per model over the last plan load that loaded any (growth / models loaded)",
            registry=reg,
            multiprocess_mode="mostrecent",
        )
        self.model_load_failures = Counter(
            "modelyard_model_load_failures", "Models that failed to load or warm up", ["model"], registry=reg
        )
        self.swaps = Counter("modelyard_plan_swaps", "Plan swaps by result", ["result"], registry=reg)
        self.ready = Gauge(
            "modelyard_ready",
            "1 when every model of the active plan is warm",
            registry=reg,
            multiprocess_mode="livemin",
        )
        self.plan_active = Gauge(
            "modelyard_plan_active",
            "1 for the active plan digest",
            ["digest"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.service_fallback = Gauge(
            "modelyard_service_fallback",
            "1 for a service served by its region group's pooled model (join on family, region)",
            ["family", "region", "pooled"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.shadow = Counter(
            "modelyard_shadow_predictions",
            "Shadow predictions by outcome (ok, error, dropped)",
            ["family", "region", "shadow", "status"],
            registry=reg,
        )
        self.shadow_diff = Histogram(
            "modelyard_shadow_abs_diff",
            "Mean |shadow - served| prediction per request",
            ["family", "region", "shadow"],
            buckets=(0.001, 0.01, 0.05, 0.1, 0.2, 0.5, 1, 5, 10),
            registry=reg,
        )
        self.unknown_categories = Counter(
            "modelyard_unknown_categories",
            "Raw values of a category feature never seen in training (served with the unknown code)",
            ["family", "region", "variant", "feature"],
            registry=reg,
        )
        self.clipped_values = Counter(
            "modelyard_raw_values_clipped",
            "Raw values outside their column's declared min/max, clipped to the bound (out_of_range: clip)",
            ["family", "region", "variant", "field"],
            registry=reg,
        )
        self.samples = Counter(
            "modelyard_prediction_log_samples",
            "Sampled requests handed to the prediction log, by outcome (queued, dropped: the queue was full)",
            ["outcome"],
            registry=reg,
        )

    def observe_batch(self, model: str, rows: int) -> None:
        """Count one model call of ``rows`` rows (the child is looked up once per model)."""
        child = self._batch_rows.get(model)
        if child is None:
            child = self._batch_rows[model] = self.batch_rows.labels(model)
        child.observe(rows)

    def observe_predictions(self, family: str, region: str, variant: str, values: np.ndarray) -> None:
        """Feed the prediction histogram with a bounded, evenly spaced sample of ``values``."""
        observe_sample(self.prediction.labels(family, region, variant), values)

    def mark_fallbacks(self, new: dict[tuple[str, str], str], old: dict[tuple[str, str], str]) -> None:
        """Set ``modelyard_service_fallback`` for the services of the new plan; drop those the old one had."""
        for (family, region), pooled in old.items():
            if new.get((family, region)) != pooled:
                with contextlib.suppress(KeyError):
                    self.service_fallback.remove(family, region, pooled)
        for (family, region), pooled in new.items():
            self.service_fallback.labels(family, region, pooled).set(1)

    def exposition(self) -> bytes:
        """The text exposition: this process's registry, or every worker's in multiprocess mode."""
        if multiprocess_enabled():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


@dataclasses.dataclass(frozen=True)
class RequestSeries:
    """The metric children every answered request of one (family, region, variant, version) writes."""

    ok: Any
    latency: Any
    predictions: Any

    @classmethod
    def of(cls, metrics: ServingMetrics, labels: tuple[str, str, str, str]) -> RequestSeries:
        """Look the children of ``labels`` up once (a plan keeps them for its lifetime)."""
        family, region, variant = labels[:3]
        return cls(
            ok=metrics.requests.labels(*labels, "ok"),
            latency=metrics.latency.labels(family, region, variant),
            predictions=metrics.prediction.labels(family, region, variant),
        )


def observe_sample(child: Any, values: np.ndarray) -> None:
    """Feed one prediction-histogram child with a bounded, evenly spaced sample of ``values``."""
    if values.ndim != 1 or len(values) == 0:
        return
    if len(values) == 1:
        child.observe(float(values[0]))
        return
    step = max(1, len(values) // VALUES_OBSERVED_PER_REQUEST)
    for value in values[::step][:VALUES_OBSERVED_PER_REQUEST].tolist():
        child.observe(value)
