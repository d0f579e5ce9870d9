"""Decide and act: promote a challenger, reject it with reasons, promote a version by hand, roll back.

Promotion only moves MLflow registry aliases of the registered model of one (family, region):

``champion``            the version serving the region (the deploy stage follows it);
``previous-champion``   the version it replaced, the target of a rollback;
``challenger``          the newest trained version (moved by training, never by promotion).

Every decision is recorded on the decided version (tags ``promotion.*``: outcome, summary,
decided_by, decided_at and the per-gate table as JSON), as artifacts on its training run
(``promotion/<when>-<action>/``: decision.json, gates.txt, comparison.png) and in the
registered model's ``promotion_history`` tag (newest entries, bounded in size).

Two promotions of the same (family, region) never interleave: each holds an exclusive
lock (training/locks.py) from reading the aliases to verifying them, and moves the
aliases in an order in which ``champion`` and ``previous-champion`` never point at the same
version (see docs/adr/0004-promotion-aliases.md).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from modelyard.core.contracts.registry import (
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    HISTORY_TAG,
    PREVIOUS_ALIAS,
    PROMOTION_TAG,
)
from modelyard.core.errors import ModelyardError
from modelyard.promotion import locks
from modelyard.promotion.gates import (
    Evidence,
    GateInputError,
    GateReport,
    GateResult,
    collect_evidence,
    evaluate_gates,
    format_number,
    gates_for,
    task_gates,
    verdict,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from rich.table import Table

    from modelyard.core.config import Config

log = logging.getLogger(__name__)

TAG = PROMOTION_TAG
# Registered-model tag values are VARCHAR(5000) on SQL backends: keep the newest entries that fit.
HISTORY_MAX_CHARS = 4800
LOCK_TIMEOUT_SECONDS = locks.LOCK_TIMEOUT_SECONDS

Action = Literal["evaluate", "promote-version", "rollback", "approval"]
Outcome = Literal[
    "promoted", "rejected", "rolled-back", "unchanged", "no-challenger", "failed", "awaiting-approval", "timed-out"
]


class PromotionError(ModelyardError, RuntimeError):
    """A promotion or rollback cannot be done; the message names the model and what to do."""


class AliasInconsistencyError(PromotionError):
    """``champion`` and ``previous-champion`` point at the same or a missing version."""


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
        """The ``extra`` of the champion Asset event (see ``pipeline.assets.champion_uri``)."""
        return {
            "family": self.family,
            "region": self.region,
            "model_name": self.model_name,
            "version": self.champion_after or "",
        }

    def history_entry(self) -> dict[str, str | None]:
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


# ---------------------------------------------------------------- client, aliases, lock


def open_client(config: Config, tracking_uri: str | None = None) -> MlflowClient:
    """An MLflow client on ``tracking_uri`` (default: $MLFLOW_TRACKING_URI, then the config), also set globally.

    The global URI matters: model artifacts are downloaded through ``models:/`` URIs.
    """
    import mlflow

    from modelyard.core.tracking import require_reachable, resolve_tracking_uri

    uri = require_reachable(tracking_uri or resolve_tracking_uri(config))
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(uri, uri)


def aliases(client: MlflowClient, model_name: str) -> dict[str, str]:
    """The aliases of ``model_name`` (alias -> version); empty when the model is not registered."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise
    return {alias: str(version) for alias, version in model.aliases.items()}


