"""What a promotion decides for one (family, region): the :class:`Decision` and its named constructors.

A decision says what was done (the action), what came of it (the outcome), which version it
was about, where ``champion`` and ``previous-champion`` pointed before and after, the gate
table, who decided and when. The constructors below are the only outcomes a promotion makes;
each fills in what its outcome implies, so a call site names the outcome and its evidence only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from modelyard.core.contracts.registry import CHAMPION_ALIAS, PREVIOUS_ALIAS
from modelyard.core.errors import ModelyardError
from modelyard.promotion.gates import GateReport, GateResult

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from modelyard.core.chunks import Pair

Action = Literal["evaluate", "promote-version", "rollback", "approval"]
Outcome = Literal[
    "promoted", "rejected", "rolled-back", "unchanged", "no-challenger", "failed", "awaiting-approval", "timed-out"
]


class PromotionError(ModelyardError, RuntimeError):
    """A promotion or rollback cannot be done; the message names the model and what to do."""


def now() -> dt.datetime:
    """The time a decision is taken (UTC)."""
    return dt.datetime.now(dt.UTC)


class Decision(BaseModel):
    """What was decided for one (family, region), why, by whom and when."""

    model_config = ConfigDict(frozen=True)

    family: str
    region: str
    model_name: str
    action: Action
    outcome: Outcome
    version: str | None
    champion_before: str | None
    champion_after: str | None
    previous_champion_after: str | None
    gates: list[GateResult] = []
    summary: str
    decided_by: str
    decided_at: dt.datetime
    reason: str | None = None
    run_id: str | None = None
    already_decided: bool = False

    @property
    def champion_changed(self) -> bool:
        """Whether this call moved ``champion`` (the deploy stage must follow)."""
        return not self.already_decided and self.champion_after not in (None, self.champion_before)

    def asset_extra(self) -> dict[str, str]:
        """The ``extra`` of the champion Asset event (see ``core.contracts.assets.champion_uri``)."""
        return {
            "family": self.family,
            "region": self.region,
            "model_name": self.model_name,
            "version": self.champion_after or "",
        }

    def history_entry(self) -> dict[str, str | None]:
        """One entry of the registered model's ``promotion_history`` tag."""
        return {
            "at": self.decided_at.isoformat(timespec="seconds"),
            "action": self.action,
            "outcome": self.outcome,
            "version": self.version,
            "champion_before": self.champion_before,
            "champion_after": self.champion_after,
            "by": self.decided_by,
            "why": (self.reason or self.summary)[:240],
        }

    # ------------------------------------------------------------ decisions that looked at a version

    @classmethod
    def on_version(
        cls,
        pair: Pair,
        version: ModelVersion,
        action: Action,
        outcome: Outcome,
        *,
        champion_before: str | None,
        after: Mapping[str, str],
        summary: str,
        decided_by: str,
        gates: Sequence[GateResult] = (),
        reason: str | None = None,
    ) -> Decision:
        """A decision about ``version``; ``after`` is the model's aliases once it was acted on."""
        return cls(
            family=pair[0],
            region=pair[1],
            model_name=version.name,
            action=action,
            outcome=outcome,
            version=str(version.version),
            champion_before=champion_before,
            champion_after=after.get(CHAMPION_ALIAS),
            previous_champion_after=after.get(PREVIOUS_ALIAS),
            gates=list(gates),
            summary=summary,
            decided_by=decided_by,
            decided_at=now(),
            reason=reason,
            run_id=version.run_id,
        )

    @classmethod
    def evaluated(
        cls,
        pair: Pair,
        challenger: ModelVersion,
        report: GateReport,
        champion: str | None,
        after: Mapping[str, str],
        by: str,
    ) -> Decision:
        """The gates ran on ``challenger`` against ``champion``: promoted when all passed, else rejected."""
        outcome: Outcome = "promoted" if report.passed else "rejected"
        summary = f"{outcome} ({_against(champion)}): {report.summary()}"
        return cls.on_version(
            pair,
            challenger,
            "evaluate",
            outcome,
            champion_before=champion,
            after=after,
            summary=summary,
            decided_by=by,
            gates=report.results,
        )

    @classmethod
    def held(
        cls,
        pair: Pair,
        challenger: ModelVersion,
        report: GateReport,
        champion: str | None,
        current: Mapping[str, str],
        by: str,
    ) -> Decision:
        """The gates ran on ``challenger``: it awaits a person's approval when all passed (nothing moves)."""
        outcome: Outcome = "awaiting-approval" if report.passed else "rejected"
        verdict = "awaiting approval" if report.passed else "rejected"
        summary = f"{verdict} ({_against(champion)}): {report.summary()}"
        return cls.on_version(
            pair,
            challenger,
            "evaluate",
            outcome,
            champion_before=champion,
            after=current,
            summary=summary,
            decided_by=by,
            gates=report.results,
        )

    @classmethod
    def not_judged(
        cls, pair: Pair, challenger: ModelVersion, champion: str | None, current: Mapping[str, str], by: str, why: str
    ) -> Decision:
        """The gates cannot run on ``challenger`` (``why``: e.g. it names no snapshot): rejected, nothing moves."""
        return cls.on_version(
            pair,
            challenger,
            "evaluate",
            "rejected",
            champion_before=champion,
            after=current,
            summary=f"rejected: {why}",
            decided_by=by,
        )

    @classmethod
    def promoted_by_hand(
        cls,
        pair: Pair,
        version: ModelVersion,
        champion: str | None,
        after: Mapping[str, str],
        by: str,
        reason: str,
        *,
        report: GateReport | None,
        note: str,
    ) -> Decision:
        """A person made ``version`` the champion, whatever the gates said (``report``, if it could be made)."""
        summary = f"manual promotion of v{version.version} by {by}: {reason} ({note})"
        return cls.on_version(
            pair,
            version,
            "promote-version",
            "promoted",
            champion_before=champion,
            after=after,
            summary=summary,
            decided_by=by,
            gates=report.results if report else (),
            reason=reason,
        )

    @classmethod
    def rolled_back(
        cls, pair: Pair, restored: ModelVersion, demoted: str, after: Mapping[str, str], by: str, reason: str | None
    ) -> Decision:
        """``champion`` moved back from ``demoted`` to ``restored``."""
        summary = f"rolled back from v{demoted} to v{restored.version} by {by}" + (f": {reason}" if reason else "")
        return cls.on_version(
            pair,
            restored,
            "rollback",
            "rolled-back",
            champion_before=demoted,
            after=after,
            summary=summary,
            decided_by=by,
            reason=reason,
        )

    @classmethod
    def unchanged(
        cls, pair: Pair, champion: ModelVersion, current: Mapping[str, str], by: str, reason: str
    ) -> Decision:
        """A manual promotion of the version that is the champion already: nothing moves."""
        summary = f"v{champion.version} is already the champion; nothing changed"
        return cls.on_version(
            pair,
            champion,
            "promote-version",
            "unchanged",
            champion_before=current.get(CHAMPION_ALIAS),
            after=current,
            summary=summary,
            decided_by=by,
            reason=reason,
        )

    @classmethod
    def not_awaited(cls, pair: Pair, version: ModelVersion, by: str | None) -> Decision:
        """An answer for a version that was never held for approval: nothing changes."""
        summary = f"v{version.version} was never evaluated for approval; nothing changed"
        return cls.on_version(
            pair,
            version,
            "approval",
            "unchanged",
            champion_before=None,
            after={},
            summary=summary,
            decided_by=by or "nobody",
        )

    # ------------------------------------------------------------ decisions without a version

    @classmethod
    def no_challenger(cls, pair: Pair, model_name: str, current: Mapping[str, str], by: str) -> Decision:
        """The pair has no ``challenger`` to evaluate yet (a report, not a failure)."""
        return cls._without_version(
            pair,
            model_name,
            "no-challenger",
            current,
            by,
            "no challenger to decide: no version holds the `challenger` alias (each one trained so far is decided; "
            "`modelyard train` registers a new one)",
        )

    @classmethod
    def failed(cls, pair: Pair, model_name: str, by: str, exc: Exception) -> Decision:
        """The pair could not be decided (unreadable inputs, a lock timeout); unrecorded, names the cause."""
        return cls._without_version(pair, model_name, "failed", {}, by, f"{type(exc).__name__}: {exc}")

    @classmethod
    def _without_version(
        cls, pair: Pair, model_name: str, outcome: Outcome, current: Mapping[str, str], by: str, summary: str
    ) -> Decision:
        return cls(
            family=pair[0],
            region=pair[1],
            model_name=model_name,
            action="evaluate",
            outcome=outcome,
            version=None,
            champion_before=current.get(CHAMPION_ALIAS),
            champion_after=current.get(CHAMPION_ALIAS),
            previous_champion_after=current.get(PREVIOUS_ALIAS),
            summary=summary,
            decided_by=by,
            decided_at=now(),
        )


def _against(champion: str | None) -> str:
    return f"against champion v{champion}" if champion else "first model of the region (no champion)"
