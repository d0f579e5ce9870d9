"""Validation gates: may a challenger replace the champion of one (family, region)?

Gates are declared in ``modelyard.yaml`` (``gates.defaults`` per task, ``gates.region_overrides``
keyed ``"<family>"``, ``"<family>/<region>"`` or ``"<family>/<group>"``, the last for the pooled model of a
region group, ADR 0015), never coded per model. Each one yields a
:class:`GateResult` (value, threshold, passed, readable summary):

``absolute``
    a holdout metric of the challenger against a fixed threshold.
``versus_champion``
    challenger and champion scored on the SAME rows (the challenger's holdout, rebuilt from
    its snapshot digest and split boundaries) with a maximum regression or minimum improvement.
    Each version featurises those rows' raw fields with its OWN ``feature_spec.json`` (a version
    owns its spec): a family's features may change while its champion serves. A champion that
    reads a raw field the challenger's snapshot does not carry cannot be compared: its gates fail
    with that reason (promote by hand with ``--version`` and a reason if the change is wanted).
``baseline``
    the challenger beats its own baseline (``families[].baseline``, fitted on the same training rows
    and scored on the same holdout at training, logged as ``baseline_holdout_<metric>``) by a
    margin, absolute or relative to the baseline's value. On by default (``DEFAULT_BASELINE_GATES``);
    skipped for a version trained without a baseline.
``data_validation``
    the challenger's snapshot passed its data-quality checks.
``model_size``
    the model's artifacts fit the budget.
``latency``
    the single-row p99 latency of the engine that will serve the model (its ONNX copy when that is
    exact and faster, else the native model) stays within ``max_latency_ratio`` times the champion's,
    timed in the same run on the same rows, plus ``latency_slack_ms``; and never above the absolute
    ``max_p99_latency_ms`` (the only bound for a first model). ADR 0012.
``prediction_shift``
    PSI of the challenger's predictions against the champion's on the holdout.
``slice``
    no slice the family declares (``families[].slices``) is relatively worse than the champion's by
    more than ``max_slice_regression``.
``graduation``
    a region's first model of its own, while its group's pooled champion serves it (ADR 0015), must
    beat or match that pooled model on the region's own holdout, per ``versus_champion`` metric
    (``min_improvement`` when declared, else 0): otherwise the region stays on the pooled model.

Without a champion (the first model of a region) the comparative gates are recorded as
skipped, so the decision rests on the absolute ones. :func:`evaluate_gates` is pure (numbers
in, report out); :func:`modelyard.promotion.evidence.collect_evidence` reads the registry and the snapshot to feed it.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from modelyard.core.config import GATE_TASK_KEYS, ConfigError, GateDefaults, TaskGates
from modelyard.core.config.gates import BaselineGate
from modelyard.core.errors import ModelyardError
from modelyard.training import metrics as metric_names

SPEC_EXTRA_DIR = "extra_files"  # where MLflow puts a logged model's extra files (training.mlflow_log)

if TYPE_CHECKING:
    import numpy as np

    from modelyard.core.config import Config
    from modelyard.pipeline.snapshots import ValidationSummary
    from modelyard.training.metrics import Task

GateKind = Literal[
    "absolute",
    "versus_champion",
    "baseline",
    "data_validation",
    "model_size",
    "latency",
    "prediction_shift",
    "slice",
    "graduation",
]
PSI_BINS = 10
WARM_UP_CALLS = 10
LATENCY_ROUNDS = 3
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


class GateConfigError(ConfigError):
    """A gate names a metric that the holdout scoring cannot produce; the message names the key."""


class GateInputError(ModelyardError, RuntimeError):
    """An input of the gates (snapshot, split, model artifacts) cannot be read; the message says which."""


_HOLDS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq,
}  # fmt: skip


class GateResult(BaseModel):
    """One gate's outcome. Skipped gates (no champion to compare with) count as passed."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: GateKind
    value: float | None
    threshold: float | None
    op: str
    passed: bool
    skipped: bool = False
    summary: str

    @property
    def better(self) -> Literal["higher", "lower"]:
        """Which way ``value`` is better: every gate passes on ``value <op> threshold``."""
        return "higher" if self.op in (">=", ">") else "lower"

    @property
    def past_its_bound(self) -> bool:
        """Passed although ``value <op> threshold`` does not hold: a prediction shift the holdout earned (ADR 0032)."""
        holds = _HOLDS.get(self.op)
        if holds is None or not self.passed or self.skipped or self.value is None or self.threshold is None:
            return False
        return not holds(self.value, self.threshold)