@contextlib.contextmanager
def pair_lock(config: Config, model_name: str, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[str]:
    """Hold the exclusive promotion lock of ``model_name`` (training/locks.py; ADR 0004); yields where it lives.

    Raises:
        PromotionError: another promotion held the lock for longer than ``timeout`` seconds.
    """
    try:
        with locks.promotion_lock(config.storage, model_name, timeout) as where:
            yield where
    except locks.LockTimeoutError as exc:
        raise PromotionError(str(exc)) from None


def verify_aliases(client: MlflowClient, model_name: str) -> dict[str, str]:
    """Check the invariant: champion and previous-champion differ and both exist.

    Raises:
        AliasInconsistencyError: naming the aliases and versions.
    """
    current = aliases(client, model_name)
    champion, previous = current.get(CHAMPION_ALIAS), current.get(PREVIOUS_ALIAS)
    if previous is not None and champion is None:
        raise AliasInconsistencyError(f"{model_name}: '{PREVIOUS_ALIAS}' is v{previous} but there is no champion")
    if champion is not None and champion == previous:
        raise AliasInconsistencyError(f"{model_name}: champion and {PREVIOUS_ALIAS} both point at v{champion}")
    for version in {champion, previous} - {None}:
        client.get_model_version(model_name, str(version))
    return current


def move_champion(client: MlflowClient, model_name: str, new: str, current: dict[str, str]) -> None:
    """Make ``new`` the champion and the old champion the previous one.

    The order keeps the invariant after every single call: the previous alias is dropped
    first when it points at ``new``, champion moves next, previous moves last.
    """
    old = current.get(CHAMPION_ALIAS)
    if current.get(PREVIOUS_ALIAS) == new:
        client.delete_registered_model_alias(model_name, PREVIOUS_ALIAS)
    client.set_registered_model_alias(model_name, CHAMPION_ALIAS, new)
    if old is not None and old != new:
        client.set_registered_model_alias(model_name, PREVIOUS_ALIAS, old)


def restore_previous(client: MlflowClient, model_name: str, restored: str, new_previous: str | None) -> None:
    """Rollback's alias moves: drop previous, champion -> ``restored``, previous -> ``new_previous`` (if any)."""
    client.delete_registered_model_alias(model_name, PREVIOUS_ALIAS)
    client.set_registered_model_alias(model_name, CHAMPION_ALIAS, restored)
    if new_previous is not None:
        client.set_registered_model_alias(model_name, PREVIOUS_ALIAS, new_previous)


# ---------------------------------------------------------------- decisions


def evaluate_pair(
    client: MlflowClient, config: Config, family: str, region: str, decided_by: str, *, force: bool = False
) -> Decision:
    """Run the gates on the challenger of (family, region) and promote it if all pass.

    A challenger already decided is left alone (the recorded decision is returned with
    ``already_decided``) unless ``force``. A failed gate is a decision (``rejected``), not an error.

    Raises:
        GateInputError: the challenger's snapshot or artifacts cannot be read.
        GateConfigError: a gate names a metric the task does not produce.
        PromotionError: the lock could not be taken.
    """
    name = config.mlflow.model_name(family, region)
    with pair_lock(config, name):
        found = _challenger_to_decide(client, config, (family, region), decided_by, force)
        if isinstance(found, Decision):
            return found
        challenger, current = found
        challenger_version = str(challenger.version)
        champion_version = current.get(CHAMPION_ALIAS)
        if champion_version == challenger_version:
            # Promoted earlier without a recorded decision (e.g. a crash in between): compare with the one it replaced.
            champion_version = current.get(PREVIOUS_ALIAS)
        champion = client.get_model_version(name, champion_version) if champion_version else None
        gates = gates_for(config, family, region)
        evidence = collect_evidence(client, config, challenger, champion, gates.latency_calls)
        report = evaluate_gates(gates, evidence)
        after = current
        if report.passed:
            move_champion(client, name, challenger_version, current)
            after = verify_aliases(client, name)
        decision = Decision(
            family=family, region=region, model_name=name, action="evaluate",
            outcome="promoted" if report.passed else "rejected", version=challenger_version,
            champion_before=champion_version, champion_after=after.get(CHAMPION_ALIAS),
            previous_champion_after=after.get(PREVIOUS_ALIAS), gates=report.results,
            summary=_evaluation_summary(report, champion_version), decided_by=decided_by, decided_at=_now(),
            run_id=challenger.run_id,
        )  # fmt: skip
        record(client, decision, challenger, evidence, report)
        return decision


def promote_version(
    client: MlflowClient, config: Config, family: str, region: str, version: str, reason: str, decided_by: str
) -> Decision:
    """Make ``version`` the champion by hand, whatever the gates say (they are still evaluated and recorded).

    Raises:
        PromotionError: the version does not exist or no reason was given.
    """
    if not reason.strip():
        raise PromotionError("a manual promotion needs a reason (--reason TEXT): it is recorded in the history")
    name = config.mlflow.model_name(family, region)
    with pair_lock(config, name):
        target = _existing_version(client, name, str(version))
        current = aliases(client, name)
        champion_version = current.get(CHAMPION_ALIAS)
        if champion_version == target.version:
            return _unchanged(config, family, region, target, current, decided_by, reason)
        champion = client.get_model_version(name, champion_version) if champion_version else None
        evidence, report, note = _best_effort_gates(client, config, family, region, target, champion)
        move_champion(client, name, str(target.version), current)
        after = verify_aliases(client, name)
        decision = Decision(
            family=family, region=region, model_name=name, action="promote-version", outcome="promoted",
            version=str(target.version), champion_before=champion_version, champion_after=after.get(CHAMPION_ALIAS),
            previous_champion_after=after.get(PREVIOUS_ALIAS), gates=report.results if report else [],
            summary=f"manual promotion of v{target.version} by {decided_by}: {reason} ({note})",
            decided_by=decided_by, decided_at=_now(), reason=reason, run_id=target.run_id,
        )  # fmt: skip
        record(client, decision, target, evidence, report)
        return decision


def rollback(
    client: MlflowClient, config: Config, family: str, region: str, decided_by: str, reason: str | None = None
) -> Decision:
    """Move ``champion`` back to ``previous-champion``.

    The demoted version is tagged as rolled back; the new previous-champion is the version
    the restored one had replaced, when it still exists (so a second rollback steps further back).

    Raises:
        PromotionError: there is no champion or no previous-champion to return to.
    """
    name = config.mlflow.model_name(family, region)
    with pair_lock(config, name):
        current = aliases(client, name)
        demoted, restored = current.get(CHAMPION_ALIAS), current.get(PREVIOUS_ALIAS)
        if demoted is None or restored is None:
            raise PromotionError(
                f"{name}: nothing to roll back to "
                f"(champion: {demoted or 'none'}, {PREVIOUS_ALIAS}: {restored or 'none'})"
            )
        restored_version = client.get_model_version(name, restored)
        new_previous = _replaced_by(client, restored_version, exclude={demoted, restored})
        restore_previous(client, name, restored, new_previous)
        after = verify_aliases(client, name)
        decision = Decision(
            family=family, region=region, model_name=name, action="rollback", outcome="rolled-back",
            version=restored, champion_before=demoted, champion_after=after.get(CHAMPION_ALIAS),
            previous_champion_after=after.get(PREVIOUS_ALIAS),
            summary=f"rolled back from v{demoted} to v{restored} by {decided_by}" + (f": {reason}" if reason else ""),
            decided_by=decided_by, decided_at=_now(), reason=reason, run_id=restored_version.run_id,
        )  # fmt: skip
        _record_rollback(client, decision, demoted)
        return decision


def _evaluation_summary(report: GateReport, champion: str | None) -> str:
    against = f"against champion v{champion}" if champion else "first model of the region (no champion)"
    verdict = "promoted" if report.passed else "rejected"
    return f"{verdict} ({against}): {report.summary()}"


def _best_effort_gates(
    client: MlflowClient, config: Config, family: str, region: str, target: ModelVersion, champion: ModelVersion | None
) -> tuple[Evidence | None, GateReport | None, str]:
    gates = gates_for(config, family, region)
    try:
        evidence = collect_evidence(client, config, target, champion, gates.latency_calls)
    except GateInputError as exc:
        return None, None, f"gates not evaluated: {exc}"
    report = evaluate_gates(gates, evidence)
    failed = ", ".join(r.name for r in report.failures)
    return evidence, report, f"gates overridden, failing: {failed}" if failed else "all gates passed"


def _existing_version(client: MlflowClient, name: str, version: str) -> ModelVersion:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, version)
    except MlflowException as exc:
        raise PromotionError(f"{name}: version {version} does not exist ({exc.message})") from exc


