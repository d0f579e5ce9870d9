"""``modelyard monitor`` measures drift from the command line, as the monitoring DAG does; ``modelyard prune``
removes old snapshots and prediction logs, as the housekeeping DAG does. Both are composed into the root app.

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

    from modelyard.monitoring import retention
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


@app.command()
def prune(
    family: FamiliesOption = None,
    region: RegionsOption = None,
    snapshots: Annotated[
        int | None,
        typer.Option("--snapshots", min=1, help="Newest snapshots kept per pair (default: retention.snapshots)."),
    ] = None,
    sample_days: Annotated[
        int | None,
        typer.Option("--sample-days", min=1, help="Prediction logs kept, in days (default: retention.sample_days)."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Remove without asking (for scripts).")] = False,
    show_kept: Annotated[bool, typer.Option("--kept", help="Also list each kept snapshot and why it stays.")] = False,
    config: ConfigOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Remove old feature snapshots and prediction logs, keeping what is still needed (ADR 0035).

    Kept: the snapshot LATEST names, the newest --snapshots, and every snapshot a registered model
    version was trained on (or pooled); prediction-log files, and the data stage's outcome files,
    newer than --sample-days. Model versions are never removed (delete one in the MLflow UI and its
    snapshot goes at the next prune).
    Exit 1 when something could not be removed (the rest is), 3 when MLflow does not answer.
    """
    import sys

    from rich.console import Console

    from modelyard.core.cli import exits_on_expected_errors, print_error
    from modelyard.core.config import load_config
    from modelyard.monitoring import retention
    from modelyard.promotion.aliases import open_client

    console = Console()
    with exits_on_expected_errors():
        loaded = load_config(config)
        kept = retention.settings(loaded, snapshots, sample_days, option="--sample-days")
        chosen = retention.folders(loaded, family, region)
        needed = retention.trained_on(open_client(loaded, tracking_uri), chosen)
        plan = retention.plan_prune(loaded, chosen, needed, kept)
    if show_kept and plan.kept:
        console.print(render_kept(plan))
    if not plan.removals:
        console.print(f"nothing to remove; {retention.describe_kept(plan)}", markup=False, highlight=False)
        return
    console.print(render_removals(plan.removals, "Would remove" if dry_run else "To remove"))
    summary = f"{retention.describe(plan.removals)}; {retention.describe_kept(plan)}"
    console.print(summary, markup=False, highlight=False)
    if dry_run:
        return
    if not yes:
        if not sys.stdin.isatty():
            print_error("prune removes files: pass --yes to remove them without asking, or --dry-run to only list them")
            raise typer.Exit(2)
        typer.confirm(f"Remove these {plan.files} files?", abort=True)
    outcome = retention.prune(loaded, plan)
    console.print(f"removed {retention.describe(outcome.removed)}", markup=False, highlight=False)
    for removal, why in outcome.skipped:
        console.print(f"{removal.family}/{removal.region} {removal.name}: {why}", markup=False, highlight=False)
    for removal, why in outcome.failed:
        print_error(f"{removal.family}/{removal.region} {removal.kind} {removal.name}: not removed ({why})")
    if outcome.failed:
        raise typer.Exit(1)


def render_kept(plan: retention.PrunePlan) -> Table:
    """One row per kept snapshot: the pair (or group), its digest and why it stays."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Kept", title_justify="left")
    for column in ("family", "region", "digest", "why"):
        table.add_column(column, no_wrap=column != "why")
    for (family, region, digest), reasons in plan.kept.items():
        table.add_row(*(escape(cell) for cell in (family, region, digest, ", ".join(reasons))))
    return table


def render_removals(removals: tuple[retention.Removal, ...] | list[retention.Removal], title: str) -> Table:
    """One row per removal: what, the pair, its name (digest, file, version), the detail and the bytes."""
    from rich.filesize import decimal
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("what", "family", "region", "name", "detail", "size"):
        table.add_column(column, no_wrap=column != "detail", justify="right" if column == "size" else "left")
    for removal in removals:
        row = (removal.kind, removal.family, removal.region, removal.name, removal.detail)
        table.add_row(*(escape(cell) for cell in row), decimal(removal.size))
    return table
