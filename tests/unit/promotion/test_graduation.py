"""The graduation gate (ADR 0015): a region's first own model must beat or match its pooled champion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelyard.core.config import GateDefaults, load_config
from modelyard.pipeline.snapshots import ValidationSummary
from modelyard.promotion import gates
from modelyard.promotion.gates import Evidence, ModelScore

REPO = Path(__file__).resolve().parents[3]
POOLED = "driver_acceptance-country-id"


def score(version: str, auc: float) -> ModelScore:
    return ModelScore(
        version=version, predictions=np.random.default_rng(0).beta(2, 3, 300), metrics={"holdout_auc": auc}
    )


def evidence(own_auc: float, pooled: ModelScore | None, note: str | None = None) -> Evidence:
    return Evidence(
        task="classification", challenger=score("1", own_auc), champion=None,
        validation=ValidationSummary(success=True, checks=3), size_mb=1.0, latency_p99_ms=1.0, holdout_rows=300,
        pooled_model=POOLED, pooled=pooled, pooled_note=note,
    )  # fmt: skip


@pytest.fixture
def defaults() -> GateDefaults:
    return load_config(REPO / "modelyard.yaml", environ={}).gates.defaults


def graduation(report: gates.GateReport) -> gates.GateResult:
    return next(r for r in report.results if r.kind == "graduation")


def test_an_own_model_that_beats_the_pooled_one_on_the_regions_holdout_takes_over(defaults: GateDefaults) -> None:
    report = gates.evaluate_gates(defaults, evidence(0.82, score("4", 0.78)))

    result = graduation(report)
    assert (result.name, result.passed, result.value) == ("graduation:holdout_auc", True, pytest.approx(0.04))
    assert f"vs pooled model {POOLED} v4 0.78 on the region's holdout" in result.summary
    assert report.passed


def test_an_own_model_that_loses_leaves_the_region_on_the_pooled_model_and_says_why(defaults: GateDefaults) -> None:
    report = gates.evaluate_gates(defaults, evidence(0.75, score("4", 0.78)))

    result = graduation(report)
    assert not result.passed
    assert result.summary.endswith(f"loses: the region stays on the pooled model {POOLED}")
    assert not report.passed
    assert [r.name for r in report.failures] == ["graduation:holdout_auc"]


def test_a_pooled_model_that_cannot_be_scored_fails_the_gate_with_the_reason(defaults: GateDefaults) -> None:
    result = graduation(gates.evaluate_gates(defaults, evidence(0.82, None, note="reads raw field 'x'")))
    assert not result.passed
    assert (
        result.summary == f"graduation:holdout_auc: reads raw field 'x'; the region stays on the pooled model {POOLED}"
    )


def test_no_graduation_gate_without_a_pooled_champion(defaults: GateDefaults) -> None:
    plain = Evidence(
        task="classification", challenger=score("1", 0.8), champion=None,
        validation=ValidationSummary(success=True, checks=3), size_mb=1.0, latency_p99_ms=1.0, holdout_rows=300,
    )  # fmt: skip
    assert not [r for r in gates.evaluate_gates(defaults, plain).results if r.kind == "graduation"]