def _replaced_by(client: MlflowClient, version: ModelVersion, exclude: set[str]) -> str | None:
    from mlflow.exceptions import MlflowException

    replaced = (version.tags or {}).get(f"{TAG}replaced")
    if not replaced or replaced in exclude:
        return None
    try:
        client.get_model_version(version.name, replaced)
    except MlflowException:
        return None
    return replaced


def _no_challenger(config: Config, family: str, region: str, decided_by: str, current: dict[str, str]) -> Decision:
    return Decision(
        family=family, region=region, model_name=config.mlflow.model_name(family, region), action="evaluate",
        outcome="no-challenger", version=None, champion_before=current.get(CHAMPION_ALIAS),
        champion_after=current.get(CHAMPION_ALIAS), previous_champion_after=current.get(PREVIOUS_ALIAS),
        summary="no challenger registered yet (run `modelyard train` first)", decided_by=decided_by,
        decided_at=_now(),
    )  # fmt: skip


def _unchanged(
    config: Config, family: str, region: str, target: ModelVersion, current: dict[str, str], by: str, reason: str
) -> Decision:
    return Decision(
        family=family, region=region, model_name=target.name, action="promote-version", outcome="unchanged",
        version=str(target.version), champion_before=current.get(CHAMPION_ALIAS),
        champion_after=current.get(CHAMPION_ALIAS), previous_champion_after=current.get(PREVIOUS_ALIAS),
        summary=f"v{target.version} is already the champion; nothing changed", decided_by=by, decided_at=_now(),
        reason=reason, run_id=target.run_id,
    )  # fmt: skip


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ---------------------------------------------------------------- recording


