"""The gate table says, for every row, which way its value is better: text, rich table and MLflow Markdown."""

from __future__ import annotations

from io import StringIO

import pytest
from mlflow.entities.model_registry import ModelVersion
from rich.console import Console

from modelyard.core.contracts.registry import CHAMPION_ALIAS
from modelyard.promotion.decision import Decision
from modelyard.promotion.gates import GateReport, GateResult
from modelyard.promotion.render import decision_markdown, render_gates

RESULTS = [
    GateResult(name="baseline:holdout_mae", kind="baseline", value=-0.1, threshold=0.04, op=">=", passed=False,
               summary="holdout_mae 2.1 vs baseline sklearn_ridge 2: 0.1 worse"),
    GateResult(name="latency", kind="latency", value=0.012, threshold=0.51, op="<=", passed=True,
               summary="single-row p99 latency (onnx) 0.012 ms within budget 0.51 ms"),
]  # fmt: skip


@pytest.mark.parametrize(("op", "better"), [(">=", "higher"), (">", "higher"), ("<=", "lower"), ("<", "lower")])
def test_the_better_direction_follows_the_comparison(op: str, better: str) -> None:
    result = GateResult(name="g", kind="absolute", value=1.0, threshold=1.0, op=op, passed=True, summary="")
    assert result.better == better


def test_the_text_table_has_a_better_column() -> None:
    lines = GateReport(results=RESULTS).as_text().splitlines()
    assert lines[0].split() == ["gate", "value", "better", "op", "threshold", "result"]
    assert lines[2].split() == ["baseline:holdout_mae", "-0.1", "higher", ">=", "0.04", "FAIL"]
    assert lines[3].split() == ["latency", "0.012", "lower", "<=", "0.51", "pass"]


def decision() -> Decision:
    version = ModelVersion("pickup_eta-jakarta", "3", creation_timestamp=0, run_id="run-1")
    report = GateReport(results=RESULTS)
    pair = ("pickup_eta", "jakarta")
    return Decision.evaluated(pair, version, report, "2", {CHAMPION_ALIAS: "2"}, "airflow:promotion/run-1")


def test_the_markdown_table_on_the_version_has_a_better_column() -> None:
    text = decision_markdown(decision())
    assert "| gate | value | better | op | threshold | result | summary |" in text
    assert "| baseline:holdout_mae | -0.1 | higher | >= | 0.04 | **FAIL** |" in text
    assert "| latency | 0.012 | lower | <= | 0.51 | pass |" in text


def test_the_cli_table_has_a_better_column() -> None:
    table = render_gates(decision())
    assert [column.header for column in table.columns][:5] == ["gate", "value", "better", "op", "threshold"]
    console = Console(file=StringIO(), width=200, color_system=None)
    console.print(table)
    rows = [line.split() for line in console.file.getvalue().splitlines()]  # type: ignore[attr-defined]
    assert any(row[1:5] == ["baseline:holdout_mae", "│", "-0.1", "│"] and "higher" in row for row in rows)
    assert any(row[1] == "latency" and "lower" in row for row in rows if len(row) > 1)
