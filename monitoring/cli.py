"""``modelyard monitor`` measures drift from the command line, as the monitoring DAG does (composed into the root app).

Every served version of the selected pairs that published samples inside the window is
measured against its training window and recorded in MLflow (a monitoring run, ``monitoring.*``
tags on the version), exactly as the DAG's ``measure`` task does. Announcing drift Assets (and
so retraining) stays with the DAG: the CLI measures and records.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import typer

from modelyard.core.cli import ConfigOption, FamiliesOption, RegionsOption, TrackingOption

if TYPE_CHECKING:
    from rich.table import Table

    from modelyard.monitoring.measure import DriftReport, ServedVersion

app = typer.Typer(no_args_is_help=True)

WindowOption = Annotated[
    int | None,
    typer.Option(
        "--window-hours",
        min=1,
        max=24 * 90,
        help="How far back the samples are read (default: monitoring.window_hours).",
    ),
]


@app.command()
def monitor(
    family: FamiliesOption = None,
    region: RegionsOption = None,
    window_hours: WindowOption = None,
    config: ConfigOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Measure the drift of every served version with samples in the window and record it in MLflow.

    Exit 1 when a version could not be measured (the others still are); drift itself is a verdict, not a failure.
    """
    from rich.console import Console

    from modelyard.core.cli import exits_on_expected_errors, print_error
    from modelyard.core.config import load_config
    from modelyard.monitoring.measure import MonitoringError, measure_pair, served_versions

    console = Console()
    with exits_on_expected_errors():
        loaded = load_config(config)
        pairs = loaded.pairs(family, region)
        now = dt.datetime.now(dt.UTC)
        since = now - dt.timedelta(hours=window_hours or loaded.monitoring.window_hours)
        found = served_versions(loaded.storage.samples_dir, pairs, since)
        if not found:
            console.print(f"no served version published samples since {since:%Y-%m-%d %H:%M} UTC", highlight=False)
            return
        reports: list[DriftReport] = []
        failures: list[tuple[ServedVersion, str]] = []
        for served in found:
            try:
                reports.append(
                    measure_pair(loaded, served, tracking_uri=tracking_uri, window_hours=window_hours, now=now)
                )
            except MonitoringError as exc:
                failures.append((served, str(exc)))
    console.print(render_reports(reports))
    for report in reports:
        console.print(f"{report.family}/{report.region} v{report.version}: {report.run_url}", highlight=False)
    for served, message in failures:
        print_error(f"{served.family}/{served.region} v{served.version}: {message}")
    if failures:
        raise typer.Exit(1)


def render_reports(reports: list[DriftReport]) -> Table:
    """A rich table, one row per measured version: verdict, sampled rows, error rate and what drifted."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Drift")
    for column in ("family", "region", "version", "verdict", "rows", "error rate"):
        table.add_column(column, no_wrap=True)
    table.add_column("summary", overflow="fold")
    for report in reports:
        colour = {"drifted": "red", "stable": "green"}.get(report.verdict, "yellow")
        rate = report.samples.error_rate
        table.add_row(
            report.family,
            report.region,
            f"v{report.version}",
            f"[{colour}]{report.verdict}[/{colour}]",
            str(report.samples.rows),
            "-" if rate is None else f"{rate:.2%}",
            escape(report.summary),
        )
    return table
