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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from modelyard.core.errors import ModelyardError
from modelyard.deploy.rollout.planner import PRIMARY, Strategy, primary_variant
from modelyard.deploy.serving.plan import Plan, Rule, Service, Variant

CANARY = "canary"
GREEN = "green"
POLL_SECONDS = 1.0
RolloutState = Literal["pending", "applying", "analyzing", "rolling-back", "succeeded", "rolled-back", "failed"]
ServiceKey = tuple[str, str]


class DeployError(ModelyardError, RuntimeError):
    """A deploy step failed; the message says what happened and what to do."""


class TargetError(DeployError):
    """The target refused or could not reach a plan (rejected plan, not ready, failed smoke test)."""


class RestoredError(TargetError):
    """The target failed the step and already restored what it served before (e.g. ``helm rollback``)."""


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

    def live_digest(self) -> str | None:
        """The digest of the plan the target serves now; None when nothing answers."""
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
        served = primary_variant(old)
        variants = [  # each keeps the source its plan pinned (ADR 0027)
            Variant(
                name=PRIMARY, model_uri=served.model_uri, source=served.source, weight=primary.weight - canary_weight
            ),
            Variant(name=CANARY, model_uri=primary.model_uri, source=primary.source, weight=canary_weight),
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
        new = primary_variant(service)
        green = Variant(name=GREEN, model_uri=new.model_uri, source=new.source, weight=0)
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


@dataclass(frozen=True)
class Wait:
    """What a rollout waits for before it can go on, as JSON (a trigger's arguments).

    * ``ready``: the target's rollout of the step (``spec`` from ``StagedTarget.begin``);
      the outcome is ``{"status": "complete" | "failed" | "timeout", "message": ...}``;
    * ``analysis``: a canary window (``spec``: ``keys``, ``baseline`` metrics text,
      ``deadline`` in epoch seconds, ``thresholds``); the outcome is ``{"breach", "detail"}``.
    """

    kind: Literal["ready", "analysis"]
    spec: dict[str, Any]


def timed_out_outcome(kind: Literal["ready", "analysis"]) -> dict[str, Any]:
    """The outcome of a wait nobody answered (the triggerer never fired): a failure of its step."""
    message = "the triggerer did not answer before the deferral timed out"
    if kind == "ready":
        return {"status": "timeout", "message": message, "reasons": []}
    return {"breach": f"canary analysis not judged: {message}", "detail": ""}


@runtime_checkable
class StagedTarget(Target, Protocol):
    """A target whose apply has a long wait in the middle (Helm: the pods rolling out)."""

    def begin(self, plan: Plan) -> tuple[bool, dict[str, Any] | None]:
        """Start making ``plan`` live: (changed, what to wait for, or None)."""
        ...

    def wait_ready(self, wait: Mapping[str, Any]) -> dict[str, Any]:
        """The wait, done here (blocking); returns the outcome ``finish`` takes."""
        ...

    def finish(self, plan: Plan, wait: Mapping[str, Any], outcome: Mapping[str, Any]) -> None:
        """Verify (or undo) after the wait; raises ``TargetError``."""
        ...


def judge_window(
    baseline: MetricsSnapshot, current: MetricsSnapshot, keys: Iterable[ServiceKey], thresholds: Thresholds
) -> tuple[str | None, dict[ServiceKey, VariantStats]]:
    """The first breach of the canaries of ``keys`` since ``baseline`` (or None), and their stats."""
    stats = {key: window_stats(baseline, current, key, CANARY) for key in keys}
    for key, value in stats.items():
        breach = breach_of(value, thresholds)
        if breach:
            return f"canary of {key[0]}/{key[1]}: {breach}", stats
    return None, stats


def window_outcome(breach: str | None, stats: dict[ServiceKey, VariantStats], thresholds: Thresholds) -> dict[str, Any]:
    """The outcome of an analysis window: the breach (or None) and the summary line."""
    return {"breach": breach, "detail": _summary(stats, None if breach else thresholds.min_requests)}


@dataclass
class Rollout:
    """Apply ``steps`` to ``target``, judge canary steps, roll back to ``previous`` on any failure.

    Resumable: ``advance()`` works until the rollout must wait and returns that ``Wait`` (or
    None once it ended); ``advance(outcome)`` goes on from the wait's outcome. ``checkpoint()``
    and ``restore()`` carry the position between processes (a deferred Airflow task resumes in
    a new one). ``run()`` does the waits here, synchronously (the CLI).
    """

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
    position: int = 0
    waiting: Wait | None = None
    restored: bool = False  # the failing step's target put back what it served before
    overtaken: bool = False  # another deploy changed the target meanwhile: no rollback over its plan

    def run(self) -> RolloutState:
        """Run to ``succeeded``, ``rolled-back`` or ``failed`` (``reason`` says why), waiting here
        (from the pending wait, if ``advance`` already returned one)."""
        wait = self.waiting or self.advance()
        while wait is not None:
            wait = self.advance(self._wait_here(wait))
        return self.state

    def advance(self, outcome: Mapping[str, Any] | None = None) -> Wait | None:
        """Go on until the next wait (returned) or the end (None; ``state`` and ``reason`` say how).

        Raises:
            ValueError: an outcome without a pending wait, or a wait without its outcome.
        """
        if self.state in TERMINAL_STATES:
            return None
        if (outcome is None) != (self.waiting is None):
            raise ValueError(f"rollout at step {self.position}: outcome {outcome!r} for wait {self.waiting!r}")
        if self.waiting is not None and outcome is not None:
            waited, self.waiting = self.waiting, None
            failure, wait = self._after(waited, outcome)
            if failure is not None:
                self._fail(failure)
                return None
            if wait is not None:
                return self._wait_for(wait)
            self.position += 1
        while self.position < len(self.steps):
            failure, wait = self._start_step(self.steps[self.position])
            if failure is not None:
                self._fail(failure)
                return None
            if wait is not None:
                return self._wait_for(wait)
            self.position += 1
        self.state = "succeeded"
        return None

    def _wait_for(self, wait: Wait) -> Wait:
        self.waiting = wait
        self.state = "analyzing" if wait.kind == "analysis" else "applying"
        return wait

    def _fail(self, failure: str) -> None:
        self.reason = f"{self.steps[self.position].name}: {failure}"
        self._roll_back()
        return

    def _start_step(self, step: Step) -> tuple[str | None, Wait | None]:
        self.state = "applying"
        foreign = self._foreign_plan()
        if foreign is not None:
            self.overtaken = True
            self.records.append(StepRecord(step.name, step.plan.digest(), "failed", foreign))
            return foreign, None
        try:
            if isinstance(self.target, StagedTarget):
                changed, ready = self.target.begin(step.plan)
            else:
                changed, ready = self.target.apply(step.plan), None
        except DeployError as exc:
            self.restored = isinstance(exc, RestoredError)
            self.records.append(StepRecord(step.name, step.plan.digest(), "failed", str(exc)))
            return str(exc), None
        self.changed |= changed
        if ready is not None:
            return None, Wait("ready", dict(ready))
        self.records.append(StepRecord(step.name, step.plan.digest(), "applied" if changed else "unchanged"))
        return self._analysis(step)

    def _foreign_plan(self) -> str | None:
        """Why this rollout must stop: the target serves a plan that is none of its own (the live plan
        it started from, or one of its steps), so another deploy moved it meanwhile; else None.

        Checked before each step (a canary's steps are minutes apart, and a deferred Airflow task
        resumes in another process) and before a rollback, which would otherwise put back a plan
        over the other deploy's. A target that does not answer is not a foreign plan: the step
        itself says what is wrong (and the local target restarts its process)."""
        try:
            live = self.target.live_digest()
        except DeployError:
            return None
        ours = {step.plan.digest() for step in self.steps}
        if self.previous is not None:
            ours.add(self.previous.digest())
        if live is None or live in ours:
            return None
        return (
            f"{self.target.name} serves plan {live}, which this deploy did not apply: another deploy "
            "(the deployment DAG or `modelyard deploy`) changed it meanwhile. This one stops here and rolls "
            "nothing back over it; `modelyard plan` shows what serves, deploy again if it is not what you want"
        )

    def _after(self, wait: Wait, outcome: Mapping[str, Any]) -> tuple[str | None, Wait | None]:
        step = self.steps[self.position]
        if wait.kind == "ready":
            if not isinstance(self.target, StagedTarget):
                raise ValueError(f"target {self.target.name} cannot finish a staged step")
            try:
                self.target.finish(step.plan, wait.spec, outcome)
            except DeployError as exc:
                self.restored = isinstance(exc, RestoredError)
                self.records.append(StepRecord(step.name, step.plan.digest(), "failed", str(exc)))
                return str(exc), None
            self.records.append(StepRecord(step.name, step.plan.digest(), "applied"))
            return self._analysis(step)
        breach, detail = outcome.get("breach"), str(outcome.get("detail") or "")
        self.records.append(
            StepRecord(f"{step.name} analysis", step.plan.digest(), "breached" if breach else "passed", detail)
        )
        return (str(breach) if breach else None), None

    def _analysis(self, step: Step) -> tuple[str | None, Wait | None]:
        """The analysis window of a canary step, from a baseline scraped now (a failed scrape fails the step)."""
        if not step.analyze:
            return None, None
        try:
            baseline = self.target.metrics_text()
        except DeployError as exc:
            self.records.append(StepRecord(f"{step.name} analysis", step.plan.digest(), "failed", str(exc)))
            return str(exc), None
        return None, Wait(
            "analysis",
            {
                "keys": [list(key) for key in step.analyze],
                "baseline": baseline,
                "seconds": self.thresholds.analysis_seconds,
                "deadline": time.time() + self.thresholds.analysis_seconds,
                "thresholds": asdict(self.thresholds),
            },
        )

    def _wait_here(self, wait: Wait) -> dict[str, Any]:
        if wait.kind == "ready":
            if not isinstance(self.target, StagedTarget):
                raise ValueError(f"target {self.target.name} cannot wait for a staged step")
            return self.target.wait_ready(wait.spec)
        return self._analyze(wait.spec)

    def _analyze(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Hold for ``analysis_seconds``, polling so a clear breach aborts early."""
        keys = [(str(f), str(r)) for f, r in spec["keys"]]
        baseline = parse_metrics(str(spec["baseline"]))
        deadline = self.clock() + float(spec["seconds"])
        while True:
            self.sleep(max(0.0, min(POLL_SECONDS, deadline - self.clock())))
            current = parse_metrics(self.target.metrics_text())
            breach, stats = judge_window(baseline, current, keys, self.thresholds)
            if breach or self.clock() >= deadline:
                return window_outcome(breach, stats, self.thresholds)

    def checkpoint(self) -> dict[str, Any]:
        """Where the rollout is, as JSON (the steps and plans are rebuilt by the caller)."""
        return {
            "state": self.state,
            "position": self.position,
            "changed": self.changed,
            "overtaken": self.overtaken,
            "reason": self.reason,
            "records": [asdict(r) for r in self.records],
            "waiting": asdict(self.waiting) if self.waiting else None,
        }

    def restore(self, checkpoint: Mapping[str, Any]) -> Rollout:
        """Continue from ``checkpoint`` (taken on the same steps); returns self."""
        self.state = checkpoint["state"]
        self.position = int(checkpoint["position"])
        self.changed = bool(checkpoint["changed"])
        self.overtaken = bool(checkpoint.get("overtaken", False))  # a checkpoint of an older release has none
        self.reason = checkpoint["reason"]
        self.records = [StepRecord(**r) for r in checkpoint["records"]]
        waiting = checkpoint.get("waiting")
        self.waiting = Wait(waiting["kind"], dict(waiting["spec"])) if waiting else None
        return self

    def _roll_back(self) -> None:
        self.state = "rolling-back"
        if not self.overtaken and (foreign := self._foreign_plan()) is not None:
            self.overtaken = True
            self.reason = f"{self.reason}; and {foreign}"
        if self.overtaken:
            self.state = "failed"
            return
        if self.previous is None:
            self.state = "failed"
            self.reason = f"{self.reason} (nothing was live before: no plan to roll back to)"
            return
        if self.restored and not any(r.outcome == "applied" for r in self.records):
            # The first change failed and the target undid it: it serves ``previous`` again. Applying
            # ``previous`` once more would only roll the pods again (with today's chart values).
            self.records.append(StepRecord("rollback", self.previous.digest(), "rolled-back", "restored by the target"))
            self.state = "rolled-back"
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


TERMINAL_STATES = frozenset({"succeeded", "rolled-back", "failed"})


def _summary(stats: dict[ServiceKey, VariantStats], min_requests: int | None = None) -> str:
    parts = []
    for (family, region), value in sorted(stats.items()):
        p99 = "-" if value.p99_ms is None else f"{value.p99_ms:.0f} ms"
        note = " (too few to judge)" if min_requests is not None and value.requests < min_requests else ""
        parts.append(f"{family}/{region}: {value.requests} req{note}, errors {value.error_rate:.1%}, p99 {p99}")
    return "; ".join(parts)
