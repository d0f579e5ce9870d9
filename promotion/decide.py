"""Decide and act: promote a challenger, reject it with reasons, promote a version by hand, roll back.

Each action runs under the pair's lock (promotion/aliases.py), moves the aliases there, and
is recorded (promotion/record.py); a person's approval is promotion/approval.py. The
:class:`~modelyard.promotion.decision.Decision` it returns is data; the CLI renders it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from modelyard.core.contracts.registry import (
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    PREVIOUS_ALIAS,
    missing_training_tags,
)
from modelyard.promotion.aliases import (
    aliases,
    move_champion,
    open_client,
    pair_lock,
    registered_model,
    restore_previous,
    verify_aliases,
)
from modelyard.promotion.decision import Action, Decision, PromotionError
from modelyard.promotion.evidence import collect_evidence
from modelyard.promotion.gates import GateInputError, evaluate_gates, gates_for
from modelyard.promotion.record import TAG, record, record_rollback, recorded_decision

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from modelyard.core.chunks import Pair
    from modelyard.core.config import Config
    from modelyard.promotion.gates import Evidence, GateReport

log = logging.getLogger(__name__)


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
        found = challenger_to_decide(client, config, (family, region), decided_by, force)
        if isinstance(found, Decision):
            return found
        challenger, current = found
        champion_version = current.get(CHAMPION_ALIAS)
        if champion_version == str(challenger.version):
            # Promoted earlier without a recorded decision (e.g. a crash in between): compare with the one it replaced.
            champion_version = current.get(PREVIOUS_ALIAS)
        champion = client.get_model_version(name, champion_version) if champion_version else None
        evidence, report = judge(client, config, (family, region), challenger, champion)
        after, model = current, None
        if report.passed:
            move_champion(client, name, str(challenger.version), current)
            # One read after the moves: the aliases to verify and the description whose history grows.
            model = registered_model(client, name)
            known = frozenset({str(challenger.version), *([str(champion.version)] if champion is not None else [])})
            after = verify_aliases(client, name, model, known)
        decision = Decision.evaluated((family, region), challenger, report, champion_version, after, decided_by)
        record(client, decision, challenger, evidence, report, model)
        return decision


def not_gateable(version: ModelVersion) -> str | None:
    """Why the gates cannot judge ``version`` (not registered by ``modelyard train``: no snapshot named), or None."""
    missing = missing_training_tags(version.tags)
    if not missing:
        return None
    named = f"{', '.join(repr(key) for key in missing)} tag{'s' if len(missing) > 1 else ''}"
    return (
        f"v{version.version} was not registered by `modelyard train` (no {named}), so the gates have no snapshot "
        f"to score it on; if it is wanted, promote it by hand: `modelyard promote --version {version.version} "
        "--reason ...` (the promotion DAG's promote-version action)"
    )


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
        target = existing_version(client, name, str(version))
        current = aliases(client, name)
        champion_version = current.get(CHAMPION_ALIAS)
        if champion_version == target.version:
            return Decision.unchanged((family, region), target, current, decided_by, reason)
        champion = client.get_model_version(name, champion_version) if champion_version else None
        evidence, report, note = _best_effort_gates(client, config, (family, region), target, champion)
        move_champion(client, name, str(target.version), current)
        after = verify_aliases(client, name)
        decision = Decision.promoted_by_hand(
            (family, region), target, champion_version, after, decided_by, reason, report=report, note=note
        )
        record(client, decision, target, evidence, report)
        return decision


def rollback(
    client: MlflowClient, config: Config, family: str, region: str, decided_by: str, reason: str | None = None
) -> Decision:
    """Move ``champion`` back to ``previous-champion``.

    The demoted version is tagged as rolled back; the new previous-champion is the version
    the restored one had replaced, when it still exists (so a second rollback steps further back).

    Raises:
        PromotionError: there is no champion or no previous-champion to return to (for a region a
            pooled model serves, the message names the group to roll back instead).
    """
    name = config.mlflow.model_name(family, region)
    with pair_lock(config, name):
        current = aliases(client, name)
        demoted, restored = current.get(CHAMPION_ALIAS), current.get(PREVIOUS_ALIAS)
        if demoted is None and (served := serving_pooled(client, config, (family, region))) is not None:
            group, pooled = served
            raise PromotionError(
                f"{name} has no champion: {family}/{region} is served by the pooled model {pooled.name} "
                f"v{pooled.version} of region group {group}; to roll that back, name the group "
                f"(modelyard rollback --family {family} --group {group}; in the promotion DAG's form: "
                f"action rollback, region groups {group}). It serves every region of {group} without a "
                "champion of its own."
            )
        if demoted is None or restored is None:
            raise PromotionError(
                f"{name}: nothing to roll back to "
                f"(champion: {demoted or 'none'}, {PREVIOUS_ALIAS}: {restored or 'none'})"
            )
        restored_version = client.get_model_version(name, restored)
        new_previous = _replaced_by(client, restored_version, exclude={demoted, restored})
        restore_previous(client, name, restored, new_previous)
        after = verify_aliases(client, name)
        decision = Decision.rolled_back((family, region), restored_version, demoted, after, decided_by, reason)
        record_rollback(client, decision, demoted)
        return decision


def judge(
    client: MlflowClient, config: Config, pair: Pair, challenger: ModelVersion, champion: ModelVersion | None
) -> tuple[Evidence, GateReport]:
    """The evidence on ``challenger`` (against ``champion``) and the gates of ``pair`` run on it.

    Raises:
        GateInputError: the challenger's snapshot or artifacts cannot be read.
    """
    gates = gates_for(config, *pair)
    pooled = pooled_champion(client, config, pair) if champion is None else None
    evidence = collect_evidence(client, config, challenger, champion, gates.latency_calls, pooled)
    return evidence, evaluate_gates(gates, evidence)


def pooled_champion(client: MlflowClient, config: Config, pair: Pair) -> ModelVersion | None:
    """The pooled champion serving a region without a champion of its own (its most specific group's; ADR 0015).

    None for a group's own pooled model, a region in no group, or groups without a pooled champion.
    """
    served = serving_pooled(client, config, pair)
    return served[1] if served is not None else None


def serving_pooled(client: MlflowClient, config: Config, pair: Pair) -> tuple[str, ModelVersion] | None:
    """The region group and the pooled champion that would serve ``pair`` without a champion of its own.

    Its most specific group with a pooled champion; None as :func:`pooled_champion`.
    """
    family, region = pair
    if region not in config.region_names:
        return None
    for group in config.groups_of(region):
        name = config.pooled_model_name(family, group)
        version = aliases(client, name).get(CHAMPION_ALIAS)
        if version is not None:
            return group, client.get_model_version(name, version)
    return None


def _best_effort_gates(
    client: MlflowClient, config: Config, pair: Pair, target: ModelVersion, champion: ModelVersion | None
) -> tuple[Evidence | None, GateReport | None, str]:
    try:
        evidence, report = judge(client, config, pair, target, champion)
    except GateInputError as exc:
        return None, None, f"gates not evaluated: {exc}"
    failed = ", ".join(r.name for r in report.failures)
    return evidence, report, f"gates overridden, failing: {failed}" if failed else "all gates passed"


def challenger_to_decide(
    client: MlflowClient, config: Config, pair: Pair, decided_by: str, force: bool
) -> Decision | tuple[ModelVersion, dict[str, str]]:
    """Under the pair's lock: the challenger to decide on and the model's aliases, or a decision to
    return as it is (there is no challenger; it was decided already and not ``force``; or the gates
    cannot judge it, see :func:`not_gateable`: then it is rejected, and that is recorded)."""
    name = config.mlflow.model_name(*pair)
    current = aliases(client, name)
    challenger_version = current.get(CHALLENGER_ALIAS)
    if challenger_version is None:
        return Decision.no_challenger(pair, name, current, decided_by)
    challenger = client.get_model_version(name, challenger_version)
    recorded = recorded_decision(challenger)
    if recorded is not None and not force:
        log.info("%s v%s already decided (%s); use force to decide again", name, challenger_version, recorded.outcome)
        return recorded.model_copy(update={"already_decided": True})
    champion = current.get(CHAMPION_ALIAS)
    if champion != challenger_version and (why := not_gateable(challenger)) is not None:
        # A property of the version, not a fault: rejected and recorded once, so no later run fails on it.
        decision = Decision.not_judged(pair, challenger, champion, current, decided_by, why)
        record(client, decision, challenger, None, None)
        return decision
    return challenger, current


def existing_version(client: MlflowClient, name: str, version: str) -> ModelVersion:
    """Version ``version`` of ``name``.

    Raises:
        PromotionError: it does not exist.
    """
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


# ---------------------------------------------------------------- what a run decides (CLI and DAG)


def promote_all(
    config: Config,
    families: list[str] | None = None,
    regions: list[str] | None = None,
    decided_by: str = "cli",
    *,
    force: bool = False,
    tracking_uri: str | None = None,
    groups: list[str] | None = None,
) -> list[Decision]:
    """Evaluate the challenger of every selected (family, region); one decision per pair.

    With ``groups``, the pooled models of those region groups are evaluated instead, one decision
    per (family, group) on the group's pooled holdout (ADR 0015).

    A pair whose inputs cannot be read (snapshot, artifacts) or whose lock times out gets an
    unrecorded ``failed`` decision naming the cause; the other pairs are still decided.

    Raises:
        ConfigError: an unknown family, region or group was named, or a gate is misconfigured.
        PromotionError: both regions and groups were named.
    """
    selected = selected_pairs(config, families, regions, groups)
    client = open_client(config, tracking_uri)
    decisions = []
    for family, region in selected:
        try:
            decisions.append(evaluate_pair(client, config, family, region, decided_by, force=force))
        except (GateInputError, PromotionError) as exc:
            log.exception("%s/%s: promotion failed", family, region)
            name = config.mlflow.model_name(family, region)
            decisions.append(Decision.failed((family, region), name, decided_by, exc))
    return decisions


def pooled_pairs(
    config: Config, families: list[str] | None = None, groups: list[str] | None = None
) -> list[tuple[str, str]]:
    """Every (family, group) whose pooled model is selected (ADR 0015): all groups when ``groups`` is empty.

    Raises:
        ConfigError: an unknown family or group was named.
    """
    chosen_families = [config.family(f).name for f in families] if families else config.family_names
    for group in groups or []:
        config.group_members(group)  # an unknown group fails naming the configured ones
    chosen_groups = groups or list(config.region_groups)
    return [(family, group) for family in chosen_families for group in chosen_groups]


def selected_pairs(
    config: Config,
    families: list[str] | None = None,
    regions: list[str] | None = None,
    groups: list[str] | None = None,
) -> list[tuple[str, str]]:
    """What a promotion run selects: the (family, region) pairs, or with ``groups`` the pooled (family, group) ones.

    ``modelyard promote`` and the promotion DAG's form both select through here.

    Raises:
        ConfigError: an unknown family, region or group was named.
        PromotionError: both regions and groups were named.
    """
    if groups and regions:
        raise PromotionError(
            f"groups {', '.join(groups)} select pooled models; leave out the regions ({', '.join(regions)})"
        )
    return pooled_pairs(config, families, groups) if groups else config.pairs(families, regions)


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
    pair: Pair,
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
