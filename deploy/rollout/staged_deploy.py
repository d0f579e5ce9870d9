"""One release's deploy from plan to result: ``propose`` -> ``StagedDeploy`` -> ``DeployResult``.

``propose`` reads the registry into a plan; ``StagedDeploy`` holds the rollout of that plan
on one target, from the live plan, under the request's strategy, and what it did so far.
Both targets (local, Kubernetes) build on these; ``deploy.rollout.apply`` picks the target.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from modelyard.deploy.rollout.planner import (
    PlanOptions,
    PlanProposal,
    ServiceChange,
    Strategy,
    build_plan,
    diff_plans,
    plan_versions,
    read_registry,
)
from modelyard.deploy.rollout.planner_graduation import rollout_steps
from modelyard.deploy.rollout.request import DeployRequest, TargetName
from modelyard.deploy.rollout.strategies import Rollout, Target

if TYPE_CHECKING:
    from modelyard.core.config import Config
    from modelyard.deploy.serving.plan import Plan

Outcome = Literal["deployed", "unchanged", "rolled-back", "failed", "dry-run"]


class StepResult(BaseModel):
    """One applied step of a rollout (or its rollback)."""

    step: str
    plan_digest: str
    outcome: str
    detail: str = ""


class DeployResult(BaseModel):
    """What one deploy did to one release."""

    release: str
    target: TargetName
    strategy: Strategy
    outcome: Outcome
    plan_digest: str
    previous_plan_digest: str | None
    versions: dict[str, dict[str, str]]
    changes: list[str] = []
    skipped: dict[str, str] = {}
    fallbacks: dict[str, str] = {}  # family/region -> the pooled model serving it (ADR 0015)
    raw_fields: dict[str, str] = {}  # family/region -> what clients must send for the new version (raw_fields.py)
    steps: list[StepResult] = []
    reason: str | None = None
    url: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in ("deployed", "unchanged", "dry-run")

    def asset_extra(self) -> dict[str, Any]:
        """The ``extra`` of the deployed Asset event (see ``core.contracts.assets.deployed_uri``)."""
        return {
            "release": self.release,
            "target": self.target,
            "plan_digest": self.plan_digest,
            "versions": self.versions,
            "strategy": self.strategy,
            "outcome": self.outcome,
        }


def propose(config: Config, options: PlanOptions, live: Plan | None, tracking_uri: str) -> PlanProposal:
    """Read the registry and build the plan for ``options`` on top of ``live``."""
    from mlflow import MlflowClient

    from modelyard.core.tracking import require_reachable
    from modelyard.deploy.rollout.pinning import pin_sources
    from modelyard.deploy.rollout.raw_fields import check_rollout

    client = MlflowClient(tracking_uri=require_reachable(tracking_uri), registry_uri=tracking_uri)
    proposal = pin_sources(client, build_plan(config, read_registry(client, config, options), options, live), live)
    # raises PlannerError: a new version needs raw fields live clients are not sending (unless forced)
    return replace(proposal, raw_fields=check_rollout(client, config, live, proposal.plan, options))


def rollout_to(
    target: Target, live: Plan | None, proposal: PlanProposal, request: DeployRequest, release: str
) -> DeployResult:
    """Run the strategy from ``live`` to the proposal on ``target`` and report (never raises on rollback)."""
    staged = StagedDeploy.start(target, live, proposal, request, release)
    if staged.rollout is not None:
        staged.rollout.run()
    return staged.result_so_far()


@dataclass
class StagedDeploy:
    """One release's deploy in progress: the result known before the rollout, and the rollout.

    ``checkpoint()`` is JSON (request, plans, rollout position) and ``restore`` rebuilds the
    deploy from it on the same target, so an Airflow task can defer during a wait and resume
    in another process without re-planning (the registry may have moved meanwhile).
    """

    request: DeployRequest
    live: Plan | None
    plan: Plan
    result: DeployResult
    rollout: Rollout | None  # None for a dry run

    @classmethod
    def start(
        cls, target: Target, live: Plan | None, proposal: PlanProposal, request: DeployRequest, release: str
    ) -> StagedDeploy:
        """The deploy of ``proposal`` on ``target`` before any step ran."""
        plan = proposal.plan
        result = DeployResult(
            release=release,
            target=request.target,
            strategy=request.strategy,
            outcome="dry-run",
            plan_digest=plan.digest(),
            previous_plan_digest=live.digest() if live else None,
            versions=plan_versions(plan),
            changes=[_change_line(c) for c in diff_plans(live, plan) if c.change != "unchanged"],
            skipped=proposal.skipped,
            fallbacks=proposal.fallbacks,
            raw_fields=proposal.raw_fields,
            url=getattr(target, "url", None),
        )
        rollout = None if request.dry_run else _rollout(target, live, plan, request)
        return cls(request, live, plan, result, rollout)

    def result_so_far(self) -> DeployResult:
        """The result with the rollout's outcome, steps and reason (``dry-run`` without a rollout)."""
        if self.rollout is None:
            return self.result
        rollout = self.rollout
        steps = [
            StepResult(step=r.step, plan_digest=r.plan_digest, outcome=r.outcome, detail=r.detail)
            for r in rollout.records
        ]
        return self.result.model_copy(
            update={"outcome": _outcome(rollout.state, rollout.changed), "steps": steps, "reason": rollout.reason}
        )

    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to resume, as JSON."""
        return {
            "request": self.request.model_dump(mode="json"),
            "live": self.live.model_dump(mode="json") if self.live else None,
            "plan": self.plan.model_dump(mode="json"),
            "result": self.result.model_dump(mode="json"),
            "rollout": self.rollout.checkpoint() if self.rollout else None,
        }

    @classmethod
    def restore(cls, target: Target, checkpoint: dict[str, Any]) -> StagedDeploy:
        """The deploy of ``checkpoint`` on ``target``, where it stopped (the request it carries is resolved)."""
        from modelyard.deploy.serving.plan import parse_plan

        request = DeployRequest.model_validate(checkpoint["request"])
        live = parse_plan(checkpoint["live"], "checkpoint live plan") if checkpoint["live"] else None
        plan = parse_plan(checkpoint["plan"], "checkpoint plan")
        rollout = None
        if checkpoint["rollout"] is not None:
            rollout = _rollout(target, live, plan, request).restore(checkpoint["rollout"])
        return cls(request, live, plan, DeployResult.model_validate(checkpoint["result"]), rollout)


def _rollout(target: Target, live: Plan | None, plan: Plan, request: DeployRequest) -> Rollout:
    steps = rollout_steps(request.strategy, live, plan, request.canary_steps)
    return Rollout(target, steps, live, request.thresholds)


def _outcome(state: str, changed: bool) -> Outcome:
    if state == "succeeded":
        return "deployed" if changed else "unchanged"
    return "rolled-back" if state == "rolled-back" else "failed"


def _change_line(change: ServiceChange) -> str:
    return f"{change.key}: {change.change}: {change.before} → {change.after}"
