"""A person approves a promotion: the policy per (family, region), the request they read, their answer.

Where ``promotion.approval`` is ``required`` for a pair, a challenger that passed every gate is
recorded as ``awaiting-approval`` instead of being promoted (:func:`evaluate_for_approval`);
the promotion DAG asks a person in Airflow's Required Actions with :func:`build_request` and
turns what Airflow hands back into an :class:`Answer` (:func:`answer_from_event`), which
:func:`apply_approval` applies. Nothing here knows Airflow: the HITL event is a plain dict.
See docs/adr/0011-approval-in-airflow.md.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from modelyard.core.contracts.registry import CHALLENGER_ALIAS, CHAMPION_ALIAS, PREVIOUS_ALIAS
from modelyard.core.errors import ModelyardError
from modelyard.core.tracking import run_url
from modelyard.promotion.aliases import aliases, move_champion, pair_lock, verify_aliases
from modelyard.promotion.decide import challenger_to_decide, decide, evaluate_pair, existing_version, judge
from modelyard.promotion.decision import Action, Decision, now
from modelyard.promotion.gates import format_number, main_metrics, verdict
from modelyard.promotion.record import TAG, record
from modelyard.promotion.record import recorded_decision as recorded

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from modelyard.core.chunks import Pair
    from modelyard.core.config import Config
    from modelyard.promotion.gates import GateResult

log = logging.getLogger(__name__)

APPROVE = "Approve"
REJECT = "Reject"
AwaitedOutcome = Literal["approved", "rejected", "timed-out"]


class ApprovalError(ModelyardError, ValueError):
    """An approval request cannot be made or applied; the message names the model version and what to do."""


class ApprovalPolicy(BaseModel):
    """Whether a pair's gate-passing challenger waits for a person, and for how long at most."""

    model_config = ConfigDict(frozen=True)

    required: bool
    timeout: dt.timedelta


class ApprovalRequest(BaseModel):
    """What a reviewer is asked about one version: the pair, the headline and the Markdown body."""

    model_config = ConfigDict(frozen=True)

    family: str
    region: str
    model_name: str
    version: str
    champion: str | None
    subject: str
    body: str
    timeout_seconds: float

    @property
    def label(self) -> str:
        """``<family>/<region>``: the map index label of the pair's Required Action."""
        return f"{self.family}/{self.region}"


class Answer(BaseModel):
    """What came back for one request: approved or rejected by whom and why, or no answer in time."""

    model_config = ConfigDict(frozen=True)

    family: str
    region: str
    model_name: str
    version: str
    outcome: AwaitedOutcome
    by: str | None
    at: dt.datetime
    reason: str


def approval_policy(config: Config, family: str, region: str) -> ApprovalPolicy:
    """The policy of (family, region): ``promotion``, then its overrides, most specific last."""
    settings = config.promotion
    required, timeout = settings.approval, settings.approval_timeout
    for key in (family, f"*/{region}", f"{family}/{region}"):
        override = settings.overrides.get(key)
        if override is not None:
            required = override.approval or required
            timeout = override.approval_timeout or timeout
    return ApprovalPolicy(required=required == "required", timeout=timeout)


def decide_with_policy(
    client: MlflowClient,
    config: Config,
    pair: tuple[str, str],
    action: Action,
    decided_by: str,
    *,
    version: str | None = None,
    reason: str | None = None,
    force: bool = False,
) -> Decision:
    """Run ``action`` on ``pair``; ``evaluate`` on a pair needing approval holds a passing challenger.

    Like :func:`~modelyard.promotion.decide.decide` otherwise. Such a challenger is recorded as
    ``awaiting-approval`` (aliases untouched); manual ``promote-version`` and ``rollback`` are
    decisions by a person already and are not held.
    """
    family, region = pair
    if action == "evaluate" and approval_policy(config, family, region).required:
        return evaluate_for_approval(client, config, family, region, decided_by, force=force)
    return decide(client, config, pair, action, decided_by, version=version, reason=reason, force=force)


