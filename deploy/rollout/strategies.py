"""Rollout strategies: how a target moves from the live plan to a new one.

A strategy is a list of ``Step``s (``plan_steps``); the ``Rollout`` state machine applies
them one by one to a ``Target`` and owns the single rule of rollback:

``pending -> applying -> (analyzing ->) applying ... -> succeeded``, and from any step
``-> rolling-back -> rolled-back`` (or ``failed`` when there is nothing to roll back to or
the rollback itself fails).

* rolling (default): one step, the new plan (the server swaps without dropping requests);
* canary: for every weight of ``canary_steps`` below 100, the changed services split
  their primary share between the live version (``primary``) and the new one
  (``canary``); each step is held for ``analysis_seconds`` while the canary's error rate
  and p99 latency, read from the server's ``/metrics``, are compared with the thresholds;
  a breach rolls back to the live plan at once; then the new plan;
* blue-green: first the live plan plus the new version as ``green`` at weight 0 (loaded
  and warmed while the old one serves everything), then the new plan at once, in which
  the old version stays loaded as ``standby`` at weight 0 for an instant rollback;
* shadow: one step; the planner already made the new version a shadow of the live one.

Why and when a rollout rolls back: docs/adr/0005-rollouts.md.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from modelyard.deploy.rollout.planner import PRIMARY, Strategy, primary_variant
from modelyard.deploy.serving.plan import Plan, Rule, Service, Variant
from modelyard.pipeline.errors import ModelyardError

CANARY = "canary"
GREEN = "green"
POLL_SECONDS = 1.0
RolloutState = Literal["pending", "applying", "analyzing", "rolling-back", "succeeded", "rolled-back", "failed"]
ServiceKey = tuple[str, str]


class DeployError(ModelyardError, RuntimeError):
    """A deploy step failed; the message says what happened and what to do."""


class TargetError(DeployError):
    """The target refused or could not reach a plan (rejected plan, not ready, failed smoke test)."""


class RollbackError(DeployError):
    """The rollout was rolled back (``reason``) or the rollback itself failed."""


class Target(Protocol):
    """Where plans go: the local serving process or a Helm release."""

    name: str

    def apply(self, plan: Plan) -> bool:
        """Make ``plan`` live, verified (ready + smoke test); True if anything changed."""
        ...

    def metrics_text(self) -> str:
        """The serving ``/metrics`` exposition (for canary analysis)."""
        ...


@dataclass(frozen=True)
class Thresholds:
    """Canary analysis bounds (config ``deploy.rollout``)."""

    max_error_rate: float
    max_p99_ms: float
    min_requests: int
    analysis_seconds: float


@dataclass(frozen=True)
class Step:
    """One plan to apply and, for canary steps, the services whose ``canary`` variant is judged."""

    name: str
    plan: Plan
    analyze: tuple[ServiceKey, ...] = ()


# ---------------------------------------------------------------------------- strategies


def plan_steps(strategy: Strategy, live: Plan | None, target: Plan, canary_steps: Iterable[int]) -> list[Step]:
    """The steps from ``live`` to ``target``; canary/blue-green need something live that changes."""
    changed = changed_services(live, target)
    if live is None or not changed:
        return [Step("swap", target)]
    if strategy == "canary":
        steps = [
            Step(f"canary {weight}%", canary_plan(live, target, weight), tuple(sorted(changed)))
            for weight in canary_steps
            if weight < 100
        ]
        return [*steps, Step("promote 100%", target)]
    if strategy == "blue-green":
        return [Step("warm green 0%", green_plan(live, target)), Step("switch 100%", target)]
    return [Step("swap", target)]


def changed_services(live: Plan | None, target: Plan) -> set[ServiceKey]:
    """Services live in both plans whose primary model differs."""
    if live is None:
        return set()
    changed = set()
    for service in target.services:
        old = live.service(service.family, service.region)
        if old is not None and primary_variant(old).model_uri != primary_variant(service).model_uri:
            changed.add(service.key)
    return changed


def _rewrite_changed(live: Plan, target: Plan, rewrite: Callable[[Service, Service], Service]) -> Plan:
    """``target`` with each changed service replaced by ``rewrite(new, old)``; the rest as they are."""
    changed = changed_services(live, target)
    services = []
    for service in target.services:
        old = live.service(service.family, service.region)
        services.append(rewrite(service, old) if service.key in changed and old is not None else service)
    return target.model_copy(update={"services": services})


def canary_plan(live: Plan, target: Plan, weight: int) -> Plan:
    """``target`` where each changed service gives ``weight``% of its primary share to the new version."""

    def split(service: Service, old: Service) -> Service:
        primary = primary_variant(service)
        canary_weight = round(primary.weight * weight / 100)
        variants = [
            Variant(name=PRIMARY, model_uri=primary_variant(old).model_uri, weight=primary.weight - canary_weight),
            Variant(name=CANARY, model_uri=primary.model_uri, weight=canary_weight),
        ]
        others = [v for v in service.variants if v.name != primary.name and v.name not in (PRIMARY, CANARY)]
        return service.model_copy(update={"variants": [*variants, *others], "rules": _rules(service, primary)})

    return _rewrite_changed(live, target, split)


def _rules(service: Service, primary: Variant) -> list[Rule]:
    # A rule that pointed at the new primary keeps pointing at the primary slot (the live version).
    return [r.model_copy(update={"variant": PRIMARY}) if r.variant == primary.name else r for r in service.rules]


def green_plan(live: Plan, target: Plan) -> Plan:
    """``live`` plus each changed service's new version as ``green`` at weight 0 (loaded, warmed, unrouted)."""

    def add_green(service: Service, old: Service) -> Service:
        green = Variant(name=GREEN, model_uri=primary_variant(service).model_uri, weight=0)
        kept = [v for v in old.variants if v.name != GREEN]
        return old.model_copy(update={"variants": [*kept, green]})

    return _rewrite_changed(live, target, add_green)


