"""The gates on numbers: thresholds, comparisons, slices, PSI, overrides and their error messages."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from modelyard.core import featurespec
from modelyard.core.config import ConfigError, GateDefaults, load_config
from modelyard.pipeline.snapshots import ValidationSummary
from modelyard.promotion import evidence as evidence_mod
from modelyard.promotion import gates
from modelyard.promotion.gates import Evidence, GateConfigError, ModelScore

REPO = Path(__file__).resolve().parents[3]
PASSED = ValidationSummary(success=True, checks=12)


def score(version: str, seed: int, **metrics: float) -> ModelScore:
    predictions = np.random.default_rng(seed).beta(2, 3, 500)
    return ModelScore(version=version, predictions=predictions, metrics=metrics)


def evidence(challenger: ModelScore, champion: ModelScore | None, **changes: object) -> Evidence:
    values: dict[str, object] = {
        "task": "classification", "challenger": challenger, "champion": champion, "validation": PASSED,
        "size_mb": 1.5, "latency_p99_ms": 2.0, "holdout_rows": 500,
    }  # fmt: skip
    values.update(changes)
    return Evidence(**values)  # type: ignore[arg-type]


@pytest.fixture
def defaults() -> GateDefaults:
    return load_config(REPO / "modelyard.yaml", environ={}).gates.defaults


def by_name(report: gates.GateReport) -> dict[str, gates.GateResult]:
    return {r.name: r for r in report.results}


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, 5000)
    assert gates.psi(reference, rng.normal(0, 1, 5000)) < 0.02
    assert gates.psi(reference, rng.normal(1.0, 1, 5000)) > 0.25


def test_psi_of_a_constant_reference_is_finite() -> None:
    assert np.isfinite(gates.psi(np.full(100, 0.3), np.linspace(0, 1, 100)))


@pytest.mark.parametrize(("op", "value", "passed"), [(">=", 0.70, True), (">=", 0.69, False), ("<=", 5.0, True)])
def test_absolute_gate_compares_with_the_declared_operator(op: str, value: float, passed: bool) -> None:
    result = gates.absolute_gate("holdout_auc", op, 0.70 if op == ">=" else 6.0, {"holdout_auc": value})
    assert result.passed is passed
    assert result.value == value
    assert ("meets" if passed else "misses") in result.summary


def test_absolute_gate_fails_when_the_metric_could_not_be_computed() -> None:
    result = gates.absolute_gate("holdout_auc", ">=", 0.7, {})
    assert not result.passed
    assert "could not be computed" in result.summary


def test_versus_champion_allows_the_declared_regression_and_no_more() -> None:
    champion = score("1", 1, holdout_auc=0.800)
    within = evidence(score("2", 2, holdout_auc=0.796), champion)
    beyond = evidence(score("2", 2, holdout_auc=0.790), champion)
    assert gates.versus_champion_gate("holdout_auc", "higher", 0.005, 0.0, within).passed
    failed = gates.versus_champion_gate("holdout_auc", "higher", 0.005, 0.0, beyond)
    assert not failed.passed
    assert failed.value == pytest.approx(-0.010)
    assert "worse" in failed.summary


def test_versus_champion_lower_is_better_and_min_improvement() -> None:
    champion = score("1", 1, holdout_mae=4.0)
    better = evidence(score("2", 2, holdout_mae=3.9), champion, task="regression")
    assert gates.versus_champion_gate("holdout_mae", "lower", 0.0, 0.05, better).passed
    assert not gates.versus_champion_gate("holdout_mae", "lower", 0.0, 0.2, better).passed


def test_slice_gate_bounds_the_relative_regression_of_each_slice() -> None:
    champion = score("1", 1, holdout_auc=0.8, holdout_auc__hour_night=0.80, holdout_auc__new_drivers=0.70)
    challenger = score("2", 2, holdout_auc=0.8, holdout_auc__hour_night=0.78, holdout_auc__new_drivers=0.60)
    results = {r.name: r for r in gates.slice_gates("holdout_auc", "higher", evidence(challenger, champion), 0.05)}
    assert results["slice:holdout_auc__hour_night"].passed  # 2.5% worse
    assert not results["slice:holdout_auc__new_drivers"].passed  # 14% worse
    assert "new_drivers" in results["slice:holdout_auc__new_drivers"].summary


def test_without_champion_the_comparative_gates_are_skipped_and_absolute_ones_decide(defaults: GateDefaults) -> None:
    report = gates.evaluate_gates(defaults, evidence(score("1", 1, holdout_auc=0.75), None))
    results = by_name(report)
    assert report.passed
    assert results["versus_champion:holdout_auc"].skipped
    assert results["prediction_psi"].skipped
    assert results["absolute:holdout_auc"].passed
    assert not results["absolute:holdout_auc"].skipped
    assert "skipped" in report.summary()

    poor = gates.evaluate_gates(defaults, evidence(score("1", 1, holdout_auc=0.6), None))
    assert not poor.passed
    assert [r.name for r in poor.failures] == ["absolute:holdout_auc"]


def test_every_failing_gate_is_named_in_the_summary_and_the_table(defaults: GateDefaults) -> None:
    champion = score("1", 1, holdout_auc=0.82)
    challenger = ModelScore("2", champion.predictions + 0.4, {"holdout_auc": 0.71})
    broken_data = ValidationSummary(success=False, checks=12, failed=1, failures=["column 'driver_rating' has 3 nulls"])
    over_budget = {"size_mb": defaults.max_model_size_mb + 1, "latency_p99_ms": defaults.max_p99_latency_ms + 1}
    report = gates.evaluate_gates(defaults, evidence(challenger, champion, validation=broken_data, **over_budget))
    failed = {r.name for r in report.failures}
    assert failed == {
        "versus_champion:holdout_auc", "data_validation", "model_size", "latency", "prediction_psi",
    }  # fmt: skip
    summary = report.summary()
    assert summary.startswith("5 of")
    assert "driver_rating" in summary
    assert f"over budget {defaults.max_model_size_mb:.4g}" in summary
    table = report.as_text()
    assert table.count("FAIL") == 5
    assert "absolute:holdout_auc" in table


def write_overrides(folder: Path, overrides: dict[str, Any]) -> Path:
    raw = yaml.safe_load((REPO / "modelyard.yaml").read_text())
    raw["gates"]["region_overrides"] = overrides
    path = folder / "modelyard.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_overrides_apply_family_then_region(tmp_path: Path) -> None:
    path = write_overrides(
        tmp_path,
        {
            "driver_acceptance": {
                "max_psi": 0.4,
                "absolute": [{"metric": "holdout_auc", "op": ">=", "threshold": 0.65}],
            },
            "driver_acceptance/bangkok": {"max_psi": 0.5},
        },
    )
    config = load_config(path, environ={})
    jakarta = gates.gates_for(config, "driver_acceptance", "jakarta")
    bangkok = gates.gates_for(config, "driver_acceptance", "bangkok")
    eta = gates.gates_for(config, "pickup_eta", "bangkok")
    assert (jakarta.max_psi, bangkok.max_psi, eta.max_psi) == (0.4, 0.5, 0.25)
    assert bangkok.classification.absolute[0].threshold == 0.65
    assert bangkok.classification.versus_champion == config.gates.defaults.classification.versus_champion
    assert eta.regression == config.gates.defaults.regression


def test_an_override_keyed_by_a_group_sets_the_gates_of_its_pooled_model_only(tmp_path: Path) -> None:
    path = write_overrides(tmp_path, {"driver_acceptance/country-id": {"max_psi": 0.6, "max_p99_latency_ms": 40}})
    config = load_config(path, environ={})
    pooled = gates.gates_for(config, "driver_acceptance", "country-id")
    assert (pooled.max_psi, pooled.max_p99_latency_ms) == (0.6, 40)
    assert gates.gates_for(config, "driver_acceptance", "jakarta").max_psi == 0.25
    assert gates.gates_for(config, "driver_acceptance", "country-vn").max_psi == 0.25


def test_an_override_of_a_declared_group_is_accepted(tmp_path: Path) -> None:
    raw = yaml.safe_load(write_overrides(tmp_path, {"pickup_eta/java": {"max_psi": 0.3}}).read_text())
    raw["groups"] = {"java": ["jakarta", "surabaya"]}
    (tmp_path / "modelyard.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    config = load_config(tmp_path / "modelyard.yaml", environ={})
    assert gates.gates_for(config, "pickup_eta", "java").max_psi == 0.3


def test_an_override_of_an_unknown_group_names_the_key_regions_and_groups(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write_overrides(tmp_path, {"driver_acceptance/country-xx": {"max_psi": 0.4}}), environ={})
    message = str(caught.value)
    assert "gates.region_overrides 'driver_acceptance/country-xx'" in message
    assert "'<family>/<group>'" in message
    assert "jakarta, singapore, surabaya)" in message
    assert "region group (country-id, country-vn)" in message


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"driver_acceptance/atlantis": {"max_psi": 0.4}}, "'driver_acceptance/atlantis'"),
        ({"driver_acceptance": {"max_pis": 0.4}}, r"unknown keys \['max_pis'\]"),
    ],
)
def test_config_rejects_bad_gate_overrides_naming_the_key(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write_overrides(tmp_path, overrides), environ={})


def test_an_invalid_override_value_names_the_pair(tmp_path: Path) -> None:
    config = load_config(write_overrides(tmp_path, {"pickup_eta": {"max_psi": -1}}), environ={})
    with pytest.raises(GateConfigError, match="pickup_eta/jakarta"):
        gates.gates_for(config, "pickup_eta", "jakarta")


def test_a_gate_on_an_unknown_metric_is_a_config_error(defaults: GateDefaults) -> None:
    broken = defaults.model_copy(
        update={"classification": defaults.classification.model_copy(update={"absolute": [
            defaults.classification.absolute[0].model_copy(update={"metric": "holdout_acu"})]})}
    )  # fmt: skip
    with pytest.raises(GateConfigError, match=r"classification.absolute\[0\].metric 'holdout_acu'"):
        gates.evaluate_gates(broken, evidence(score("1", 1, holdout_auc=0.8), None))


def test_p99_latency_times_single_row_predictions() -> None:
    from sklearn.linear_model import LogisticRegression

    x = pd.DataFrame({"a": np.linspace(0, 1, 50), "b": np.linspace(1, 0, 50)})
    model = LogisticRegression().fit(x, (x.a > 0.5).astype(int))
    latency = evidence_mod.p99_latency_ms(model, "classification", x, calls=50)
    assert 0 < latency < 1000


class _TimedModel:
    """A classifier whose single-row call waits (off-CPU) or works (on-CPU) for ``seconds``."""

    def __init__(self, seconds: float, *, on_cpu: bool) -> None:
        self.seconds, self.on_cpu = seconds, on_cpu

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        if self.on_cpu:
            end = time.thread_time() + self.seconds
            while time.thread_time() < end:
                pass
        else:
            time.sleep(self.seconds)
        return np.full((len(x), 2), 0.5)


ROWS = pd.DataFrame({"a": np.linspace(0, 1, 50), "b": np.linspace(1, 0, 50)})


def test_latency_does_not_charge_the_model_for_time_it_waits_for_a_core() -> None:
    # 20 ms off-CPU per call is what a preempted call on a busy machine looks like from the wall clock.
    waiting = evidence_mod.p99_latency_ms(_TimedModel(0.02, on_cpu=False), "classification", ROWS, calls=20)
    assert waiting < 10
    assert gates.budget_gate("latency", "p99", waiting, 10).passed


def test_a_model_that_works_longer_than_the_budget_is_rejected() -> None:
    working = evidence_mod.p99_latency_ms(_TimedModel(0.005, on_cpu=True), "classification", ROWS, calls=20)
    assert working >= 5
    assert not gates.budget_gate("latency", "p99", working, 2).passed


def test_a_5000_tree_model_is_rejected_against_a_tiny_budget() -> None:
    import xgboost as xgb

    model = xgb.XGBClassifier(n_estimators=5000, max_depth=6, learning_rate=0.01, n_jobs=1)
    model.fit(ROWS, (ROWS.a > 0.5).astype(int))
    latency = evidence_mod.p99_latency_ms(model, "classification", ROWS, calls=20)
    assert not gates.budget_gate("latency", "p99", latency, 0.5).passed


def test_a_fast_model_passes_its_budget_on_a_busy_machine(busy_machine: None, defaults: GateDefaults) -> None:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(ROWS, (ROWS.a > 0.5).astype(int))
    latency = evidence_mod.p99_latency_ms(model, "classification", ROWS, calls=60)
    assert gates.budget_gate("latency", "p99", latency, defaults.max_p99_latency_ms).passed


# ---------------------------------------------------------------- a version owns its spec (issue 21)


def fitted(features: tuple[featurespec.FeatureDef, ...]) -> featurespec.FittedSpec:
    spec = featurespec.FeatureSpec(
        family="f", time_column="pickup_time",
        columns={"pickup_time": "timestamp", "distance_km": "float", "surge": "float"}, features=features,
    )  # fmt: skip
    return featurespec.FittedSpec(spec, featurespec.Calendar("r", "Asia/Jakarta"), {}, {})


def snapshot_rows() -> pd.DataFrame:
    times = pd.to_datetime(["2026-01-05T01:30:00Z", "2026-06-05T17:00:00Z"], utc=True)
    return pd.DataFrame({"event_time": times, "raw.distance_km": [1.5, 3.0], "month": [99.0, 99.0]})


def test_each_version_featurises_the_same_rows_with_its_own_spec() -> None:
    old = evidence_mod.LoadedVersion("1", None, 0.1, fitted((featurespec.FeatureDef("month", "month"),)), ["month"])
    new = evidence_mod.LoadedVersion(
        "2", None, 0.1, fitted((featurespec.FeatureDef("distance_km"), featurespec.FeatureDef("hour", "hour"))), []
    )
    rows = snapshot_rows()
    # The champion's month comes from the time in the region's zone, not from a column of today's snapshot.
    assert evidence_mod.version_features(old, rows)["month"].tolist() == [1.0, 6.0]
    x = evidence_mod.version_features(new, rows)
    assert list(x.columns) == ["distance_km", "hour"]
    assert x["distance_km"].tolist() == [1.5, 3.0]
    assert x["hour"].tolist() == [8.0, 0.0]  # 01:30 UTC is 08:30 in Jakarta; 17:00 UTC is midnight


def test_a_version_reading_a_field_the_rows_lack_is_named() -> None:
    surge = evidence_mod.LoadedVersion("1", None, 0.1, fitted((featurespec.FeatureDef("surge"),)), ["surge"])
    with pytest.raises(gates.GateInputError, match=r"v1's feature spec reads raw field.*surge"):
        evidence_mod.version_features(surge, snapshot_rows())


def test_a_champion_that_cannot_be_scored_fails_the_comparative_gates_with_the_reason(
    defaults: GateDefaults,
) -> None:
    note = "champion v1 cannot be scored on the challenger's holdout: v1 reads raw field surge"
    report = gates.evaluate_gates(
        defaults, evidence(score("2", 2, holdout_auc=0.9, holdout_log_loss=0.3), None, champion_note=note)
    )
    failed = {r.name for r in report.failures}
    assert "prediction_psi" in failed
    assert any(name.startswith("versus_champion:") for name in failed)
    assert note in report.summary()


def _shifted(task: str, metric: str, champion_value: float, challenger_value: float) -> Evidence:
    # The festival case: the outcomes moved, the challenger's predictions follow them (PSI far above 0.25).
    champion = score("1", 1, **{metric: champion_value})
    challenger = ModelScore("2", champion.predictions * 0.6, {metric: challenger_value})
    return evidence(challenger, champion, task=task)


def test_a_prediction_shift_the_fresh_holdout_earns_passes_and_says_why() -> None:
    # Measured on the demo's festival act: v2 0.5614 against the stale champion's 0.6444 logloss, PSI 0.93.
    result = gates.prediction_shift_gate(_shifted("classification", "holdout_logloss", 0.6444, 0.5614), 0.25, 0.05)
    assert result.passed
    assert result.value is not None
    assert result.value > 0.25
    earned = "(> 0.25); earned: holdout_logloss 0.5614 against the champion's 0.6444 on the same holdout"
    assert earned in result.summary
    assert "12.9% better, >= 5%" in result.summary
    assert result.past_its_bound
    # The decision's summary (the version's first line in MLflow, the promotion.summary tag) says it first.
    report = gates.GateReport(results=[gates.absolute_gate("holdout_auc", ">=", 0.7, {"holdout_auc": 0.8}), result])
    assert report.summary() == f"all 2 gates passed; {result.summary}"
    assert not report.results[0].past_its_bound


@pytest.mark.parametrize(
    ("task", "metric", "champion", "challenger", "earned", "passed"),
    [
        ("classification", "holdout_logloss", 0.6444, 0.62, 0.05, False),  # 3.8% better: the shift is not earned
        ("classification", "holdout_logloss", 0.6444, 0.5614, None, False),  # earning switched off
        ("classification", "holdout_auc", 0.70, 0.80, 0.05, False),  # no proper score to earn it with
        ("regression", "holdout_rmse", 2.462, 1.8231, 0.05, True),  # the festival's pickup_eta: rmse
        ("regression", "holdout_rmse", 2.462, 2.40, 0.05, False),
    ],
)
def test_a_shift_is_earned_only_by_the_tasks_proper_score_by_the_declared_margin(
    task: str, metric: str, champion: float, challenger: float, earned: float | None, passed: bool
) -> None:
    result = gates.prediction_shift_gate(_shifted(task, metric, champion, challenger), 0.25, earned)
    assert result.passed is passed, result.summary
    assert ("; earned:" in result.summary) is passed
    assert ("; not earned:" in result.summary) is (not passed and metric != "holdout_auc")


def test_earning_a_shift_can_be_switched_off_per_family(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "modelyard.yaml").read_text())
    data["gates"]["region_overrides"] = {"driver_acceptance": {"psi_earned_improvement": None}}
    path = tmp_path / "modelyard.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path, environ={})
    assert config.gates.defaults.psi_earned_improvement == 0.05
    assert gates.gates_for(config, "driver_acceptance", "jakarta").psi_earned_improvement is None
    assert gates.gates_for(config, "pickup_eta", "jakarta").psi_earned_improvement == 0.05
