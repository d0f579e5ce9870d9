"""Where a decision is written down, and read back from.

Every decision is recorded on the decided version (tags ``promotion.*``: outcome, summary,
decided_by, decided_at and the per-gate table as JSON), as artifacts on its training run
(``promotion/<when>-<action>/``: decision.json, gates.txt, comparison.png, history.json) and
in the registered model's ``promotion_history`` tag (newest entries, bounded in size).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.core.contracts.registry import HISTORY_TAG, PROMOTION_TAG
from modelyard.promotion.decision import Decision

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from modelyard.promotion.gates import Evidence, GateReport

TAG = PROMOTION_TAG
# Registered-model tag values are VARCHAR(5000) on SQL backends: keep the newest entries that fit.
HISTORY_MAX_CHARS = 4800


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


def record_rollback(client: MlflowClient, decision: Decision, demoted: str) -> None:
    """Write a rollback: who demoted ``demoted``, when and why; since when the restored version serves again."""
    name, when = decision.model_name, decision.decided_at.isoformat()
    demotion = {
        "rolled_back_at": when,
        "rolled_back_by": decision.decided_by,
        "rolled_back_reason": decision.reason or "",
    }
    for key, value in demotion.items():
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
    positions = list(range(len(keys)))
    sides = [(evidence.challenger, "challenger", -0.2), (evidence.champion, "champion", 0.2)]
    for side, role, shift in sides:
        if side is None:
            continue
        label = f"{role} v{side.version}"
        heights = [side.metrics.get(k, 0.0) for k in keys]
        bars.bar([p + shift for p in positions], heights, 0.4, label=label)
        hist.hist(side.predictions, bins=40, alpha=0.5, label=label)
    bars.set_xticks(positions, [k.partition("__")[2] or "overall" for k in keys], rotation=30, ha="right")
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
