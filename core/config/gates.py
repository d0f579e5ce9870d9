"""Gates: the declared checks a challenger must pass, per task, with per-family and per-pair overrides."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Literal

from pydantic import Field, model_validator

from modelyard.core.config.base import Section


class AbsoluteGate(Section):
    """A metric of the challenger on the holdout against a fixed threshold."""

    metric: str
    op: Literal[">=", "<=", ">", "<"]
    threshold: float


class VersusChampionGate(Section):
    """Challenger vs champion on the same holdout: allow at most ``max_regression`` (absolute,
    in the metric's unit) or demand at least ``min_improvement``; set one of the two."""

    metric: str
    direction: Literal["higher", "lower"]
    max_regression: float = Field(0.0, ge=0)
    min_improvement: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _one_bound(self) -> VersusChampionGate:
        if self.max_regression and self.min_improvement:
            raise ValueError(f"gate on '{self.metric}': set max_regression or min_improvement, not both")
        return self


class BaselineGate(Section):
    """The challenger must beat its own baseline (``families[].baseline``, fitted and scored on the same
    holdout at training) by a margin: ``min_improvement`` in the metric's unit, or
    ``min_relative_improvement`` as a fraction of the baseline's value; set one of the two.

    Which way is better comes from the metric (``holdout_auc`` higher, ``holdout_mae`` lower).
    """

    metric: str
    min_improvement: float = Field(0.0, ge=0)
    min_relative_improvement: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _one_margin(self) -> BaselineGate:
        if self.min_improvement and self.min_relative_improvement:
            raise ValueError(
                f"baseline gate on '{self.metric}': set min_improvement or min_relative_improvement, not both"
            )
        return self


# On unless a task section says ``baseline: []``: half a point of AUC, 2% of the baseline's MAE.
DEFAULT_BASELINE_GATES: dict[str, list[dict[str, Any]]] = {
    "classification": [{"metric": "holdout_auc", "min_improvement": 0.005}],
    "regression": [{"metric": "holdout_mae", "min_relative_improvement": 0.02}],
}


class TaskGates(Section):
    """The gates of one task (classification or regression)."""

    absolute: list[AbsoluteGate] = []
    versus_champion: list[VersusChampionGate] = []
    baseline: list[BaselineGate] = []


class GateDefaults(Section):
    """The gates every pair gets: per task, plus model size, latency, drift and slice regression."""

    classification: TaskGates = TaskGates.model_validate({"baseline": DEFAULT_BASELINE_GATES["classification"]})
    regression: TaskGates = TaskGates.model_validate({"baseline": DEFAULT_BASELINE_GATES["regression"]})
    max_model_size_mb: float = Field(50, gt=0)
    # The latency gate (ADR 0012): the single-row p99 of the engine that will serve (ONNX or native)
    # must stay within max_latency_ratio x the champion's, timed in the same run, plus latency_slack_ms;
    # and never above max_p99_latency_ms (the only bound for a pair's first model).
    max_p99_latency_ms: float = Field(20, gt=0)
    max_latency_ratio: float = Field(2.0, ge=1)
    latency_slack_ms: float = Field(0.5, ge=0)
    max_psi: float = Field(0.25, gt=0)
    # A shift above max_psi the fresh holdout earns (ADR 0032): it still passes when the challenger's proper
    # score there (logloss, rmse) is at least this fraction better than the champion's; null: never.
    psi_earned_improvement: float | None = Field(0.05, ge=0)
    # Relative: a slice metric may be at most this fraction worse than the champion's on that slice.
    max_slice_regression: float = Field(0.05, ge=0)
    latency_calls: int = Field(300, ge=20, le=100_000)

    @model_validator(mode="before")
    @classmethod
    def _default_baselines(cls, data: Any) -> Any:
        """A task section that does not mention ``baseline`` gets the default baseline gate."""
        if not isinstance(data, dict):
            return data
        filled = dict(data)
        for task, gates in DEFAULT_BASELINE_GATES.items():
            section = filled.get(task)
            if isinstance(section, dict) and "baseline" not in section:
                filled[task] = {**section, "baseline": gates}
        return filled


class GateSettings(Section):
    """The default gates and their overrides per family or pair."""

    defaults: GateDefaults = GateDefaults()
    # "<family>", "<family>/<region>" or "<family>/<group>" (a region group's pooled model, ADR 0015)
    # -> partial GateDefaults fields, applied on top of the defaults in that order (family, then pair).
    region_overrides: dict[str, dict[str, Any]] = {}


# Besides GateDefaults' own fields, an override may give these at its top level (for the family's task).
GATE_TASK_KEYS = ("absolute", "versus_champion", "baseline")


def check_gate_overrides(
    overrides: dict[str, dict[str, Any]], families: list[str], regions: set[str], groups: Collection[str] = ()
) -> None:
    """Refuse an override keyed by an unknown family, region or group, or that sets a key no gate has.

    A key is ``<family>``, ``<family>/<region>`` or ``<family>/<group>``: a group's key sets the gates
    of that group's pooled model (ADR 0015); a group's name is never a region's.

    Raises:
        ValueError: names the override key, and the valid families, regions, groups or keys.
    """
    allowed = set(GateDefaults.model_fields) | set(GATE_TASK_KEYS)
    for key, override in overrides.items():
        family, _, target = key.partition("/")
        if family not in families or (target and target not in regions and target not in groups):
            raise ValueError(
                f"gates.region_overrides '{key}': expected '<family>', '<family>/<region>' or '<family>/<group>' "
                f"with a configured family ({', '.join(families)}), region ({', '.join(sorted(regions))}) "
                f"or region group ({', '.join(groups) or 'none'})"
            )
        unknown = set(override) - allowed
        if unknown:
            raise ValueError(
                f"gates.region_overrides '{key}': unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})"
            )
