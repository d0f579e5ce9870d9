"""The training CLI's table shows what a user checks: the version, key metrics, the run link, skip reasons."""

from __future__ import annotations

from rich.console import Console

from modelyard.core.tracking import run_url
from modelyard.training.render import render_results
from modelyard.training.train import TrainResult


def test_render_results_shows_version_metrics_url_and_reasons() -> None:
    results = [
        TrainResult(
            "acceptance",
            "alpha",
            "registered",
            "acceptance-alpha",
            version="3",
            run_url=run_url("http://mlflow:5000/", "1", "abc"),
            metrics={"holdout_auc": 0.8123, "baseline_holdout_auc": 0.75},
        ),
        TrainResult("eta", "beta", "skipped", "eta-beta", reason="120 rows, fewer than data.min_rows=500"),
    ]
    console = Console(width=300, record=True)
    console.print(render_results(results))
    text = console.export_text()
    assert "acceptance-alpha v3" in text
    assert "auc=0.812" in text
    assert "baseline_auc=0.750" in text
    assert "http://mlflow:5000/#/experiments/1/runs/abc" in text
    assert "fewer than data.min_rows=500" in text
