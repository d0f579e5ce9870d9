"""The baseline gate: a model must beat the baseline fitted beside it by a declared margin (issue 21)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from modelyard.core.config import GateDefaults, load_config
from modelyard.core.config.gates import BaselineGate
from modelyard.pipeline.snapshots import ValidationSummary
from modelyard.promotion import gates
from modelyard.promotion.evidence import run_baseline
from modelyard.promotion.gates import Evidence, ModelScore

REPO = Path(__file__).resolve().parents[3]


def regression(mae: float, baseline_mae: float | None, algorithm: str | None = "sklearn_ridge") -> Evidence:
    metrics = {} if baseline_mae is None else {"holdout_mae": baseline_mae}
    return Evidence(
        task="regression",
        challenger=ModelScore("2", np.linspace(0, 1, 50), {"holdout_mae": mae}),
        champion=None,
        validation=ValidationSummary(success=True, checks=3),
        size_mb=1.0,
        latency_p99_ms=1.0,
        holdout_rows=50,
        baseline_algorithm=algorithm,
        baseline_metrics=metrics,
    )


@pytest.fixture
def defaults() -> GateDefaults:
    return load_config(REPO / "modelyard.yaml", environ={}).gates.defaults


def test_a_regressor_worse_than_its_baseline_is_rejected_by_the_demo_gates(defaults: GateDefaults) -> None:
    report = gates.evaluate_gates(defaults, regression(mae=2.10, baseline_mae=2.00))
    failed = {r.name: r for r in report.failures}
    assert set(failed) == {"baseline:holdout_mae"}
    summary = failed["baseline:holdout_mae"].summary
    # names the metric, the model's value, the baseline (algorithm and value) and the margin
    assert "holdout_mae 2.1 vs baseline sklearn_ridge 2: 0.1 worse" in summary
    assert "lower is better" in summary
    assert "needs a margin >= 0.04 = 2% of the baseline" in summary
    assert report.summary() == f"1 of 5 gates failed: {summary}"


def test_the_relative_margin_is_a_fraction_of_the_baseline() -> None:
    gate = BaselineGate(metric="holdout_mae", min_relative_improvement=0.02)
    just_enough = gates.baseline_gate(gate, regression(mae=1.96, baseline_mae=2.00))
    too_little = gates.baseline_gate(gate, regression(mae=1.97, baseline_mae=2.00))
    assert just_enough.passed
    assert just_enough.value == pytest.approx(0.04)
    assert just_enough.threshold == pytest.approx(0.04)
    assert not too_little.passed
    assert "0.03 better" in too_little.summary


def test_higher_is_better_metrics_need_an_absolute_margin_above_the_baseline() -> None:
    gate = BaselineGate(metric="holdout_auc", min_improvement=0.005)

    def classifier(auc: float) -> Evidence:
        challenger = ModelScore("2", np.linspace(0, 1, 50), {"holdout_auc": auc})
        base = regression(0.0, None)
        return replace(base, task="classification", challenger=challenger, baseline_metrics={"holdout_auc": 0.80})

    under_the_margin = gates.baseline_gate(gate, classifier(0.804))
    over_it = gates.baseline_gate(gate, classifier(0.806))
    assert not under_the_margin.passed
    assert "higher is better" in under_the_margin.summary
    assert over_it.passed
    assert over_it.better == "higher"


def test_a_version_trained_without_a_baseline_skips_the_gate(defaults: GateDefaults) -> None:
    report = gates.evaluate_gates(defaults, regression(mae=2.10, baseline_mae=None, algorithm=None))
    result = {r.name: r for r in report.results}["baseline:holdout_mae"]
    assert result.skipped
    assert result.passed
    assert "families[].baseline" in result.summary


def test_a_baseline_without_its_metric_fails_and_says_to_retrain() -> None:
    gate = BaselineGate(metric="holdout_mae", min_relative_improvement=0.02)
    result = gates.baseline_gate(gate, regression(mae=1.0, baseline_mae=None))
    assert not result.passed
    assert "retrain" in result.summary


def test_a_baseline_gate_on_an_unknown_metric_is_a_config_error(defaults: GateDefaults) -> None:
    section = defaults.regression.model_copy(update={"baseline": [BaselineGate(metric="holdout_maee")]})
    broken = defaults.model_copy(update={"regression": section})
    with pytest.raises(gates.GateConfigError, match=r"regression.baseline\[0\].metric 'holdout_maee'"):
        gates.evaluate_gates(broken, regression(mae=1.0, baseline_mae=2.0))


def test_the_baseline_comes_from_the_metrics_the_run_logged(tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("e", artifact_location=str(tmp_path / "artifacts"))
    with_baseline = client.create_run(experiment).info.run_id
    client.log_param(with_baseline, "baseline_algorithm", "sklearn_ridge")
    client.log_metric(with_baseline, "baseline_holdout_mae", 1.25)
    client.log_metric(with_baseline, "holdout_mae", 1.0)
    without = client.create_run(experiment).info.run_id
    client.log_param(without, "baseline_algorithm", "none")

    def version(run_id: str) -> ModelVersion:
        return ModelVersion("m", "1", creation_timestamp=0, run_id=run_id)

    assert run_baseline(client, version(with_baseline)) == ("sklearn_ridge", {"holdout_mae": 1.25})
    assert run_baseline(client, version(without)) == (None, {})


def test_an_override_may_turn_the_baseline_off_for_one_family(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "modelyard.yaml").read_text())
    raw["gates"]["region_overrides"] = {"pickup_eta/jakarta": {"baseline": []}}
    path = tmp_path / "modelyard.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    config = load_config(path, environ={})
    assert gates.gates_for(config, "pickup_eta", "jakarta").regression.baseline == []
    assert gates.gates_for(config, "pickup_eta", "hanoi").regression.baseline
