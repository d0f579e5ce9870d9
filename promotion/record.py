"""Where a decision is written down, and read back from.

Every decision is recorded on the decided version: its description (Markdown, what the MLflow
UI shows on the version page) holds the outcome, the summary and the gate table, and ends with
the decision as JSON in an HTML comment (hidden by the UI; what :func:`recorded_decision` reads
back). Short tags ``promotion.*`` say the outcome, summary, action, who and when, the aliases
before and after (absent: none), the gate count, and since (until) when a version was champion.
Artifacts on its training run (``promotion/<when>-<action>/``: decision.json, gates.txt,
history.json, and comparison.png when there was a champion to compare with) and the promotion
history at the end of the registered model's description (a table, newest first, bounded in size:
:func:`append_history`) complete the record.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.core.contracts.registry import HISTORY_HEADING, HISTORY_TAG, PROMOTION_TAG, split_history
from modelyard.promotion.aliases import retire_challenger
from modelyard.promotion.decision import Decision
from modelyard.promotion.render import decision_markdown
from modelyard.training.registry import registry_writer

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion, RegisteredModel

    from modelyard.promotion.gates import Evidence, GateReport

log = logging.getLogger(__name__)

TAG = PROMOTION_TAG
# Model version and registered model descriptions are VARCHAR(5000) on SQL backends.
DESCRIPTION_MAX_CHARS = 5000
# A tag is read in the registry's tables: a sentence, not a document.
TAG_MAX_CHARS = 250
NONE = "-"  # an alias tag's value when the alias pointed nowhere
# The promotion's part of a version's description comes first (the registry's version list shows the first
# line) and ends with the decision's record; text after it (a person's notes) is kept.
DECISION_MARK = "<!-- modelyard:decision "
# Lazy: the JSON holds no ">" (escaped), so the first "} -->" ends it, whatever a person wrote after it.
_DECISION_RE = re.compile(re.escape(DECISION_MARK) + r"(\{.*?\}) -->", re.DOTALL)
# Before the description held it, the decision was a JSON tag: still read on versions decided then.
LEGACY_DECISION_TAG = f"{TAG}decision"


def recorded_decision(version: ModelVersion) -> Decision | None:
    """The decision recorded on ``version`` by an earlier run, if any (from its description, else its tags)."""
    from pydantic import ValidationError

    found = _DECISION_RE.search(version.description or "")
    if found:
        try:
            return Decision.model_validate_json(found.group(1))
        except ValidationError:
            log.warning(
                "%s v%s: the decision in its description does not parse; reading its tags",
                version.name,
                version.version,
            )
    tags = version.tags or {}
    if tags.get(LEGACY_DECISION_TAG):
        return Decision.model_validate_json(tags[LEGACY_DECISION_TAG])
    return _from_tags(version) if tags.get(f"{TAG}outcome") else None


def _from_tags(version: ModelVersion) -> Decision | None:
    """The decision from the short tags alone (its description was edited away): everything but the gates."""
    from pydantic import ValidationError

    tags = version.tags or {}

    def tag(key: str) -> str | None:
        value = tags.get(f"{TAG}{key}")
        return None if value in (None, "", NONE) else value

    try:
        return Decision.model_validate(
            {
                "family": tags.get("family", ""),
                "region": tags.get("region", ""),
                "model_name": version.name,
                "action": tag("action"),
                "outcome": tag("outcome"),
                "version": str(version.version),
                "champion_before": tag("champion_before"),
                "champion_after": tag("champion_after"),
                "previous_champion_after": tag("previous_champion_after"),
                "summary": tag("summary") or "",
                "decided_by": tag("decided_by") or "",
                "decided_at": tag("decided_at"),
                "reason": tag("reason"),
                "run_id": version.run_id or None,
            }
        )
    except ValidationError:
        return None


def decision_tags(decision: Decision, number: str) -> dict[str, str]:
    """The short ``promotion.*`` tags of a decision on version ``number`` (keys without the prefix)."""
    tags = {
        "outcome": decision.outcome,
        "summary": _short(decision.summary),
        "decided_by": decision.decided_by,
        "decided_at": decision.decided_at.isoformat(),
        "action": decision.action,
        "gates": _short(gate_counts(decision)),
        "champion_before": decision.champion_before or NONE,
        "champion_after": decision.champion_after or NONE,
        "previous_champion_after": decision.previous_champion_after or NONE,
    }
    if decision.reason:
        tags["reason"] = _short(decision.reason)
    if decision.outcome == "promoted":
        tags["champion_since"] = decision.decided_at.isoformat()
        if decision.champion_before and decision.champion_before != number:
            tags["replaced"] = decision.champion_before
    return tags


def gate_counts(decision: Decision) -> str:
    """``4 passed, 3 skipped, 1 failed: latency`` (``no gates`` when none ran)."""
    if not decision.gates:
        return "no gates"
    failed = [gate.name for gate in decision.gates if not gate.passed]
    skipped = sum(gate.skipped for gate in decision.gates)
    counts = [f"{len(decision.gates) - len(failed) - skipped} passed"]
    counts += [f"{skipped} skipped"] if skipped else []
    counts += [f"{len(failed)} failed: {', '.join(failed)}"] if failed else []
    return ", ".join(counts)


def _short(text: str) -> str:
    return _cut(text, TAG_MAX_CHARS)


def version_description(decision: Decision, current: str | None) -> str:
    """The version's description with ``decision`` as its promotion section (Markdown, then the hidden JSON).

    The section comes first; the rest of ``current`` (a person's notes after an earlier section,
    or all of it when it has none) is kept below it, in the room the section leaves of
    ``DESCRIPTION_MAX_CHARS``. Summaries are cut, shortest last, until the section fits; past that
    (hundreds of gates) the table and then the gates' record are left out: the run's ``gates.txt``
    and ``decision.json`` have them.
    """
    earlier = _DECISION_RE.search(current or "")
    kept = (current or "")[earlier.end() if earlier else 0 :].strip()
    body = ""
    # (each gate's summary, the decision's summary and reason, whether the table is shown, whether gates are kept)
    for gate_chars, summary_chars, table, gates in _TRIMS:
        trimmed = _trimmed(decision, gate_chars, summary_chars, gates)
        shown = trimmed if table else trimmed.model_copy(update={"gates": []})
        left_out = "" if table else f"\n\n{len(decision.gates)} gates: see gates.txt on the training run."
        body = f"{decision_markdown(shown)}{left_out}\n\n{_hidden(trimmed)}"
        if len(body) <= DESCRIPTION_MAX_CHARS:
            break
    # The notes get the room the record leaves (cut at the end when they do not fit).
    return (f"{body}\n\n{kept}" if kept else body)[:DESCRIPTION_MAX_CHARS]


_TRIMS: tuple[tuple[int | None, int | None, bool, bool], ...] = (
    (None, None, True, True),
    (120, 1000, True, True),
    (40, 300, True, True),
    (0, 200, False, True),
    (0, 200, False, False),
)


def _trimmed(decision: Decision, gate_chars: int | None, summary_chars: int | None, gates: bool) -> Decision:
    if gate_chars is None and summary_chars is None:
        return decision
    kept = [g.model_copy(update={"summary": _cut(g.summary, gate_chars)}) for g in decision.gates] if gates else []
    reason = _cut(decision.reason, summary_chars) if decision.reason else decision.reason
    return decision.model_copy(
        update={"gates": kept, "summary": _cut(decision.summary, summary_chars), "reason": reason}
    )


def _cut(text: str, chars: int | None) -> str:
    if chars is None or len(text) <= chars:
        return text
    return text[: max(chars - 1, 0)] + "…" if chars else ""


def _hidden(decision: Decision) -> str:
    """The decision as JSON inside an HTML comment (``>`` escaped, so no text of it can close the comment)."""
    payload = decision.model_dump_json(exclude={"already_decided"}).replace(">", "\\u003e")
    return f"{DECISION_MARK}{payload} -->"


def record(
    client: MlflowClient,
    decision: Decision,
    version: ModelVersion,
    evidence: Evidence | None,
    report: GateReport | None,
    model: RegisteredModel | None = None,
) -> None:
    """Write the decision on the version (description, tags), on its run (artifacts) and in the model's history.

    A promoted version stops being the ``challenger`` (once its decision is written, so a crash in
    between leaves a version that is decided again, not an undecided champion); the champion it
    replaced loses ``champion_since`` and gets ``champion_until``. ``model``: the registered model as
    read under the pair's lock after the alias moves (its history is extended; None: read here).

    MLflow writes one version tag a request (issue 26: most of a decision's requests), so a tag that
    would say "none" (``-``) is written only over an earlier value, and a tag is deleted only when the
    version has it; read back, an absent tag and ``-`` both mean none.
    """
    name, number = decision.model_name, str(version.version)
    had = version.tags or {}
    versions = registry_writer(client)
    versions.update_model_version(name, number, description=version_description(decision, version.description))
    for key, value in decision_tags(decision, number).items():
        if value != NONE or f"{TAG}{key}" in had:
            versions.set_model_version_tag(name, number, f"{TAG}{key}", value)
    if LEGACY_DECISION_TAG in had:
        versions.delete_model_version_tag(name, number, LEGACY_DECISION_TAG)
    entries = append_history(client, name, decision, model)
    if decision.outcome == "promoted":
        if f"{TAG}champion_until" in had:
            versions.delete_model_version_tag(name, number, f"{TAG}champion_until")
        if decision.champion_before and decision.champion_before != number:
            _end_championship(client, name, decision.champion_before, decision.decided_at.isoformat())
        retire_challenger(client, name, number)
    _log_artifacts(client, decision, evidence, report, entries)


def record_rollback(client: MlflowClient, decision: Decision, demoted: str) -> None:
    """Write a rollback: who demoted ``demoted``, when and why; since when the restored version serves again."""
    name, when = decision.model_name, decision.decided_at.isoformat()
    demotion = {
        "rolled_back_at": when,
        "rolled_back_by": decision.decided_by,
        "rolled_back_reason": _short(decision.reason or ""),
    }
    versions = registry_writer(client)
    for key, value in demotion.items():
        versions.set_model_version_tag(name, demoted, f"{TAG}{key}", value)
    _end_championship(client, name, demoted, when)
    _note_rollback(client, decision, demoted)
    restored = str(decision.version)
    versions.set_model_version_tag(name, restored, f"{TAG}champion_since", when)
    versions.delete_model_version_tag(name, restored, f"{TAG}champion_until")
    entries = append_history(client, name, decision)
    _log_artifacts(client, decision, None, None, entries)


def _end_championship(client: MlflowClient, name: str, version: str, when: str) -> None:
    """``version`` no longer serves: ``champion_since`` goes, ``champion_until`` says when it stopped."""
    versions = registry_writer(client)
    versions.delete_model_version_tag(name, version, f"{TAG}champion_since")
    versions.set_model_version_tag(name, version, f"{TAG}champion_until", when)


def _note_rollback(client: MlflowClient, decision: Decision, demoted: str) -> None:
    """A first line on the demoted version's description: rolled back, when, by whom and why."""
    current = client.get_model_version(decision.model_name, demoted).description or ""
    why = f": {' '.join(decision.reason.split())}" if decision.reason else ""
    line = (
        f"Rolled back at {decision.decided_at.isoformat(timespec='seconds')} by `{decision.decided_by}`{why} "
        f"(v{decision.version} is the champion again)."
    )
    updated = f"{line}\n\n{current}".rstrip()
    if len(updated) <= DESCRIPTION_MAX_CHARS:
        client.update_model_version(decision.model_name, demoted, description=updated)


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
        if evidence is not None and evidence.champion is not None:  # a first model has nothing to compare with
            _kept_comparison().draw(evidence, decision).save(local / "comparison.png")
        history_doc = {"model": decision.model_name, "history": entries}
        (local / "history.json").write_text(json.dumps(history_doc, indent=2))
        if evidence is not None and evidence.run_artifact_uri:  # the run as read for the gates: no second read
            from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

            repo = get_artifact_repository(evidence.run_artifact_uri, tracking_uri=client.tracking_uri)
            repo.log_artifacts(str(local), folder)
        else:
            client.log_artifacts(decision.run_id, str(local), folder)


def history(client: MlflowClient, model_name: str) -> list[dict[str, str | None]]:
    """The promotion history of ``model_name`` (oldest first, the newest entries that fit its description)."""
    return _history_of(client.get_registered_model(model_name))


def _history_of(model: RegisteredModel) -> list[dict[str, str | None]]:
    _, section = split_history(model.description)
    found = re.search(r"<!-- modelyard:history (.*?) -->", section, re.S)
    if found:
        return list(json.loads(found.group(1)))
    legacy = (model.tags or {}).get(HISTORY_TAG)  # written as a tag before the history moved to the description
    return list(json.loads(legacy)) if legacy else []


def append_history(
    client: MlflowClient, model_name: str, decision: Decision, model: RegisteredModel | None = None
) -> list[dict[str, str | None]]:
    """Append ``decision`` to the model's history section, dropping the oldest entries that do not fit.

    The section ends the registered model's description (what the MLflow UI shows on the model's
    page): a Markdown table, newest first, then the entries as JSON in an HTML comment (hidden by
    the UI; what :func:`history` reads). Older entries stay in each decision's ``history.json``.
    ``model``: the registered model as the caller just read it under the pair's lock (None: read here).

    Returns:
        The history as written.
    """
    model = model if model is not None else client.get_registered_model(model_name)
    entries = [*_history_of(model), decision.history_entry()]
    base, _ = split_history(model.description)
    text = _with_history(base, entries)
    while len(text) > DESCRIPTION_MAX_CHARS and len(entries) > 1:
        entries = entries[1:]
        text = _with_history(base, entries)
    registry_writer(client).update_registered_model(model_name, description=text)
    if HISTORY_TAG in (model.tags or {}):
        client.delete_registered_model_tag(model_name, HISTORY_TAG)
    return entries


def _with_history(base: str, entries: list[dict[str, str | None]]) -> str:
    rows = [
        f"| {_cell((e.get('at') or '')[:16].replace('T', ' '))} | {_cell(e.get('action'))} | "
        f"{_cell(e.get('outcome'))} | v{_cell(e.get('version'))} | "
        f"{_champion_move(e)} | {_cell(e.get('by'))} | {_cell(_cut(e.get('why') or '', 80))} |"
        for e in reversed(entries)
    ]
    table = "\n".join(["| when (UTC) | action | outcome | version | champion | by | why |", "|---" * 7 + "|", *rows])
    data = json.dumps(entries, separators=(",", ":")).replace("--", "-\\u002d")  # "--" would end the comment
    section = f"{HISTORY_HEADING} (newest first)\n\n{table}\n\n<!-- modelyard:history {data} -->"
    return f"{base}\n\n{section}" if base else section


def _champion_move(entry: dict[str, str | None]) -> str:
    before, after = entry.get("champion_before"), entry.get("champion_after")
    if before == after:
        return f"v{before}" if before else "-"
    return f"{'v' + before if before else 'none'} → {'v' + after if after else 'none'}"


def _cell(value: object) -> str:
    return " ".join(str(value or "").split()).replace("|", "\\|")


def comparison_figure(evidence: Evidence, decision: Decision) -> Figure:
    """Challenger vs champion on the holdout: the gated metrics per slice, and the prediction distributions.

    A figure of its own (for notebooks); a decision's record draws on this thread's kept one.
    """
    return ComparisonPlot().draw(evidence, decision).fig


class ComparisonPlot:
    """The comparison figure, built once and redrawn per decision (issue 26).

    Building the figure and its two axes is a good part of the plot's CPU: a chunk worker keeps one
    per thread (:func:`_kept_comparison`) and :meth:`draw` clears both axes before drawing, so
    nothing of the previous decision stays. Fixed margins, not a layout engine (a layout engine
    re-measures every text on each save); the PNG at zlib's fastest level, as training's plots.
    """

    def __init__(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.fig = Figure(figsize=(12, 4.5), dpi=80)
        FigureCanvasAgg(self.fig)
        self.fig.subplots_adjust(left=0.06, right=0.98, bottom=0.22, top=0.85, wspace=0.2)
        self.bars, self.hist = self.fig.subplots(1, 2)

    def draw(self, evidence: Evidence, decision: Decision) -> ComparisonPlot:
        """Draw ``decision``'s comparison, replacing whatever was drawn before."""
        bars, hist = self.bars, self.hist
        bars.cla()
        hist.cla()
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
            hist.hist(side.predictions, bins=40, histtype="stepfilled", alpha=0.5, label=label)
        bars.set_xticks(positions, [k.partition("__")[2] or "overall" for k in keys], rotation=30, ha="right")
        bars.set(title=f"{metric} on the holdout ({evidence.holdout_rows} rows)", ylabel=metric)
        hist.set(title="prediction distribution on the holdout", xlabel="prediction", ylabel="rows")
        bars.legend()
        hist.legend()
        self.fig.suptitle(f"{decision.model_name}: {decision.outcome} ({decision.decided_at:%Y-%m-%d %H:%M} UTC)")
        return self

    def save(self, path: Path) -> None:
        """Render the figure and write it as PNG."""
        from modelyard.training.plots import PNG_OPTIONS

        self.fig.savefig(path, format="png", pil_kwargs=PNG_OPTIONS)


# One comparison figure per thread: figures are not shared between threads.
_KEPT = threading.local()


def _kept_comparison() -> ComparisonPlot:
    """This thread's comparison figure, built on first use."""
    kept: ComparisonPlot | None = getattr(_KEPT, "plot", None)
    if kept is None:
        kept = _KEPT.plot = ComparisonPlot()
    return kept


def _main_metric(evidence: Evidence, decision: Decision) -> str:
    for gate in decision.gates:
        if gate.kind in ("versus_champion", "absolute"):
            return gate.name.partition(":")[2]
    return "holdout_auc" if evidence.task == "classification" else "holdout_mae"
