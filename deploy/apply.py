"""The deploy entry point: registry -> plan -> target -> strategy -> a typed ``DeployResult``.

``deploy(config, request)`` plans from the MLflow registry, reads what is live on the
target, runs the strategy's rollout (rolling back on failure) and says what happened, per
release (the local target is the one release ``local``). ``deploy_local`` is the short
form the demo uses; ``render_deploy`` and ``render_diff`` draw the results for the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from deploy.plan import Plan
from deploy.planner import (
    PlanOptions,
    PlanProposal,
    ServiceChange,
    Strategy,
    build_plan,
    diff_plans,
    plan_versions,
    read_registry,
)
from deploy.rollout import DeployError, Rollout, Target, Thresholds, plan_steps

if TYPE_CHECKING:
    from rich.table import Table

    from pipeline.config import Config

TargetName = Literal["local", "kubernetes"]
Outcome = Literal["deployed", "unchanged", "rolled-back", "failed", "dry-run"]
LOCAL_RELEASE = "local"


class DeployRequest(BaseModel):
    """What to deploy and how (CLI flags or DAG params); None means the config's value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: TargetName | None = None
    strategy: Strategy | None = None
    dry_run: bool = False
    families: list[str] = []
    regions: list[str] = []
    version: str | None = Field(default=None, pattern=r"^[0-9]+$")
    challenger_weight: int = Field(default=0, ge=0, le=99)
    shadow_challenger: bool = False
    canary_steps: list[int] | None = None
    analysis_seconds: float | None = Field(default=None, ge=0)
    releases: list[str] = []
    port: int | None = Field(default=None, ge=1, le=65535)

    def target_name(self, config: Config) -> TargetName:
        return self.target or config.deploy.target

    def strategy_name(self, config: Config) -> Strategy:
        return self.strategy or config.deploy.rollout.strategy

    def options(self, config: Config, regions: list[str] | None = None) -> PlanOptions:
        """The planner options; ``regions`` narrows to one release's regions."""
        return PlanOptions(
            families=self.families,
            regions=regions if regions is not None else self.regions,
            version=self.version,
            strategy=self.strategy_name(config),
            challenger_weight=self.challenger_weight,
            shadow_challenger=self.shadow_challenger,
        )

    def steps(self, config: Config) -> list[int]:
        """Canary weights, validated like ``deploy.rollout.canary_steps``.

        Raises:
            DeployError: not increasing percentages ending at 100.
        """
        steps = self.canary_steps or config.deploy.rollout.canary_steps
        if steps != sorted(set(steps)) or steps[0] <= 0 or steps[-1] != 100:
            raise DeployError(f"canary steps {steps} must be increasing percentages ending at 100, e.g. [10, 50, 100]")
        return steps

    def thresholds(self, config: Config) -> Thresholds:
        rollout = config.deploy.rollout
        seconds = rollout.analysis_seconds if self.analysis_seconds is None else self.analysis_seconds
        return Thresholds(rollout.max_error_rate, rollout.max_p99_ms, rollout.min_requests, seconds)


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
    previous_digest: str | None
    versions: dict[str, dict[str, str]]
    changes: list[str] = []
    skipped: dict[str, str] = {}
    steps: list[StepResult] = []
    reason: str | None = None
    url: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in ("deployed", "unchanged", "dry-run")

    def asset_extra(self) -> dict[str, Any]:
        """The ``extra`` of the deployed Asset event (see ``pipeline.assets.deployed_uri``)."""
        return {
            "release": self.release,
            "target": self.target,
            "plan_digest": self.plan_digest,
            "versions": self.versions,
            "strategy": self.strategy,
            "outcome": self.outcome,
        }


# ---------------------------------------------------------------------------- entry points


def propose(config: Config, options: PlanOptions, live: Plan | None, tracking_uri: str) -> PlanProposal:
    """Read the registry and build the plan for ``options`` on top of ``live``."""
    from mlflow import MlflowClient

    from training.mlflow_server import require_reachable

    client = MlflowClient(tracking_uri=require_reachable(tracking_uri), registry_uri=tracking_uri)
    return build_plan(config, read_registry(client, config, options), options, live)


def rollout_to(
    target: Target,
    live: Plan | None,
    proposal: PlanProposal,
    request: DeployRequest,
    config: Config,
    release: str,
) -> DeployResult:
    """Run the strategy from ``live`` to the proposal on ``target`` and report (never raises on rollback)."""
    strategy = request.strategy_name(config)
    plan = proposal.plan
    result = DeployResult(
        release=release,
        target=request.target_name(config),
        strategy=strategy,
        outcome="dry-run",
        plan_digest=plan.digest(),
        previous_digest=live.digest() if live else None,
        versions=plan_versions(plan),
        changes=[_change_line(c) for c in diff_plans(live, plan) if c.change != "unchanged"],
        skipped=proposal.skipped,
        url=getattr(target, "url", None),
    )
    if request.dry_run:
        return result
    rollout = Rollout(target, plan_steps(strategy, live, plan, request.steps(config)), live, request.thresholds(config))
    state = rollout.run()
    steps = [
        StepResult(step=r.step, plan_digest=r.plan_digest, outcome=r.outcome, detail=r.detail) for r in rollout.records
    ]
    return result.model_copy(
        update={"outcome": _outcome(state, rollout.changed), "steps": steps, "reason": rollout.reason}
    )