def recorded_decision(version: ModelVersion) -> Decision | None:
    """The decision recorded on ``version`` by an earlier run, if any."""
    raw = (version.tags or {}).get(f"{TAG}decision")
    return Decision.model_validate_json(raw) if raw else None


def record(
    client: MlflowClient,
    decision: Decision,
    version: ModelVersion,
    evidence: Evidence | None,
    report: GateReport | None,
) -> None:
    """Write the decision on the version (tags), on its run (artifacts) and in the model's history."""
    name, number = decision.model_name, str(version.version)
    tags = {
        "outcome": decision.outcome,
        "summary": decision.summary,
        "decided_by": decision.decided_by,
        "decided_at": decision.decided_at.isoformat(),
        "action": decision.action,
        "gates": json.dumps([gate.model_dump(mode="json") for gate in decision.gates]),
        "decision": decision.model_dump_json(),
    }
    if decision.reason:
        tags["reason"] = decision.reason
    if decision.outcome == "promoted":
        tags["champion_since"] = decision.decided_at.isoformat()
        if decision.champion_before and decision.champion_before != number:
            tags["replaced"] = decision.champion_before
    for key, value in tags.items():
        client.set_model_version_tag(name, number, f"{TAG}{key}", value)
    entries = append_history(client, name, decision)
    _log_artifacts(client, decision, evidence, report, entries)


def _record_rollback(client: MlflowClient, decision: Decision, demoted: str) -> None:
    name, when = decision.model_name, decision.decided_at.isoformat()
    for key, value in {"rolled_back_at": when, "rolled_back_by": decision.decided_by,
                       "rolled_back_reason": decision.reason or ""}.items():  # fmt: skip
        client.set_model_version_tag(name, demoted, f"{TAG}{key}", value)
    client.set_model_version_tag(name, str(decision.version), f"{TAG}champion_since", when)
    entries = append_history(client, name, decision)
    _log_artifacts(client, decision, None, None, entries)


def _log_artifacts(
    client: MlflowClient,
    decision: Decision,
    evidence: Evidence | None,
    report: GateReport | None,
    entries: list[dict[str, str | None]] | None = None,
) -> None:
    """The decision's files on its run, written to a folder and uploaded in one call.

    ``entries`` is the history just written (read back from the registry when not given).
    """
    import tempfile

    if not decision.run_id:
        return
    folder = f"promotion/{decision.decided_at:%Y%m%dT%H%M%S}-{decision.action}"
    entries = history(client, decision.model_name) if entries is None else entries
    with tempfile.TemporaryDirectory(prefix="modelyard-promotion-") as tmp:
        local = Path(tmp)
        (local / "decision.json").write_text(json.dumps(decision.model_dump(mode="json"), indent=2))
        if report is not None:
            (local / "gates.txt").write_text(f"{decision.summary}\n\n{report.as_text()}\n")
        if evidence is not None:
            comparison_figure(evidence, decision).savefig(local / "comparison.png", format="png")
        history_doc = {"model": decision.model_name, "history": entries}
        (local / "history.json").write_text(json.dumps(history_doc, indent=2))
        client.log_artifacts(decision.run_id, str(local), folder)


def history(client: MlflowClient, model_name: str) -> list[dict[str, str | None]]:
    """The promotion history of ``model_name`` (oldest first, the newest entries that fit the tag)."""
    raw = client.get_registered_model(model_name).tags.get(HISTORY_TAG)
    return list(json.loads(raw)) if raw else []


