"""Rollout strategies and the rollback state machine, against an in-memory target.

The target's ``/metrics`` text is produced by the real ``ServingMetrics`` of the server,
so the parser is tested on the exact exposition format the server writes. Time is a
fake clock: every ``sleep`` sends simulated traffic through the active plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from modelyard.deploy.rollout.strategies import (
    CANARY,
    GREEN,
    Rollout,
    TargetError,
    Thresholds,
    breach_of,
    canary_plan,
    green_plan,
    histogram_quantile,
    parse_metrics,
    plan_steps,
    window_stats,
)
from modelyard.deploy.serving.metrics import ServingMetrics
from modelyard.deploy.serving.plan import Plan, Service, Variant

THRESHOLDS = Thresholds(max_error_rate=0.01, max_p99_ms=100, min_requests=20, analysis_seconds=10)


def service(region: str, version: str, **extra: object) -> Service:
    return Service(
        family="eta",
        region=region,
        variants=[Variant(name="primary", model_uri=f"models:/eta-{region}/{version}", weight=100)],
        **extra,
    )


def plan(**versions: str) -> Plan:
    return Plan(services=[service(region, version) for region, version in versions.items()])


@dataclass
class FakeTarget:
    """Applies plans in memory; ``traffic`` answers requests per the active plan's weights."""

    bad_versions: dict[str, tuple[float, float]] = field(default_factory=dict)  # version -> (error rate, seconds)
    reject: set[str] = field(default_factory=set)
    name: str = "fake"
    active: Plan | None = None
    applied: list[Plan] = field(default_factory=list)
    metrics: ServingMetrics = field(default_factory=ServingMetrics)
    now: float = 0.0

    def apply(self, new: Plan) -> bool:
        if new.digest() in self.reject:
            raise TargetError("model failed its warm-up")
        changed = self.active is None or self.active.digest() != new.digest()
        self.active = new
        self.applied.append(new)
        return changed

    def metrics_text(self) -> str:
        return self.metrics.exposition().decode()

    def live_digest(self) -> str | None:
        return self.active.digest() if self.active is not None else None

    def traffic(self, requests_per_service: int = 100) -> None:
        assert self.active is not None
        for svc in self.active.services:
            for variant in svc.variants:
                version = variant.model_uri.rsplit("/", 1)[1]
                error_rate, seconds = self.bad_versions.get(version, (0.0, 0.002))
                count = requests_per_service * variant.weight // 100
                errors = round(count * error_rate)
                labels = (svc.family, svc.region, variant.name, version)
                self.metrics.requests.labels(*labels, "error").inc(errors)
                self.metrics.requests.labels(*labels, "ok").inc(count - errors)
                for _ in range(count):
                    self.metrics.latency.labels(svc.family, svc.region, variant.name).observe(seconds)

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.5)
        self.traffic()

    def clock(self) -> float:
        return self.now


def run(target: FakeTarget, strategy: str, live: Plan | None, new: Plan) -> Rollout:
    rollout = Rollout(
        target, plan_steps(strategy, live, new, [10, 50, 100]), live, THRESHOLDS,  # type: ignore[arg-type]
        sleep=target.sleep, clock=target.clock,
    )  # fmt: skip
    if live is not None:
        target.apply(live)
        target.applied.clear()
    rollout.run()
    return rollout


def test_rolling_is_one_swap() -> None:
    target = FakeTarget()
    rollout = run(target, "rolling", plan(jakarta="1"), plan(jakarta="2"))

    assert rollout.state == "succeeded"
    assert target.applied == [plan(jakarta="2")]


def test_healthy_canary_steps_weights_up_and_ends_on_the_new_plan() -> None:
    target = FakeTarget()
    live, new = plan(jakarta="1", hanoi="1"), plan(jakarta="2", hanoi="1")

    rollout = run(target, "canary", live, new)

    assert rollout.state == "succeeded", rollout.reason
    weights = [[(v.name, v.weight) for v in p.services[0].variants] for p in target.applied]
    assert weights == [[("primary", 90), (CANARY, 10)], [("primary", 50), (CANARY, 50)], [("primary", 100)]]
    assert all(p.services[1] == new.services[1] for p in target.applied)  # the unchanged service is left alone
    assert [r.outcome for r in rollout.records] == ["applied", "passed", "applied", "passed", "applied"]
    assert target.active == new


