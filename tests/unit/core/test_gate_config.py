"""Gate config: the baseline gate is on unless a task turns it off; the latency budget's keys and defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from modelyard.core.config import ConfigError, GateDefaults, load_config
from modelyard.core.config.gates import BaselineGate

REPO = Path(__file__).resolve().parents[3]


def with_gates(folder: Path, change: dict[str, Any]) -> Path:
    raw = yaml.safe_load((REPO / "modelyard.yaml").read_text())
    raw["gates"] = change
    path = folder / "modelyard.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_the_baseline_gate_is_on_by_default() -> None:
    defaults = GateDefaults()
    assert defaults.classification.baseline == [BaselineGate(metric="holdout_auc", min_improvement=0.005)]
    assert defaults.regression.baseline == [BaselineGate(metric="holdout_mae", min_relative_improvement=0.02)]


def test_a_task_section_that_does_not_mention_the_baseline_keeps_it(tmp_path: Path) -> None:
    absolute = [{"metric": "holdout_mae", "op": "<=", "threshold": 9.0}]
    config = load_config(with_gates(tmp_path, {"defaults": {"regression": {"absolute": absolute}}}), environ={})
    regression = config.gates.defaults.regression
    assert regression.absolute[0].threshold == 9.0
    assert regression.baseline == GateDefaults().regression.baseline


def test_an_empty_baseline_list_turns_it_off(tmp_path: Path) -> None:
    config = load_config(with_gates(tmp_path, {"defaults": {"classification": {"baseline": []}}}), environ={})
    assert config.gates.defaults.classification.baseline == []
    assert config.gates.defaults.regression.baseline  # the other task keeps its own


def test_a_baseline_gate_takes_one_margin() -> None:
    with pytest.raises(ValidationError, match="set min_improvement or min_relative_improvement, not both"):
        BaselineGate(metric="holdout_mae", min_improvement=0.1, min_relative_improvement=0.02)


def test_the_latency_budget_defaults() -> None:
    defaults = GateDefaults()
    assert (defaults.max_p99_latency_ms, defaults.max_latency_ratio, defaults.latency_slack_ms) == (20, 2.0, 0.5)


def test_a_latency_ratio_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_latency_ratio"):
        load_config(with_gates(tmp_path, {"defaults": {"max_latency_ratio": 0.5}}), environ={})