def pending_requests(decisions: list[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The pairs among the decide step's results that newly await approval (``family, region, version``).

    A version already awaiting from an earlier run (``already_decided``) is left out, so a
    re-run never opens a second Required Action for it.
    """
    return [
        {"family": d["family"], "region": d["region"], "version": str(d["version"])}
        for d in decisions
        if d.get("outcome") == "awaiting-approval" and not d.get("already_decided")
    ]


# ---------------------------------------------------------------- holding and answering (ADR 0011)


def evaluate_for_approval(
    client: MlflowClient, config: Config, family: str, region: str, decided_by: str, *, force: bool = False
) -> Decision:
    """Run the gates on the challenger of (family, region); one that passes them all awaits approval.

    Like :func:`~modelyard.promotion.decide.evaluate_pair`, but nothing moves: the gate table and
    the champion it was measured against are recorded on the version, for :func:`apply_approval`
    to act on once a person answered. A version already decided (awaiting, rejected, timed out,
    promoted) is left alone unless ``force``.

    Raises:
        GateInputError: the challenger's snapshot or artifacts cannot be read.
        PromotionError: the lock could not be taken.
    """
    name = config.mlflow.model_name(family, region)
    with pair_lock(config, name):
        found = challenger_to_decide(client, config, (family, region), decided_by, force)
        if isinstance(found, Decision):
            return found
        challenger, current = found
        champion_version = current.get(CHAMPION_ALIAS)
        if champion_version != str(challenger.version):
            champion = client.get_model_version(name, champion_version) if champion_version else None
            evidence, report = judge(client, config, (family, region), challenger, champion)
            decision = Decision.held((family, region), challenger, report, champion_version, current, decided_by)
            record(client, decision, challenger, evidence, report)
            return decision
    # Champion already (promoted before its decision was recorded): nothing to approve, complete the record.
    return evaluate_pair(client, config, family, region, decided_by, force=force)


def apply(client: MlflowClient, config: Config, answer: Answer) -> Decision:
    """Apply ``answer`` to its version (see :func:`apply_approval`)."""
    pair = (answer.family, answer.region)
    return apply_approval(
        client, config, pair, answer.version, answer.outcome, decided_by=answer.by, reason=answer.reason, at=answer.at
    )


def apply_approval(
    client: MlflowClient,
    config: Config,
    pair: Pair,
    version: str,
    answer: AwaitedOutcome,
    *,
    decided_by: str | None,
    reason: str,
    at: dt.datetime,
) -> Decision:
    """Apply a person's answer to a version ``awaiting-approval``: approved is promoted, the rest stay challenger.

    The version's tags then say who decided (``promotion.decided_by``), when (``decided_at``),
    why (``reason``) and what was answered (``approval``). An answer for a version that no
    longer awaits approval (answered already, or asked again with ``force``) changes nothing.
    An approval of a version that is no longer the ``challenger`` (a newer one was trained
    meanwhile) is recorded but not promoted: the newer one gets its own request.

    Raises:
        PromotionError: the version does not exist or the lock could not be taken.
    """
    name = config.mlflow.model_name(*pair)
    with pair_lock(config, name):
        target = existing_version(client, name, version)
        held = recorded(target)
        if held is None or held.outcome != "awaiting-approval":
            log.info("%s v%s is not awaiting approval; answer ignored", name, version)
            ignored = held or Decision.not_awaited(pair, target, decided_by)
            return ignored.model_copy(update={"already_decided": True})
        current = aliases(client, name)
        by = decided_by or "airflow:timeout"
        decision = _answered(client, target, held, current, answer, by, reason, at)
        record(client, decision, target, None, None)
        client.set_model_version_tag(name, version, f"{TAG}approval", answer)
        client.set_model_version_tag(name, version, f"{TAG}approval_requested_at", held.decided_at.isoformat())
        return decision


def _answered(
    client: MlflowClient,
    target: ModelVersion,
    held: Decision,
    current: dict[str, str],
    answer: AwaitedOutcome,
    by: str,
    reason: str,
    at: dt.datetime,
) -> Decision:
    version, champion = str(target.version), current.get(CHAMPION_ALIAS)
    after, outcome = current, "rejected" if answer == "rejected" else "timed-out"
    why = reason or "no reason given"
    summary = f"rejected by {by}: {why}" if answer == "rejected" else f"not promoted: {why}"
    if answer == "approved" and current.get(CHALLENGER_ALIAS) != version:
        outcome, summary = "unchanged", f"approved by {by}, but v{current.get(CHALLENGER_ALIAS)} is the challenger now"
    elif answer == "approved":
        move_champion(client, target.name, version, current)
        after, outcome = verify_aliases(client, target.name), "promoted"
        summary = f"approved by {by}: {why} ({held.summary})"
    return held.model_copy(
        update={
            "action": "approval",
            "outcome": outcome,
            "champion_before": champion,
            "champion_after": after.get(CHAMPION_ALIAS),
            "previous_champion_after": after.get(PREVIOUS_ALIAS),
            "summary": summary,
            "decided_by": by,
            "decided_at": at,
            "reason": why,
            "already_decided": False,
        }
    )


def build_request(
    client: MlflowClient, config: Config, family: str, region: str, version: str, ui_url: str | None
) -> ApprovalRequest:
    """The request for ``version`` of (family, region), from the decision recorded on it.

    The body holds the metrics against the champion, the gate table and links to both MLflow
    runs (``ui_url`` is the MLflow UI; without one the run ids are shown instead).
    """
    name = config.mlflow.model_name(family, region)
    challenger = client.get_model_version(name, version)
    decision = recorded(challenger)
    if decision is None or decision.outcome != "awaiting-approval":
        raise ApprovalError(f"{name} v{version} is not awaiting approval; run the promotion DAG to evaluate it")
    champion = client.get_model_version(name, decision.champion_before) if decision.champion_before else None
    metrics = _metric_rows(client, config, family, challenger.run_id, champion.run_id if champion else None)
    links = [_run_link(client, ui_url, f"challenger v{version} run", challenger.run_id)]
    if champion is not None:
        links.append(_run_link(client, ui_url, f"champion v{champion.version} run", champion.run_id))
    policy = approval_policy(config, family, region)
    against = f"champion v{decision.champion_before}" if decision.champion_before else "no champion (first model)"
    members = config.region_groups.get(region)
    pooled = (
        f" It is the pooled model of region group {region} ({', '.join(members)}): it serves those of them "
        "without a champion of their own."
        if members
        else ""
    )
    body = "\n\n".join(
        [
            f"**{name} v{version}** passed every gate against {against} on the same holdout.{pooled}",
            f"*Approve* makes v{version} the champion of {family}/{region} (deploy follows). *Reject* keeps it "
            f"the challenger; say why in **reason**, it is recorded on the version. No answer within "
            f"{policy.timeout} keeps it the challenger (recorded as timed out).",
            "#### Metrics against the champion\n\n" + metrics,
            "#### Gates\n\n" + gate_table(decision.gates),
            "#### MLflow\n\n" + " · ".join(links),
        ]
    )
    return ApprovalRequest(
        family=family,
        region=region,
        model_name=name,
        version=version,
        champion=decision.champion_before,
        subject=f"Promote {family}/{region} v{version}?",
        body=body,
        timeout_seconds=policy.timeout.total_seconds(),
    )


def gate_table(gates: list[GateResult]) -> str:
    """The per-gate table as Markdown."""
    rows = ["| gate | value | better | op | threshold | result |", "|---|---|---|---|---|---|"]
    rows += [
        f"| {g.name} | {format_number(g.value)} | {g.better} | {g.op} | {format_number(g.threshold)} | {verdict(g)} |"
        for g in gates
    ]
    return "\n".join(rows)


def _metric_rows(
    client: MlflowClient, config: Config, family: str, challenger_run: str | None, champion_run: str | None
) -> str:
    ours = client.get_run(challenger_run).data.metrics if challenger_run else {}
    theirs = client.get_run(champion_run).data.metrics if champion_run else {}
    rows = ["| metric | challenger | champion | change |", "|---|---|---|---|"]
    for metric in main_metrics(config, family):
        new, old = ours.get(metric), theirs.get(metric)
        change = f"{new - old:+.4g}" if new is not None and old is not None else "-"
        rows.append(f"| {metric} | {format_number(new)} | {format_number(old)} | {change} |")
    return "\n".join(rows)


def _run_link(client: MlflowClient, ui_url: str | None, text: str, run_id: str | None) -> str:
    if not run_id:
        return f"{text}: none"
    if not ui_url or not ui_url.startswith(("http://", "https://")):
        return f"{text}: `{run_id}`"
    return f"[{text}]({run_url(ui_url, client.get_run(run_id).info.experiment_id, run_id)})"


def answer_from_event(request: Mapping[str, Any], event: Mapping[str, Any]) -> Answer:
    """The :class:`Answer` in what Airflow's HITL operator returned (or its timeout error event).

    A response with no responding user (Airflow applied defaults) counts as no answer.
    """
    pair = {key: request[key] for key in ("family", "region", "model_name", "version")}
    user = event.get("responded_by_user")
    if event.get("error_type") == "timeout" or not user:
        waited = dt.timedelta(seconds=float(request["timeout_seconds"]))
        return Answer(**pair, outcome="timed-out", by=None, at=now(), reason=f"no answer within {waited}")
    chosen = list(event["chosen_options"])
    reason = str((event.get("params_input") or {}).get("reason") or "").strip()
    responded = event.get("responded_at")
    at = dt.datetime.fromisoformat(responded) if isinstance(responded, str) else responded or now()
    outcome: AwaitedOutcome = "approved" if chosen == [APPROVE] else "rejected"
    return Answer(**pair, outcome=outcome, by=str(user.get("name") or user.get("id")), at=at, reason=reason)