def test_erroring_canary_rolls_back_at_the_first_step_with_the_reason() -> None:
    target = FakeTarget(bad_versions={"2": (0.3, 0.002)})

    rollout = run(target, "canary", plan(jakarta="1"), plan(jakarta="2"))

    assert rollout.state == "rolled-back"
    assert rollout.reason is not None
    assert "canary 10%: canary of eta/jakarta: error rate" in rollout.reason
    assert "max_error_rate 1.0%" in rollout.reason
    assert target.active == plan(jakarta="1")
    assert len(target.applied) == 2  # the 10% step, then the rollback
    assert target.now < THRESHOLDS.analysis_seconds  # a clear breach does not wait for the window's end


def test_slow_canary_breaches_p99_and_rolls_back() -> None:
    target = FakeTarget(bad_versions={"2": (0.0, 0.4)})

    rollout = run(target, "canary", plan(jakarta="1"), plan(jakarta="2"))

    assert rollout.state == "rolled-back"
    assert "p99 latency" in (rollout.reason or "")
    assert target.active == plan(jakarta="1")


def test_rejected_step_rolls_back_and_nothing_live_means_failed() -> None:
    new = plan(jakarta="2")
    target = FakeTarget(reject={new.digest()})

    rolled = run(target, "rolling", plan(jakarta="1"), new)
    failed = run(FakeTarget(reject={new.digest()}), "rolling", None, new)

    assert rolled.state == "rolled-back"
    assert "model failed its warm-up" in (rolled.reason or "")
    assert target.active == plan(jakarta="1")
    assert failed.state == "failed"
    assert "nothing was live before" in (failed.reason or "")


@dataclass
class OvertakenTarget(FakeTarget):
    """A target another deploy writes ``other`` to once this rollout has analysed for ``after`` seconds."""

    other: Plan | None = None
    after: float = 3.0

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        if self.other is not None and self.now >= self.after and self.active != self.other:
            self.active = self.other  # not in ``applied``: that is this rollout's record


def test_a_canary_overtaken_by_another_deploy_stops_and_rolls_nothing_back_over_it() -> None:
    """Between two canary steps (minutes apart), another deploy (the DAG, the CLI) made its plan live:
    going on would overwrite it with this rollout's stale plans, and a rollback would undo it."""
    live, new, theirs = plan(jakarta="1"), plan(jakarta="2"), plan(jakarta="3")
    target = OvertakenTarget(other=theirs, after=THRESHOLDS.analysis_seconds / 2)  # in the 10% step's window

    rollout = run(target, "canary", live, new)

    assert rollout.state == "failed"
    assert target.active == theirs
    assert [p.services[0].variants[-1].weight for p in target.applied] == [10]  # the 10% step only
    assert rollout.reason is not None
    assert rollout.reason.startswith(f"canary 50%: fake serves plan {theirs.digest()}, which this deploy did not apply")
    assert [r.outcome for r in rollout.records] == ["applied", "passed", "failed"]


def test_a_breach_after_another_deploy_took_the_target_does_not_roll_back_over_it() -> None:
    live, new, theirs = plan(jakarta="1"), plan(jakarta="2"), plan(jakarta="3")
    # The canary's bad answers are counted, then the other deploy takes the target, then the breach is seen.
    target = OvertakenTarget(bad_versions={"2": (0.3, 0.002)}, other=theirs, after=2.0)

    rollout = run(target, "canary", live, new)

    assert rollout.state == "failed"
    assert "canary of eta/jakarta: error rate" in (rollout.reason or "")
    assert "; and fake serves plan" in (rollout.reason or "")
    assert target.active == theirs
    assert live not in target.applied


def test_a_target_that_does_not_answer_is_not_another_deploy() -> None:
    """The local target restarts a serving process that died: nothing answering must not stop a deploy."""

    class Silent(FakeTarget):
        def live_digest(self) -> str | None:
            return None

    rollout = run(Silent(), "canary", plan(jakarta="1"), plan(jakarta="2"))

    assert rollout.state == "succeeded", rollout.reason