def append_history(client: MlflowClient, model_name: str, decision: Decision) -> list[dict[str, str | None]]:
    """Append ``decision`` to the model's ``promotion_history`` tag, dropping the oldest entries that do not fit.

    Returns:
        The history as written.
    """
    entries = [*history(client, model_name), decision.history_entry()]
    text = json.dumps(entries, separators=(",", ":"))
    while len(text) > HISTORY_MAX_CHARS and len(entries) > 1:
        entries = entries[1:]
        text = json.dumps(entries, separators=(",", ":"))
    client.set_registered_model_tag(model_name, HISTORY_TAG, text)
    return entries


def comparison_figure(evidence: Evidence, decision: Decision) -> Figure:
    """Challenger vs champion on the holdout: the gated metrics per slice, and the prediction distributions."""
    from matplotlib.figure import Figure

    # Fixed margins, not a layout engine: a layout engine re-measures every text on each save.
    fig = Figure(figsize=(12, 4.5), dpi=80)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.22, top=0.85, wspace=0.2)
    bars, hist = fig.subplots(1, 2)
    metric = _main_metric(evidence, decision)
    keys = [metric, *sorted(k for k in evidence.challenger.metrics if k.startswith(f"{metric}__"))]
    labels = [k.partition("__")[2] or "overall" for k in keys]
    positions = range(len(keys))
    bars.bar([p - 0.2 for p in positions], [evidence.challenger.metrics.get(k, 0.0) for k in keys], 0.4,
             label=f"challenger v{evidence.challenger.version}")  # fmt: skip
    hist.hist(evidence.challenger.predictions, bins=40, alpha=0.5, label=f"challenger v{evidence.challenger.version}")
    if evidence.champion is not None:
        bars.bar([p + 0.2 for p in positions], [evidence.champion.metrics.get(k, 0.0) for k in keys], 0.4,
                 label=f"champion v{evidence.champion.version}")  # fmt: skip
        hist.hist(evidence.champion.predictions, bins=40, alpha=0.5, label=f"champion v{evidence.champion.version}")
    bars.set_xticks(list(positions), labels, rotation=30, ha="right")
    bars.set(title=f"{metric} on the holdout ({evidence.holdout_rows} rows)", ylabel=metric)
    hist.set(title="prediction distribution on the holdout", xlabel="prediction", ylabel="rows")
    bars.legend()
    hist.legend()
    fig.suptitle(f"{decision.model_name}: {decision.outcome} ({decision.decided_at:%Y-%m-%d %H:%M} UTC)")
    return fig


def _main_metric(evidence: Evidence, decision: Decision) -> str:
    for gate in decision.gates:
        if gate.kind in ("versus_champion", "absolute"):
            return gate.name.partition(":")[2]
    return "holdout_auc" if evidence.task == "classification" else "holdout_mae"


# ---------------------------------------------------------------- decisions a person takes (ADR 0011)


def _challenger_to_decide(
    client: MlflowClient, config: Config, pair: tuple[str, str], decided_by: str, force: bool
) -> Decision | tuple[ModelVersion, dict[str, str]]:
    """Under the pair's lock: the challenger to decide on and the model's aliases, or a decision to
    return as it is (there is no challenger, or it was decided already and not ``force``)."""
    name = config.mlflow.model_name(*pair)
    current = aliases(client, name)
    challenger_version = current.get(CHALLENGER_ALIAS)
    if challenger_version is None:
        return _no_challenger(config, pair[0], pair[1], decided_by, current)
    challenger = client.get_model_version(name, challenger_version)
    recorded = recorded_decision(challenger)
    if recorded is not None and not force:
        log.info("%s v%s already decided (%s); use force to decide again", name, challenger_version, recorded.outcome)
        return recorded.model_copy(update={"already_decided": True})
    return challenger, current


