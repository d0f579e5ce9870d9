"""What a deploy is asked to do: the user's ``DeployChoices``, resolved once into a ``DeployRequest``.

The CLI flags and the DAG's params are ``DeployChoices``, where None means "the config's
value". :meth:`DeployRequest.resolve` looks those values up once, when the request is made;
from then on the request travels as a value (from the DAG's ``select_releases`` to each mapped
deploy task, and inside every rollout checkpoint) and nothing downstream consults the config
for the same defaults again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelyard.deploy.rollout.planner import PlanOptions, Strategy
from modelyard.deploy.rollout.strategies import DeployError, Thresholds

if TYPE_CHECKING:
    from modelyard.core.config import Config

TargetName = Literal["local", "kubernetes"]
LOCAL_RELEASE = "local"


class DeployChoices(BaseModel):
    """What the user chose (CLI flags or DAG params); None means the config's value."""

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
    force: bool = False


class DeployRequest(BaseModel):
    """What to deploy and how, every field a value: make it with :meth:`resolve`.

    ``version`` None means "the champion" (a choice of its own, not a default looked up later);
    empty ``families``, ``regions`` and ``releases`` mean all of them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: TargetName
    strategy: Strategy
    dry_run: bool
    families: list[str]
    regions: list[str]
    version: str | None = Field(pattern=r"^[0-9]+$")
    challenger_weight: int = Field(ge=0, le=99)
    shadow_challenger: bool
    canary_steps: list[int]
    thresholds: Thresholds
    releases: list[str]
    port: int = Field(ge=1, le=65535)
    force: bool = False  # roll out even when the new version needs raw fields live clients are not sending

    @classmethod
    def resolve(cls, config: Config, choices: DeployChoices | None = None) -> DeployRequest:
        """``choices`` with every None replaced by the config's value (``deploy.target``,
        ``deploy.rollout.*``, ``deploy.local.port``).

        Raises:
            DeployError: the canary steps are not increasing percentages ending at 100.
        """
        chosen = choices or DeployChoices()
        rollout = config.deploy.rollout
        seconds = rollout.analysis_seconds if chosen.analysis_seconds is None else chosen.analysis_seconds
        return cls(
            target=chosen.target or config.deploy.target,
            strategy=chosen.strategy or rollout.strategy,
            canary_steps=check_canary_steps(chosen.canary_steps or rollout.canary_steps),
            thresholds=Thresholds(rollout.max_error_rate, rollout.max_p99_ms, rollout.min_requests, seconds),
            port=chosen.port or config.deploy.local.port,
            **chosen.model_dump(
                include={"dry_run", "families", "regions", "version", "challenger_weight", "shadow_challenger",
                         "releases", "force"}
            ),
        )  # fmt: skip

    def plan_options(self, regions: list[str] | None = None) -> PlanOptions:
        """The planner options; ``regions`` narrows to one release's regions."""
        return PlanOptions(
            families=self.families,
            regions=regions if regions is not None else self.regions,
            version=self.version,
            strategy=self.strategy,
            challenger_weight=self.challenger_weight,
            shadow_challenger=self.shadow_challenger,
            force=self.force,
        )

    def for_release(self, release: str) -> DeployRequest:
        """This request narrowed to one release."""
        return self.model_copy(update={"releases": [release]})


def check_canary_steps(steps: list[int]) -> list[int]:
    """``steps`` if they are canary weights, validated like ``deploy.rollout.canary_steps``.

    Raises:
        DeployError: not increasing percentages ending at 100.
    """
    if not steps or steps != sorted(set(steps)) or steps[0] <= 0 or steps[-1] != 100:
        raise DeployError(f"canary steps {steps} must be increasing percentages ending at 100, e.g. [10, 50, 100]")
    return list(steps)