def test_blue_green_warms_the_new_version_at_zero_before_switching() -> None:
    target = FakeTarget()
    live = plan(jakarta="1")
    new = Plan(
        services=[
            service("jakarta", "2").model_copy(
                update={
                    "variants": [
                        Variant(name="primary", model_uri="models:/eta-jakarta/2", weight=100),
                        Variant(name="standby", model_uri="models:/eta-jakarta/1", weight=0),
                    ]
                }
            )
        ]
    )

    rollout = run(target, "blue-green", live, new)

    assert rollout.state == "succeeded"
    warm = target.applied[0].services[0]
    assert [(v.name, v.model_uri[-1], v.weight) for v in warm.variants] == [("primary", "1", 100), (GREEN, "2", 0)]
    assert target.applied[1] == new


def test_first_deploy_and_unchanged_primary_skip_canary_steps() -> None:
    assert [s.name for s in plan_steps("canary", None, plan(jakarta="1"), [10, 100])] == ["swap"]
    assert [s.name for s in plan_steps("canary", plan(jakarta="1"), plan(jakarta="1"), [10, 100])] == ["swap"]


def test_canary_keeps_a_challenger_split_and_rules_point_at_the_primary_slot() -> None:
    live = plan(jakarta="1")
    new = Plan(
        services=[
            service("jakarta", "2").model_copy(
                update={
                    "variants": [
                        Variant(name="primary", model_uri="models:/eta-jakarta/2", weight=80),
                        Variant(name="challenger", model_uri="models:/eta-jakarta/3", weight=20),
                    ]
                }
            )
        ]
    )

    step = canary_plan(live, new, 50).services[0]

    assert [(v.name, v.weight) for v in step.variants] == [("primary", 40), (CANARY, 40), ("challenger", 20)]


def test_the_intermediate_plans_keep_the_sources_their_plans_pinned() -> None:
    def pinned(version: str) -> Plan:
        variant = Variant(
            name="primary", model_uri=f"models:/eta-jakarta/{version}", source=f"models:/m-{version}", weight=100
        )
        return Plan(services=[service("jakarta", version).model_copy(update={"variants": [variant]})])

    live, new = pinned("1"), pinned("2")

    canary = canary_plan(live, new, 10).services[0]
    green = green_plan(live, new).services[0]

    assert {v.name: v.source for v in canary.variants} == {"primary": "models:/m-1", CANARY: "models:/m-2"}
    assert {v.name: v.source for v in green.variants} == {"primary": "models:/m-1", GREEN: "models:/m-2"}


def test_window_stats_reads_deltas_and_ignores_bad_input() -> None:
    metrics = ServingMetrics()
    before = parse_metrics(metrics.exposition().decode())
    labels = ("eta", "jakarta", CANARY, "2")
    metrics.requests.labels(*labels, "ok").inc(95)
    metrics.requests.labels(*labels, "error").inc(5)
    metrics.requests.labels(*labels, "bad_input").inc(50)
    for seconds in [0.002] * 98 + [0.3] * 2:
        metrics.latency.labels("eta", "jakarta", CANARY).observe(seconds)

    stats = window_stats(before, parse_metrics(metrics.exposition().decode()), ("eta", "jakarta"), CANARY)

    assert (stats.requests, stats.errors) == (100, 5)
    assert stats.error_rate == pytest.approx(0.05)
    assert stats.p99_ms is not None
    assert 100 < stats.p99_ms <= 500
    assert breach_of(stats, THRESHOLDS) is not None


def test_too_few_requests_are_not_judged() -> None:
    from modelyard.deploy.rollout.strategies import VariantStats

    assert breach_of(VariantStats(requests=5, errors=5, p99_ms=900), THRESHOLDS) is None


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = {0.1: 50.0, 0.2: 100.0, float("inf"): 100.0}

    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.15)
    assert histogram_quantile(0.99, {0.1: 0.0, float("inf"): 10.0}) == pytest.approx(0.1)
    assert histogram_quantile(0.99, {}) is None


# ---------------------------------------------------------------------------- resumable (deferred) rollouts