def evaluate_for_approval(
    client: MlflowClient, config: Config, family: str, region: str, decided_by: str, *, force: bool = False
) -> Decision:
    """Like :func:`evaluate_pair`, but a challenger that passes every gate is held as ``awaiting-approval``.

    Nothing moves: the gate table and the champion it was measured against are recorded on the
    version, for :func:`apply_approval` to act on once a person answered. A version already
    decided (awaiting, rejected, timed out, promoted) is left alone unless ``force``.

    Raises:
        GateInputError: the challenger's snapshot or artifacts cannot be read.
        PromotionError: the lock could not be taken.
    """
    name = config.mlflow.model_name(family, region)
    with pair_lock(config, name):
        found = _challenger_to_decide(client, config, (family, region), decided_by, force)
        if isinstance(found, Decision):
            return found
        challenger, current = found
        champion_version = current.get(CHAMPION_ALIAS)
        if champion_version != str(challenger.version):
            champion = client.get_model_version(name, champion_version) if champion_version else None
            return _hold_for_approval(client, config, (family, region), challenger, champion, current, decided_by)
    # Champion already (promoted before its decision was recorded): nothing to approve, complete the record.
    return evaluate_pair(client, config, family, region, decided_by, force=force)


def _hold_for_approval(
    client: MlflowClient,
    config: Config,
    pair: tuple[str, str],
    challenger: ModelVersion,
    champion: ModelVersion | None,
    current: dict[str, str],
    decided_by: str,
) -> Decision:
    gates = gates_for(config, *pair)
    evidence = collect_evidence(client, config, challenger, champion, gates.latency_calls)
    report = evaluate_gates(gates, evidence)
    champion_version = str(champion.version) if champion else None
    summary = _evaluation_summary(report, champion_version)
    if report.passed:
        summary = summary.replace("promoted", "awaiting approval", 1)
    decision = Decision(
        family=pair[0], region=pair[1], model_name=challenger.name, action="evaluate",
        outcome="awaiting-approval" if report.passed else "rejected", version=str(challenger.version),
        champion_before=champion_version, champion_after=champion_version,
        previous_champion_after=current.get(PREVIOUS_ALIAS), gates=report.results, summary=summary,
        decided_by=decided_by, decided_at=_now(), run_id=challenger.run_id,
    )  # fmt: skip
    record(client, decision, challenger, evidence, report)
    return decision