# ---------------------------------------------------------------------------- metrics


@dataclass
class MetricsSnapshot:
    """The request counters and latency histograms of one ``/metrics`` scrape."""

    requests: dict[tuple[str, str, str, str], float] = field(default_factory=dict)
    latency: dict[tuple[str, str, str], dict[float, float]] = field(default_factory=dict)
    latency_by_variant: bool = False


def parse_metrics(text: str) -> MetricsSnapshot:
    """Parse ``modelyard_requests_total`` (family, region, variant, status) and
    ``modelyard_request_seconds_bucket``; the histogram may or may not carry a variant label."""
    from prometheus_client.parser import text_string_to_metric_families

    snapshot = MetricsSnapshot()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "modelyard_requests_total":
                key = (labels["family"], labels["region"], labels["variant"], labels["status"])
                snapshot.requests[key] = snapshot.requests.get(key, 0.0) + sample.value
            elif sample.name == "modelyard_request_seconds_bucket":
                snapshot.latency_by_variant |= "variant" in labels
                series = (labels["family"], labels["region"], labels.get("variant", "*"))
                buckets = snapshot.latency.setdefault(series, {})
                le = float(labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
    return snapshot


@dataclass(frozen=True)
class VariantStats:
    """A variant's traffic over an analysis window."""

    requests: int
    errors: int
    p99_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def window_stats(before: MetricsSnapshot, after: MetricsSnapshot, key: ServiceKey, variant: str) -> VariantStats:
    """Requests, server errors and p99 of ``variant`` of ``key`` between two scrapes.

    ``bad_input`` answers are the client's fault and do not count as errors. Without a
    per-variant latency histogram the p99 is the whole service's (the canary is part of it).
    """
    family, region = key
    counts = {"ok": 0.0, "error": 0.0}
    for status in counts:
        label = (family, region, variant, status)
        counts[status] = after.requests.get(label, 0.0) - before.requests.get(label, 0.0)
    series = (family, region, variant if after.latency_by_variant else "*")
    old = before.latency.get(series, {})
    delta = {le: count - old.get(le, 0.0) for le, count in after.latency.get(series, {}).items()}
    p99 = histogram_quantile(0.99, delta)
    total = counts["ok"] + counts["error"]
    return VariantStats(int(total), int(counts["error"]), None if p99 is None else p99 * 1000)


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative ``le -> count`` buckets (None when empty)."""
    edges = sorted(buckets)
    if not edges or buckets[edges[-1]] <= 0:
        return None
    rank = q * buckets[edges[-1]]
    lower, below = 0.0, 0.0
    for le in edges:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                return lower  # beyond the last finite bucket: its bound is all we know
            return lower + (le - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = le, count
    return lower


def breach_of(stats: VariantStats, thresholds: Thresholds) -> str | None:
    """Why ``stats`` fail the thresholds, or None (too few requests are never judged a breach)."""
    if stats.requests < thresholds.min_requests:
        return None
    if stats.error_rate > thresholds.max_error_rate:
        return (
            f"error rate {stats.error_rate:.1%} ({stats.errors}/{stats.requests} requests) "
            f"> max_error_rate {thresholds.max_error_rate:.1%}"
        )
    if stats.p99_ms is not None and stats.p99_ms > thresholds.max_p99_ms:
        return f"p99 latency {stats.p99_ms:.0f} ms > max_p99_ms {thresholds.max_p99_ms:.0f} ms"
    return None


# ---------------------------------------------------------------------------- the state machine


@dataclass(frozen=True)
class StepRecord:
    """What happened to one step (or the rollback), for the result table and the DAG log."""

    step: str
    plan_digest: str
    outcome: Literal["applied", "unchanged", "passed", "breached", "failed", "rolled-back"]
    detail: str = ""


@dataclass
class Rollout:
    """Apply ``steps`` to ``target``, judge canary steps, roll back to ``previous`` on any failure."""

    target: Target
    steps: list[Step]
    previous: Plan | None
    thresholds: Thresholds
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    state: RolloutState = "pending"
    records: list[StepRecord] = field(default_factory=list)
    reason: str | None = None
    changed: bool = False

    def run(self) -> RolloutState:
        """Run to ``succeeded``, ``rolled-back`` or ``failed`` (``reason`` says why)."""
        for step in self.steps:
            failure = self._run_step(step)
            if failure is not None:
                self.reason = f"{step.name}: {failure}"
                self._roll_back()
                return self.state
        self.state = "succeeded"
        return self.state

    def _run_step(self, step: Step) -> str | None:
        self.state = "applying"
        try:
            changed = self.target.apply(step.plan)
        except DeployError as exc:
            self.records.append(StepRecord(step.name, step.plan.digest(), "failed", str(exc)))
            return str(exc)
        self.changed |= changed
        self.records.append(StepRecord(step.name, step.plan.digest(), "applied" if changed else "unchanged"))
        if not step.analyze:
            return None
        self.state = "analyzing"
        breach, detail = self._analyze(step.analyze)
        self.records.append(
            StepRecord(f"{step.name} analysis", step.plan.digest(), "breached" if breach else "passed", detail)
        )
        return breach

    def _analyze(self, keys: tuple[ServiceKey, ...]) -> tuple[str | None, str]:
        """Hold for ``analysis_seconds``, polling so a clear breach aborts early."""
        baseline = parse_metrics(self.target.metrics_text())
        deadline = self.clock() + self.thresholds.analysis_seconds
        while True:
            self.sleep(max(0.0, min(POLL_SECONDS, deadline - self.clock())))
            current = parse_metrics(self.target.metrics_text())
            stats = {key: window_stats(baseline, current, key, CANARY) for key in keys}
            for key, value in stats.items():
                breach = breach_of(value, self.thresholds)
                if breach:
                    return f"canary of {key[0]}/{key[1]}: {breach}", _summary(stats)
            if self.clock() >= deadline:
                return None, _summary(stats, self.thresholds.min_requests)

    def _roll_back(self) -> None:
        self.state = "rolling-back"
        if self.previous is None:
            self.state = "failed"
            self.reason = f"{self.reason} (nothing was live before: no plan to roll back to)"
            return
        try:
            self.target.apply(self.previous)
        except DeployError as exc:
            self.records.append(StepRecord("rollback", self.previous.digest(), "failed", str(exc)))
            self.state = "failed"
            self.reason = f"{self.reason}; the rollback failed too: {exc}"
            return
        self.records.append(StepRecord("rollback", self.previous.digest(), "rolled-back", self.reason or ""))
        self.state = "rolled-back"


def _summary(stats: dict[ServiceKey, VariantStats], min_requests: int | None = None) -> str:
    parts = []
    for (family, region), value in sorted(stats.items()):
        p99 = "-" if value.p99_ms is None else f"{value.p99_ms:.0f} ms"
        note = " (too few to judge)" if min_requests is not None and value.requests < min_requests else ""
        parts.append(f"{family}/{region}: {value.requests} req{note}, errors {value.error_rate:.1%}, p99 {p99}")
    return "; ".join(parts)