@dataclass
class StagedFakeTarget(FakeTarget):
    """A target whose steps wait in the middle (like a Helm release); ``not_ready`` versions never become ready."""

    not_ready: set[str] = field(default_factory=set)
    finished: list[str] = field(default_factory=list)
    before: Plan | None = None  # what served before the rollout (the "last good revision" of the first step)

    def begin(self, new: Plan) -> tuple[bool, dict[str, object] | None]:
        changed = self.apply(new)
        return changed, {"digest": new.digest()} if changed else None

    def wait_ready(self, wait: dict[str, object]) -> dict[str, object]:
        services = self.active.services if self.active else []
        versions = {v.model_uri.rsplit("/", 1)[1] for s in services for v in s.variants}
        if versions & self.not_ready:
            return {"status": "timeout", "message": "0/1 ready", "reasons": ["pod-1: Ready is False"]}
        return {"status": "complete", "message": "1/1 ready", "reasons": []}

    def finish(self, new: Plan, wait: dict[str, object], outcome: dict[str, object]) -> None:
        from modelyard.deploy.rollout.strategies import RestoredError

        self.finished.append(str(wait["digest"]))
        if outcome["status"] != "complete":
            self.active = self.applied[-2] if len(self.applied) > 1 else self.before
            raise RestoredError(f"rollout {outcome['status']}: {outcome['message']}")


def resume_everywhere(target: StagedFakeTarget, strategy: str, live: Plan, new: Plan) -> tuple[Rollout, list[str]]:
    """Drive a rollout like the deferred DAG task: at every wait, JSON round-trip the checkpoint into a new
    ``Rollout`` (a new process), and compute the outcome outside it (a trigger)."""
    import json

    from modelyard.deploy.rollout.strategies import judge_window, window_outcome

    target.apply(live)
    target.applied.clear()
    target.before = live

    def fresh() -> Rollout:
        return Rollout(target, plan_steps(strategy, live, new, [10, 50, 100]), live, THRESHOLDS)  # type: ignore[arg-type]

    rollout, kinds = fresh(), []
    wait = rollout.advance()
    while wait is not None:
        kinds.append(wait.kind)
        checkpoint = json.loads(json.dumps(rollout.checkpoint()))
        if wait.kind == "ready":
            outcome = target.wait_ready(wait.spec)
        else:  # what CanaryAnalysisTrigger does: traffic flows, the window is judged on fresh scrapes
            for _ in range(3):
                target.traffic()
            baseline, current = parse_metrics(wait.spec["baseline"]), parse_metrics(target.metrics_text())
            keys = [tuple(key) for key in wait.spec["keys"]]
            breach, stats = judge_window(baseline, current, keys, THRESHOLDS)  # type: ignore[arg-type]
            outcome = window_outcome(breach, stats, THRESHOLDS)
        rollout = fresh().restore(checkpoint)
        wait = rollout.advance(outcome)
    return rollout, kinds


def test_a_deferred_canary_resumes_from_checkpoints_to_the_same_end_as_a_synchronous_one() -> None:
    live, new = plan(jakarta="1"), plan(jakarta="2")
    deferred, kinds = resume_everywhere(StagedFakeTarget(), "canary", live, new)
    synchronous = run(StagedFakeTarget(), "canary", live, new)

    assert deferred.state == synchronous.state == "succeeded", deferred.reason
    assert kinds == ["ready", "analysis", "ready", "analysis", "ready"]
    assert [(r.step, r.outcome) for r in deferred.records] == [(r.step, r.outcome) for r in synchronous.records]
    assert deferred.changed


def test_a_deferred_canary_that_breaches_rolls_back_on_resume() -> None:
    target = StagedFakeTarget(bad_versions={"2": (0.3, 0.002)})
    rollout, kinds = resume_everywhere(target, "canary", plan(jakarta="1"), plan(jakarta="2"))

    assert rollout.state == "rolled-back"
    assert kinds == ["ready", "analysis"]
    assert rollout.reason is not None
    assert "canary 10%: canary of eta/jakarta: error rate" in rollout.reason
    assert target.active == plan(jakarta="1")