class GateReport(BaseModel):
    """Every gate's result for one challenger."""

    model_config = ConfigDict(frozen=True)

    results: list[GateResult]

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.results)

    @property
    def failures(self) -> list[GateResult]:
        return [result for result in self.results if not result.passed]

    def summary(self) -> str:
        """One readable paragraph: how many gates passed, and why each failing one failed."""
        checked = [r for r in self.results if not r.skipped]
        if self.passed:
            skipped = len(self.results) - len(checked)
            note = f" ({skipped} skipped: nothing to compare with)" if skipped else ""
            # A gate passed past its bound says why first: a reviewer reads the summary, not the table.
            earned = "".join(f"; {r.summary}" for r in self.results if r.past_its_bound)
            return f"all {len(checked)} gates passed{note}{earned}"
        reasons = "; ".join(r.summary for r in self.failures)
        return f"{len(self.failures)} of {len(checked)} gates failed: {reasons}"

    def as_text(self) -> str:
        """The gate table as fixed-width text (for task logs and the ``gates.txt`` artifact)."""
        rows = [("gate", "value", "better", "op", "threshold", "result")]
        rows += [
            (r.name, format_number(r.value), r.better, r.op, format_number(r.threshold), verdict(r))
            for r in self.results
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
        lines.insert(1, "  ".join("-" * width for width in widths))
        return "\n".join(lines)


def format_number(value: float | None) -> str:
    """A gate value for tables: 4 significant digits, ``-`` when there is none."""
    return "-" if value is None else f"{value:.4g}"


def verdict(result: GateResult) -> str:
    """``pass``, ``FAIL`` or ``skipped``."""
    if result.skipped:
        return "skipped"
    return "pass" if result.passed else "FAIL"


@dataclass(frozen=True)
class ModelScore:
    """One model version's predictions on the holdout and the metrics they earn."""

    version: str
    predictions: np.ndarray
    metrics: dict[str, float]


@dataclass(frozen=True)
class Evidence:
    """Everything the gates look at, gathered once per challenger."""

    task: Task
    challenger: ModelScore
    champion: ModelScore | None
    validation: ValidationSummary
    size_mb: float
    # The single-row p99 of the engine that will serve the challenger (ADR 0012), and which engine that is.
    latency_p99_ms: float
    holdout_rows: int
    latency_engine: str = "native"
    # The champion's single-row p99 on its serving engine, timed in the same rounds; what it is ("champion v3 (onnx)").
    reference_latency_ms: float | None = None
    reference_latency: str | None = None
    # The challenger's run: its baseline's algorithm (None: trained without one) and holdout metrics
    # (``holdout_auc``, from the logged ``baseline_holdout_auc``).
    baseline_algorithm: str | None = None
    baseline_metrics: Mapping[str, float] = field(default_factory=dict)
    # Why a champion that exists has no score (it reads a raw field the holdout does not carry).
    champion_note: str | None = None
    # A region's first own model: the pooled champion serving the region, scored on the same rows (ADR 0015).
    pooled_model: str | None = None
    pooled: ModelScore | None = None
    pooled_note: str | None = None
    # Where the challenger's run keeps its artifacts (its decision's files go there); None: not read.
    run_artifact_uri: str | None = None


# ---------------------------------------------------------------- configuration


def gates_for(config: Config, family: str, region: str) -> GateDefaults:
    """The effective gates of (family, region): defaults, then the family's override, then the region's.

    ``region`` may be a region group (its pooled model, ADR 0015): its override is keyed ``<family>/<group>``.
    A region served by a pooled model is not judged by the group's key, nor the pooled model by a member's.

    Raises:
        GateConfigError: an override does not validate; the message names its key.
    """
    merged: dict[str, Any] = config.gates.defaults.model_dump(mode="json")
    task = config.family(family).task
    for key in (family, f"{family}/{region}"):
        override = config.gates.region_overrides.get(key)
        if override:
            _merge_override(merged, override, task)
    try:
        return GateDefaults.model_validate(merged)
    except ValidationError as exc:
        raise GateConfigError(f"gates.region_overrides for '{family}/{region}' are invalid: {exc}") from exc


def _merge_override(merged: dict[str, Any], override: Mapping[str, Any], task: str) -> None:
    for key, value in override.items():
        if key in GATE_TASK_KEYS:
            merged[task] = {**merged[task], key: value}
        elif isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value


def task_gates(gates: GateDefaults, task: Task) -> TaskGates:
    """The metric gates of one task."""
    return gates.classification if task == "classification" else gates.regression


def main_metrics(config: Config, family: str) -> list[str]:
    """The metric names the gates of ``family`` look at (for status tables and approval requests)."""
    section = task_gates(config.gates.defaults, config.family(family).task)
    names = [g.metric for g in section.absolute] + [g.metric for g in section.versus_champion]
    return list(dict.fromkeys(names))


def check_metric_names(gates: GateDefaults, task: Task) -> None:
    """Every metric a gate names must be a holdout metric the task produces.

    Raises:
        GateConfigError: naming the gate's key and the metrics that exist.
    """
    known = metric_names.CLASSIFICATION_METRICS if task == "classification" else metric_names.REGRESSION_METRICS
    section = task_gates(gates, task)
    named = [("absolute", i, g.metric) for i, g in enumerate(section.absolute)]
    named += [("versus_champion", i, g.metric) for i, g in enumerate(section.versus_champion)]
    named += [("baseline", i, g.metric) for i, g in enumerate(section.baseline)]
    for kind, index, metric in named:
        split, _, base = metric.partition("_")
        if split != "holdout" or base not in known:
            raise GateConfigError(
                f"gates {task}.{kind}[{index}].metric '{metric}': gates score the holdout, "
                f"use one of {', '.join('holdout_' + m for m in known)}"
            )


# ---------------------------------------------------------------- the gates (pure)


def evaluate_gates(gates: GateDefaults, evidence: Evidence) -> GateReport:
    """Every declared gate on ``evidence``.

    Raises:
        GateConfigError: a gate names a metric the task does not produce.
    """
    check_metric_names(gates, evidence.task)
    section = task_gates(gates, evidence.task)
    results = [absolute_gate(g.metric, g.op, g.threshold, evidence.challenger.metrics) for g in section.absolute]
    results += [
        versus_champion_gate(g.metric, g.direction, g.max_regression, g.min_improvement, evidence)
        for g in section.versus_champion
    ]
    results += [baseline_gate(g, evidence) for g in section.baseline]
    results.append(data_validation_gate(evidence.validation))
    results.append(budget_gate("model_size", "model size (MB)", evidence.size_mb, gates.max_model_size_mb))
    results.append(latency_gate(gates, evidence))
    results.append(prediction_shift_gate(evidence, gates.max_psi, gates.psi_earned_improvement))
    for gate in section.versus_champion:
        results += slice_gates(gate.metric, gate.direction, evidence, gates.max_slice_regression)
    if evidence.pooled_model is not None:
        results += [
            graduation_gate(g.metric, g.direction, g.min_improvement, evidence) for g in section.versus_champion
        ]
    return GateReport(results=results)


def graduation_gate(metric: str, direction: str, min_improvement: float, evidence: Evidence) -> GateResult:
    """A region's own first model must beat or match its pooled champion on the region's holdout (ADR 0015)."""
    name, threshold = f"graduation:{metric}", min_improvement
    pooled = f"pooled model {evidence.pooled_model}"
    challenger = evidence.challenger.metrics.get(metric)
    other = evidence.pooled.metrics.get(metric) if evidence.pooled is not None else None
    if challenger is None or other is None or evidence.pooled is None:
        why = evidence.pooled_note or f"{metric} missing for the {'challenger' if challenger is None else pooled}"
        return GateResult(
            name=name, kind="graduation", value=None, threshold=threshold, op=">=", passed=False,
            summary=f"{name}: {why}; the region stays on the {pooled}",
        )  # fmt: skip
    delta = improvement(challenger, other, direction)
    passed = delta >= threshold - 1e-12
    verdict = "takes over" if passed else f"loses: the region stays on the {pooled}"
    summary = (
        f"{metric} {challenger:.4g} vs {pooled} v{evidence.pooled.version} {other:.4g} on the region's holdout: "
        f"{abs(delta):.4g} {'better' if delta >= 0 else 'worse'} (needs improvement >= {threshold:.4g}); {verdict}"
    )
    return GateResult(
        name=name, kind="graduation", value=delta, threshold=threshold, op=">=", passed=passed, summary=summary
    )


def absolute_gate(metric: str, op: str, threshold: float, values: Mapping[str, float]) -> GateResult:
    """``values[metric] <op> threshold``; a metric that could not be computed fails."""
    name = f"absolute:{metric}"
    value = values.get(metric)
    if value is None or math.isnan(value):
        summary = f"{metric} could not be computed on the holdout (e.g. AUC on a single class)"
        return GateResult(
            name=name, kind="absolute", value=None, threshold=threshold, op=op, passed=False, summary=summary
        )
    passed = _OPS[op](value, threshold)
    summary = f"{metric} {value:.4g} {'meets' if passed else 'misses'} {op} {threshold:.4g}"
    return GateResult(
        name=name, kind="absolute", value=value, threshold=threshold, op=op, passed=passed, summary=summary
    )


def improvement(challenger: float, champion: float, direction: str) -> float:
    """How much better the challenger is, in the metric's unit (negative: worse)."""
    return challenger - champion if direction == "higher" else champion - challenger


def versus_champion_gate(
    metric: str, direction: str, max_regression: float, min_improvement: float, evidence: Evidence
) -> GateResult:
    """The challenger may be at most ``max_regression`` worse (or must be ``min_improvement`` better)."""
    name = f"versus_champion:{metric}"
    threshold = min_improvement if min_improvement else -max_regression
    if evidence.champion is None:
        return _uncompared(name, "versus_champion", threshold, ">=", evidence.champion_note)
    challenger = evidence.challenger.metrics.get(metric)
    champion = evidence.champion.metrics.get(metric)
    if challenger is None or champion is None:
        summary = f"{metric} missing for the {'challenger' if challenger is None else 'champion'} on the holdout"
        return GateResult(
            name=name, kind="versus_champion", value=None, threshold=threshold, op=">=", passed=False, summary=summary
        )
    delta = improvement(challenger, champion, direction)
    passed = delta >= threshold - 1e-12
    word = "better" if delta >= 0 else "worse"
    summary = (
        f"{metric} {challenger:.4g} vs champion v{evidence.champion.version} {champion:.4g}: "
        f"{abs(delta):.4g} {word} ({direction} is better; needs improvement >= {threshold:.4g})"
    )
    return GateResult(
        name=name, kind="versus_champion", value=delta, threshold=threshold, op=">=", passed=passed, summary=summary
    )


def baseline_gate(gate: BaselineGate, evidence: Evidence) -> GateResult:
    """The challenger beats its baseline on ``gate.metric`` by at least the declared margin (in the metric's unit)."""
    metric, name = gate.metric, f"baseline:{gate.metric}"
    challenger = evidence.challenger.metrics.get(metric)
    baseline = evidence.baseline_metrics.get(metric)
    margin = gate.min_improvement + gate.min_relative_improvement * abs(baseline or 0.0)
    if evidence.baseline_algorithm is None:
        return GateResult(
            name=name, kind="baseline", value=None, threshold=margin, op=">=", passed=True, skipped=True,
            summary=f"{name} skipped: trained without a baseline (set families[].baseline to compare with one)",
        )  # fmt: skip
    if challenger is None or baseline is None or math.isnan(challenger) or math.isnan(baseline):
        whose = "the challenger" if challenger is None or math.isnan(challenger) else "its baseline"
        return GateResult(
            name=name, kind="baseline", value=None, threshold=margin, op=">=", passed=False,
            summary=f"{name}: {metric} missing for {whose} on the holdout (retrain to log baseline_{metric})",
        )  # fmt: skip
    direction = "higher" if metric_names.higher_is_better(metric) else "lower"
    delta = improvement(challenger, baseline, direction)
    passed = delta >= margin - 1e-12
    declared = f" = {gate.min_relative_improvement:.0%} of the baseline" if gate.min_relative_improvement else ""
    summary = (
        f"{metric} {challenger:.4g} vs baseline {evidence.baseline_algorithm} {baseline:.4g}: "
        f"{abs(delta):.4g} {'better' if delta >= 0 else 'worse'} ({direction} is better; "
        f"needs a margin >= {margin:.4g}{declared})"
    )
    return GateResult(
        name=name, kind="baseline", value=delta, threshold=margin, op=">=", passed=passed, summary=summary
    )


def latency_gate(gates: GateDefaults, evidence: Evidence) -> GateResult:
    """The serving engine's single-row p99 within ``max_latency_ratio`` x the champion's (timed in the same run)
    plus ``latency_slack_ms``, and never above ``max_p99_latency_ms`` (ADR 0012)."""
    value, outer = evidence.latency_p99_ms, gates.max_p99_latency_ms
    label = f"single-row p99 latency ({evidence.latency_engine}) {value:.4g} ms"
    reference = evidence.reference_latency_ms
    if reference is None:
        budget, why = outer, "absolute bound; no champion timed in this run"
    else:
        relative = gates.max_latency_ratio * reference + gates.latency_slack_ms
        budget = min(relative, outer)
        why = (
            f"{gates.max_latency_ratio:.3g} x {evidence.reference_latency} {reference:.4g} ms "
            f"+ {gates.latency_slack_ms:.3g} ms, timed in this run"
        )
        why += (
            f"; absolute bound {outer:.4g} ms"
            if relative <= outer
            else f", capped by the absolute bound {outer:.4g} ms"
        )
    passed = value <= budget
    summary = f"{label} {'within' if passed else 'over'} budget {budget:.4g} ms ({why})"
    return GateResult(
        name="latency", kind="latency", value=value, threshold=budget, op="<=", passed=passed, summary=summary
    )


def data_validation_gate(validation: ValidationSummary) -> GateResult:
    """The snapshot the challenger trained on passed its data-quality checks."""
    failed = float(validation.failed)
    if validation.success:
        summary = f"data validation passed ({validation.checks} checks)"
    else:
        shown = "; ".join(validation.failures[:3]) or "no details recorded"
        summary = f"data validation failed: {validation.failed} of {validation.checks} checks ({shown})"
    return GateResult(
        name="data_validation", kind="data_validation", value=failed, threshold=0.0, op="<=",
        passed=validation.success, summary=summary,
    )  # fmt: skip


def budget_gate(kind: Literal["model_size", "latency"], label: str, value: float, budget: float) -> GateResult:
    """``value`` must stay within ``budget``."""
    passed = value <= budget
    summary = f"{label} {value:.4g} {'within' if passed else 'over'} budget {budget:.4g}"
    return GateResult(name=kind, kind=kind, value=value, threshold=budget, op="<=", passed=passed, summary=summary)


# The proper score a shift must earn (ADR 0032): it rewards predictions that match the outcomes, calibration included.
PROPER_SCORES = {"classification": "holdout_logloss", "regression": "holdout_rmse"}


def prediction_shift_gate(evidence: Evidence, max_psi: float, earned_improvement: float | None = None) -> GateResult:
    """PSI of the challenger's holdout predictions against the champion's stays below ``max_psi``, or is earned.

    A shift is earned when the challenger's proper score on the same fresh holdout (:data:`PROPER_SCORES`)
    is at least ``earned_improvement`` (a fraction) better than the champion's: the outcomes moved (a
    festival, new drivers) and the challenger follows them. None: a shift above ``max_psi`` always fails.
    """
    if evidence.champion is None:
        return _uncompared("prediction_psi", "prediction_shift", max_psi, "<=", evidence.champion_note)
    value = psi(evidence.champion.predictions, evidence.challenger.predictions)
    summary = f"prediction PSI vs champion v{evidence.champion.version} {value:.4g}"
    if value <= max_psi:
        passed, summary = True, f"{summary} (<= {max_psi})"
    else:
        earned = _earned_shift(evidence, earned_improvement)
        passed, summary = earned is not None, f"{summary} (> {max_psi}){earned or _unearned(evidence)}"
    return GateResult(
        name="prediction_psi", kind="prediction_shift", value=value, threshold=max_psi, op="<=", passed=passed,
        summary=summary,
    )  # fmt: skip


def _earned_shift(evidence: Evidence, earned_improvement: float | None) -> str | None:
    """'; earned: holdout_logloss 0.5614 against the champion's 0.6444 ...' or None (not earned)."""
    scores = _proper_scores(evidence)
    if earned_improvement is None or scores is None or not scores[2] > 0:
        return None
    metric, challenger, champion = scores
    better = (champion - challenger) / champion
    if not better >= earned_improvement:
        return None
    return (
        f"; earned: {metric} {challenger:.4g} against the champion's {champion:.4g} on the same holdout "
        f"({better:.1%} better, >= {earned_improvement * 100:g}%)"
    )


def _unearned(evidence: Evidence) -> str:
    scores = _proper_scores(evidence)
    if scores is None:
        return ""
    metric, challenger, champion = scores
    return f"; not earned: {metric} {challenger:.4g} against the champion's {champion:.4g}"


def _proper_scores(evidence: Evidence) -> tuple[str, float, float] | None:
    """The task's proper score, the challenger's and the champion's on the holdout (None: one is missing)."""
    metric = PROPER_SCORES.get(evidence.task)
    if metric is None or evidence.champion is None:
        return None
    challenger, champion = evidence.challenger.metrics.get(metric), evidence.champion.metrics.get(metric)
    return None if challenger is None or champion is None else (metric, challenger, champion)


def slice_gates(metric: str, direction: str, evidence: Evidence, max_relative: float) -> list[GateResult]:
    """One gate per slice of ``metric`` both models were scored on: relatively at most ``max_relative`` worse."""
    if evidence.champion is None:
        return [_uncompared(f"slice:{metric}__*", "slice", max_relative, "<=", evidence.champion_note)]
    prefix = f"{metric}__"
    results = []
    for key in sorted(k for k in evidence.challenger.metrics if k.startswith(prefix)):
        champion = evidence.champion.metrics.get(key)
        if champion is not None:
            results.append(_slice_gate(key, direction, evidence.challenger.metrics[key], champion, max_relative))
    return results


def _slice_gate(key: str, direction: str, challenger: float, champion: float, max_relative: float) -> GateResult:
    worse = -improvement(challenger, champion, direction) / max(abs(champion), 1e-12)
    passed = worse <= max_relative + 1e-12
    metric, _, slice_name = key.partition("__")
    summary = (
        f"{metric} on slice {slice_name} {challenger:.4g} vs champion {champion:.4g} "
        f"({abs(worse):.1%} {'worse' if worse > 0 else 'better'}, bound {max_relative:.0%} worse)"
    )
    return GateResult(
        name=f"slice:{key}", kind="slice", value=worse, threshold=max_relative, op="<=", passed=passed, summary=summary
    )


def _uncompared(name: str, kind: GateKind, threshold: float, op: str, note: str | None) -> GateResult:
    """Skipped without a champion; failed, with ``note``, when the champion exists but cannot be scored."""
    if note is None:
        return _skipped(name, kind, threshold, op)
    return GateResult(
        name=name, kind=kind, value=None, threshold=threshold, op=op, passed=False, summary=f"{name}: {note}"
    )


def _skipped(name: str, kind: GateKind, threshold: float, op: str) -> GateResult:
    return GateResult(
        name=name, kind=kind, value=None, threshold=threshold, op=op, passed=True, skipped=True,
        summary=f"{name} skipped: no champion yet (first model of the region)",
    )  # fmt: skip


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index of ``actual`` against ``expected`` on ``expected``'s quantile bins.

    Rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 large shift.
    """
    import numpy as np

    reference = np.asarray(expected, dtype=float)
    observed = np.asarray(actual, dtype=float)
    inner = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1))[1:-1])
    # Empty bins get a small floor, so one empty bin does not make the index infinite.
    floor = 1e-4
    ref_share = np.maximum(np.bincount(np.searchsorted(inner, reference, side="right"), minlength=len(inner) + 1), 0)
    obs_share = np.bincount(np.searchsorted(inner, observed, side="right"), minlength=len(inner) + 1)
    e = np.maximum(ref_share / max(len(reference), 1), floor)
    a = np.maximum(obs_share / max(len(observed), 1), floor)
    return float(np.sum((a - e) * np.log(a / e)))