def apply_approval(
    client: MlflowClient,
    config: Config,
    family: str,
    region: str,
    version: str,
    answer: Literal["approved", "rejected", "timed-out"],
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
    name = config.mlflow.model_name(family, region)
    with pair_lock(config, name):
        target = _existing_version(client, name, version)
        recorded = recorded_decision(target)
        if recorded is None or recorded.outcome != "awaiting-approval":
            log.info("%s v%s is not awaiting approval; answer ignored", name, version)
            return (recorded or _unawaited(config, family, region, target, decided_by)).model_copy(
                update={"already_decided": True}
            )
        current = aliases(client, name)
        by = decided_by or "airflow:timeout"
        decision = _answered(client, name, target, recorded, current, answer, by, reason, at)
        record(client, decision, target, None, None)
        client.set_model_version_tag(name, version, f"{TAG}approval", answer)
        client.set_model_version_tag(name, version, f"{TAG}approval_requested_at", recorded.decided_at.isoformat())
        return decision


def _answered(
    client: MlflowClient,
    name: str,
    target: ModelVersion,
    recorded: Decision,
    current: dict[str, str],
    answer: str,
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
        move_champion(client, name, version, current)
        after, outcome = verify_aliases(client, name), "promoted"
        summary = f"approved by {by}: {why} ({recorded.summary})"
    return recorded.model_copy(
        update={
            "action": "approval", "outcome": outcome, "champion_before": champion,
            "champion_after": after.get(CHAMPION_ALIAS), "previous_champion_after": after.get(PREVIOUS_ALIAS),
            "summary": summary, "decided_by": by, "decided_at": at, "reason": why, "already_decided": False,
        }
    )  # fmt: skip


def _unawaited(config: Config, family: str, region: str, target: ModelVersion, by: str | None) -> Decision:
    return Decision(
        family=family, region=region, model_name=target.name, action="approval", outcome="unchanged",
        version=str(target.version), champion_before=None, champion_after=None, previous_champion_after=None,
        summary=f"v{target.version} was never evaluated for approval; nothing changed", decided_by=by or "nobody",
        decided_at=_now(), run_id=target.run_id,
    )  # fmt: skip


# ---------------------------------------------------------------- many pairs, tables


def promote_all(
    config: Config,
    families: list[str] | None = None,
    regions: list[str] | None = None,
    decided_by: str = "cli",
    *,
    force: bool = False,
    tracking_uri: str | None = None,
) -> list[Decision]:
    """Evaluate the challenger of every selected (family, region); one decision per pair.

    A pair whose inputs cannot be read (snapshot, artifacts) or whose lock times out gets an
    unrecorded ``failed`` decision naming the cause; the other pairs are still decided.

    Raises:
        ConfigError: an unknown family or region was named, or a gate is misconfigured.
    """
    client = open_client(config, tracking_uri)
    decisions = []
    for family, region in config.pairs(families, regions):
        try:
            decisions.append(evaluate_pair(client, config, family, region, decided_by, force=force))
        except (GateInputError, PromotionError) as exc:
            log.exception("%s/%s: promotion failed", family, region)
            decisions.append(_failed(config, family, region, decided_by, exc))
    return decisions


def _failed(config: Config, family: str, region: str, decided_by: str, exc: Exception) -> Decision:
    return Decision(
        family=family, region=region, model_name=config.mlflow.model_name(family, region), action="evaluate",
        outcome="failed", version=None, champion_before=None, champion_after=None, previous_champion_after=None,
        summary=f"{type(exc).__name__}: {exc}", decided_by=decided_by, decided_at=_now(),
    )  # fmt: skip


def render_decisions(decisions: list[Decision]) -> Table:
    """A rich table: pair, outcome, version, champion before -> after, summary."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Promotion decisions")
    for column in ("family", "region", "outcome", "version", "champion", "summary"):
        table.add_column(column, overflow="fold")
    for d in decisions:
        outcome = d.outcome + (" (already decided)" if d.already_decided else "")
        table.add_row(
            d.family, d.region, _styled(d.outcome, outcome), d.version or "-",
            f"{d.champion_before or '-'} -> {d.champion_after or '-'}", escape(d.summary),
        )  # fmt: skip
    return table


def render_gates(decision: Decision) -> Table:
    """The per-gate table of one decision."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"Gates of {decision.model_name} v{decision.version}: {decision.outcome}")
    for column in ("gate", "value", "op", "threshold", "result", "summary"):
        table.add_column(column, overflow="fold")
    for gate in decision.gates:
        result = verdict(gate)
        colour = "red" if result == "FAIL" else "green" if result == "pass" else "cyan"
        table.add_row(
            gate.name, format_number(gate.value), gate.op, format_number(gate.threshold),
            f"[{colour}]{result}[/{colour}]", escape(gate.summary),
        )  # fmt: skip
    return table


def _styled(outcome: str, text: str) -> str:
    colour = {"promoted": "green", "rolled-back": "yellow", "rejected": "red", "failed": "red"}.get(outcome, "cyan")
    return f"[{colour}]{text}[/{colour}]"


def main_metrics(config: Config, family: str) -> list[str]:
    """The metric names the gates of ``family`` look at (for status tables)."""
    task = config.family(family).task
    section = task_gates(config.gates.defaults, task)
    names = [g.metric for g in section.absolute] + [g.metric for g in section.versus_champion]
    return list(dict.fromkeys(names))


# ---------------------------------------------------------------- what a run decides (CLI and DAG)


def check_request(action: str, pairs: list[tuple[str, str]], version: str | None, reason: str | None) -> None:
    """Validate a manual request before anything runs.

    Raises:
        PromotionError: ``promote-version`` without exactly one pair, a version and a reason; an unknown action.
    """
    if action == "promote-version":
        if len(pairs) != 1:
            raise PromotionError(f"promote-version needs exactly one family and one region, got {len(pairs)} pairs")
        if not version or not (reason or "").strip():
            raise PromotionError("promote-version needs a version and a reason (both are recorded)")
    elif action not in ("evaluate", "rollback"):
        raise PromotionError(f"unknown action '{action}' (use evaluate, promote-version or rollback)")


def decide(
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
    """Run one ``action`` on one (family, region): evaluate the challenger, promote ``version``, or roll back."""
    family, region = pair
    if action == "promote-version":
        return promote_version(client, config, family, region, str(version), reason or "", decided_by)
    if action == "rollback":
        return rollback(client, config, family, region, decided_by, reason)
    return evaluate_pair(client, config, family, region, decided_by, force=force)