def _outcome(state: str, changed: bool) -> Outcome:
    if state == "succeeded":
        return "deployed" if changed else "unchanged"
    return "rolled-back" if state == "rolled-back" else "failed"


def deploy(config: Config, request: DeployRequest, tracking_uri: str) -> list[DeployResult]:
    """Deploy to the requested target: one result per release (``local`` is one release).

    Raises:
        DeployError: the request cannot be planned (unknown names, no champion anywhere) or
            the target is unreachable before anything changed.
    """
    if request.target_name(config) == "kubernetes":
        from deploy.kube_target import deploy_kubernetes

        return deploy_kubernetes(config, request, tracking_uri)
    return [deploy_local(config, request, tracking_uri)]


def release_names(config: Config, request: DeployRequest) -> list[str]:
    """The releases a request deploys to: ``local``, or the selected Helm releases.

    Raises:
        DeployError: the release map is invalid or names an unknown release.
    """
    if request.target_name(config) == "local":
        return [LOCAL_RELEASE]
    from deploy.kube_target import release_regions

    return list(release_regions(config, request))


def deploy_release(config: Config, request: DeployRequest, release: str, tracking_uri: str) -> DeployResult:
    """Deploy one release (the DAG maps this over ``release_names``).

    Raises:
        DeployError: the request cannot be planned or the target is unreachable.
    """
    if request.target_name(config) == "local":
        return deploy_local(config, request, tracking_uri)
    from deploy.kube_target import deploy_kubernetes

    return deploy_kubernetes(config, request.model_copy(update={"releases": [release]}), tracking_uri)[0]


def deploy_local(config: Config, request: DeployRequest | None = None, tracking_uri: str | None = None) -> DeployResult:
    """Plan from the registry and roll out to the local serving process (started if not running).

    Raises:
        DeployError: the request cannot be planned.
    """
    from deploy.local_target import LocalTarget
    from deploy.planner import PlannerError
    from training.train import resolve_tracking_uri

    request = request or DeployRequest(target="local")
    uri = tracking_uri or resolve_tracking_uri(config)
    target = LocalTarget.from_config(config, uri, port=request.port)
    live = target.live()
    try:
        proposal = propose(config, request.options(config), live, uri)
    except PlannerError as exc:
        raise DeployError(str(exc)) from exc
    return rollout_to(target, live, proposal, request.model_copy(update={"target": "local"}), config, LOCAL_RELEASE)


def _change_line(change: ServiceChange) -> str:
    return f"{change.key}: {change.change}: {change.before} → {change.after}"


# ---------------------------------------------------------------------------- rendering


OUTCOME_STYLE = {"deployed": "green", "unchanged": "cyan", "dry-run": "yellow", "rolled-back": "red", "failed": "red"}


def render_deploy(result: DeployResult) -> Table:
    """A table of one deploy: release, outcome, digest, versions per service, steps and the reason."""
    from rich.table import Table

    style = OUTCOME_STYLE[result.outcome]
    table = Table(
        title=f"deploy {result.release} → {result.target} ({result.strategy}): [{style}]{result.outcome}[/{style}]",
        caption=f"plan {result.plan_digest[:19]}" + (f" · {result.url}" if result.url else ""),
    )
    table.add_column("service")
    table.add_column("versions")
    for key, versions in result.versions.items():
        table.add_row(key, ", ".join(f"{name} v{version}" for name, version in versions.items()))
    for key, why in result.skipped.items():
        table.add_row(key, f"[yellow]skipped[/yellow]: {why}")
    for step in result.steps:
        table.add_row(f"[dim]step[/dim] {step.step}", f"{step.outcome} {step.detail}".strip())
    if result.reason:
        table.add_row(f"[{style}]reason[/{style}]", result.reason)
    return table


def render_diff(changes: list[ServiceChange], title: str) -> Table:
    """The plan diff against what is live: one row per service."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("service", "change", "live", "planned"):
        table.add_column(column)
    colors = {"added": "green", "removed": "red", "changed": "yellow", "unchanged": "dim"}
    for change in changes:
        color = colors[change.change]
        table.add_row(change.key, f"[{color}]{change.change}[/{color}]", change.before, change.after)
    return table