def test_a_step_whose_pods_never_become_ready_rolls_back_after_the_wait() -> None:
    target = StagedFakeTarget(not_ready={"2"})
    rollout, kinds = resume_everywhere(target, "rolling", plan(jakarta="1"), plan(jakarta="2"))

    assert kinds == ["ready"]
    assert rollout.state == "rolled-back"
    assert rollout.reason == "swap: rollout timeout: 0/1 ready"
    assert [(r.step, r.outcome) for r in rollout.records] == [("swap", "failed"), ("rollback", "rolled-back")]
    assert target.active == plan(jakarta="1")
    # The target restored the old plan itself (helm rollback): the rollout does not apply it once more.
    assert target.applied == [plan(jakarta="2")]
    assert rollout.records[-1].detail == "restored by the target"


def test_a_later_step_restored_by_the_target_still_rolls_back_to_the_live_plan() -> None:
    target = StagedFakeTarget(not_ready={"2"})
    target.bad_versions = {}
    live, new = plan(jakarta="1"), plan(jakarta="2")
    target.apply(live)
    target.applied.clear()
    target.before = live
    steps = plan_steps("blue-green", live, new, [100])  # warm green (applied), then the switch (fails)
    target.not_ready = set()
    rollout = Rollout(target, steps, live, THRESHOLDS)
    wait = rollout.advance()
    assert wait is not None
    wait = rollout.advance(target.wait_ready(wait.spec))  # the warm-up rolls out
    assert wait is not None
    target.not_ready = {"2"}
    assert rollout.advance(target.wait_ready(wait.spec)) is None  # the switch does not

    assert rollout.state == "rolled-back"
    assert target.active == live  # restored to the warm-up by the target, then the live plan by the rollout
    assert target.applied[-1] == live


def test_an_outcome_without_a_pending_wait_is_refused() -> None:
    rollout = Rollout(FakeTarget(), plan_steps("rolling", None, plan(jakarta="1"), [100]), None, THRESHOLDS)
    with pytest.raises(ValueError, match="outcome"):
        rollout.advance({"status": "complete"})


@pytest.mark.parametrize("wait_kinds", [1, 2], ids=["pods-never-answered", "canary-window-never-judged"])
def test_a_wait_that_airflow_timed_out_rolls_back_from_its_checkpoint(wait_kinds: int) -> None:
    """The deploy task's deferral timed out (no trigger event): it resumes with ``timed_out_outcome``."""
    import json

    from modelyard.deploy.rollout.strategies import timed_out_outcome

    live, new = plan(jakarta="1"), plan(jakarta="2")
    target = StagedFakeTarget()
    target.apply(live)
    target.applied.clear()
    target.before = live

    def fresh() -> Rollout:
        return Rollout(target, plan_steps("canary", live, new, [10, 50, 100]), live, THRESHOLDS)  # type: ignore[arg-type]

    rollout = fresh()
    wait = rollout.advance()
    if wait_kinds == 2:  # the pods rolled out; the analysis window is the wait that times out
        assert wait is not None
        rollout = fresh().restore(json.loads(json.dumps(rollout.checkpoint())))
        wait = rollout.advance(target.wait_ready(wait.spec))
    assert wait is not None
    rollout = fresh().restore(json.loads(json.dumps(rollout.checkpoint())))
    assert rollout.advance(timed_out_outcome(wait.kind)) is None

    assert rollout.state == "rolled-back"
    assert rollout.reason is not None
    assert "triggerer did not answer" in rollout.reason
    assert target.active == live


def test_a_smoke_record_carries_what_each_served_version_reads_not_todays_config() -> None:
    from modelyard.deploy.rollout.kube_smoke import smoke_record

    detail = {
        "variants": [
            {"version": "1", "raw_fields": {"or_features": ["hour", "month"]}, "inputs": [{"name": "event_time"}]},
            {"version": "2", "raw_fields": {"or_features": ["hour", "surge"]}, "inputs": [{"name": "event_time"}]},
        ],
        "shadows": [{"version": "0", "inputs": [{"name": "legacy_x"}]}],  # no spec: its signature's columns
    }
    assert smoke_record(detail) == {"hour": 0, "month": 0, "surge": 0, "legacy_x": 0}
