"""The training CLI's table: one row per (family, region) with its outcome, metrics and MLflow run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard.training.registry import KEY_METRICS

if TYPE_CHECKING:
    from rich.table import Table

    from modelyard.training.train import Status, TrainResult


def render_results(results: list[TrainResult]) -> Table:
    """A rich table: family, region, status, version or reason, key holdout metrics, run URL."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Training", show_lines=False)
    for column in ("family", "region", "status", "version / reason", "holdout metrics", "MLflow run"):
        table.add_column(column, overflow="fold")
    for result in results:
        table.add_row(
            result.family,
            result.region,
            _styled_status(result.status),
            f"{result.model_name} v{result.version}" if result.version else escape(result.reason or ""),
            _metric_summary(result),
            result.run_url or "",
        )
    return table


def _styled_status(status: Status) -> str:
    colour = {"registered": "green", "unchanged": "cyan", "skipped": "yellow", "failed": "red"}[status]
    return f"[{colour}]{status}[/{colour}]"


def _metric_summary(result: TrainResult) -> str:
    names = KEY_METRICS["classification"] + KEY_METRICS["regression"]
    shown = [name for name in names if name in result.metrics]
    return " ".join(f"{name.replace('holdout_', '')}={result.metrics[name]:.3f}" for name in shown)
