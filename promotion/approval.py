"""A person approves a promotion: the policy per (family, region), the request they read, their answer.

Where ``promotion.approval`` is ``required`` for a pair, a challenger that passed every gate is
recorded as ``awaiting-approval`` instead of being promoted (``promotion.evaluate_for_approval``);
the promotion DAG asks a person in Airflow's Required Actions with :func:`build_request` and
turns what Airflow hands back into an :class:`Answer` (:func:`answer_from_event`), which
``promotion.apply_approval`` applies. Nothing here knows Airflow: the HITL event is a plain dict.
See docs/adr/0011-approval-in-airflow.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from modelyard.core.errors import ModelyardError
from modelyard.core.tracking import run_url
from modelyard.promotion.decide import Action, Decision, apply_approval, decide, evaluate_for_approval, main_metrics
from modelyard.promotion.decide import recorded_decision as recorded
from modelyard.promotion.gates import format_number, verdict

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from modelyard.core.config import Config
    from modelyard.promotion.gates import GateResult

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
    """``promotion.decide``, except that ``evaluate`` on a pair needing approval holds a passing challenger.

    Such a challenger is recorded as ``awaiting-approval`` (aliases untouched); manual
    ``promote-version`` and ``rollback`` are decisions by a person already and are not held.
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


def apply(client: MlflowClient, config: Config, answer: Answer) -> Decision:
    """Apply ``answer`` to its version (see ``promotion.apply_approval``)."""
    return apply_approval(
        client, config, answer.family, answer.region, answer.version, answer.outcome,
        decided_by=answer.by, reason=answer.reason, at=answer.at,
    )  # fmt: skip


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
    body = "\n\n".join([
        f"**{name} v{version}** passed every gate against {against} on the same holdout.",
        f"*Approve* makes v{version} the champion of {family}/{region} (deploy follows). *Reject* keeps it "
        f"the challenger; say why in **reason**, it is recorded on the version. No answer within "
        f"{policy.timeout} keeps it the challenger (recorded as timed out).",
        "#### Metrics against the champion\n\n" + metrics,
        "#### Gates\n\n" + gate_table(decision.gates),
        "#### MLflow\n\n" + " · ".join(links),
    ])  # fmt: skip
    return ApprovalRequest(
        family=family, region=region, model_name=name, version=version, champion=decision.champion_before,
        subject=f"Promote {family}/{region} v{version}?", body=body, timeout_seconds=policy.timeout.total_seconds(),
    )  # fmt: skip


def gate_table(gates: list[GateResult]) -> str:
    """The per-gate table as Markdown."""
    rows = ["| gate | value | op | threshold | result |", "|---|---|---|---|---|"]
    rows += [
        f"| {g.name} | {format_number(g.value)} | {g.op} | {format_number(g.threshold)} | {verdict(g)} |" for g in gates
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
        return Answer(**pair, outcome="timed-out", by=None, at=_now(), reason=f"no answer within {waited}")
    chosen = list(event["chosen_options"])
    reason = str((event.get("params_input") or {}).get("reason") or "").strip()
    responded = event.get("responded_at")
    at = dt.datetime.fromisoformat(responded) if isinstance(responded, str) else responded or _now()
    outcome: AwaitedOutcome = "approved" if chosen == [APPROVE] else "rejected"
    return Answer(**pair, outcome=outcome, by=str(user.get("name") or user.get("id")), at=at, reason=reason)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
