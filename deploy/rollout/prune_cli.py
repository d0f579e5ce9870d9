"""``modelyard prune``: remove old model versions, feature snapshots and prediction logs, as the housekeeping DAG does.

A lazy command of the root app (``deploy/cli.py``): it reads the deploy target's plans when
versions are pruned, so it lives in the deploy layer (ADR 0035, ADR 0036).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from modelyard.core.cli import ConfigOption, FamiliesOption, RegionsOption, TrackingOption

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from modelyard.deploy.rollout.pruning import Prune, PruneResult


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
    versions: Annotated[
        int | None,
        typer.Option(
            "--versions",
            min=1,
            help="Also delete model versions: the newest N per model stay, with every aliased version and every "
            "version a plan of the deploy target names (default: retention.versions; unset keeps every version).",
        ),
    ] = None,
    monitoring_days: Annotated[
        int | None,
        typer.Option(
            "--monitoring-days",
            min=1,
            help="Monitoring runs kept in MLflow, in days; each version's latest stays (default: "
            "retention.monitoring_days).",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Remove without asking (for scripts).")] = False,
    show_kept: Annotated[
        bool, typer.Option("--kept", help="Also list each kept snapshot (and model version) and why it stays.")
    ] = False,
    config: ConfigOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Remove old snapshots, prediction logs, monitoring runs (with --versions, model versions); keep what is needed.

    Kept: the snapshot LATEST names, the newest --snapshots, and every snapshot a registered model
    version was trained on (or pooled); prediction-log files, and the data stage's outcome files,
    newer than --sample-days; monitoring runs newer than --monitoring-days, and each version's
    latest (MLflow deletes runs softly: `mlflow gc` purges them). Model versions are deleted only
    with --versions (or retention.versions): aliased versions, the newest N and every version a
    plan of the deploy target names stay, and nothing is deleted when those plans cannot be read.
    The snapshots of deleted versions go in the same run. Exit 1 when something could not be
    removed (the rest is), 3 when MLflow or the deploy target does not answer.
    """
    import mlflow
    from rich.console import Console

    from modelyard.core.cli import exits_on_expected_errors, print_error
    from modelyard.core.config import load_config
    from modelyard.deploy.rollout import pruning
    from modelyard.monitoring import retention
    from modelyard.promotion.aliases import open_client

    console = Console()
    with exits_on_expected_errors():
        loaded = load_config(config)
        # A bad option or selection is refused before MLflow is asked.
        retention.settings(
            loaded, snapshots, sample_days, option="--sample-days", versions=versions, monitoring_days=monitoring_days
        )
        retention.folders(loaded, family, region)
        client = open_client(loaded, tracking_uri)
        chosen = pruning.plan(
            loaded, client, mlflow.get_tracking_uri(), families=family, regions=region, keep=snapshots,
            sample_days=sample_days, versions=versions, monitoring_days=monitoring_days, option="--sample-days",
        )  # fmt: skip
    if show_kept:
        for table in render_kept(chosen):
            console.print(table)
    if chosen.empty:
        console.print(f"nothing to remove; {chosen.describe().partition('; ')[2]}", markup=False, highlight=False)
        return
    console.print(render_removals(chosen, "Would remove" if dry_run else "To remove"))
    console.print(chosen.describe(), markup=False, highlight=False)
    if dry_run:
        return
    if not yes:
        if not sys.stdin.isatty():
            print_error("prune removes files: pass --yes to remove them without asking, or --dry-run to only list them")
            raise typer.Exit(2)
        typer.confirm(f"Remove these {_what(chosen)}?", abort=True)
    result = pruning.execute(loaded, client, chosen)
    report(console, result)
    if result.failed:
        raise typer.Exit(1)


def _what(chosen: Prune) -> str:
    versions = len(chosen.versions.removals) if chosen.versions is not None else 0
    parts = [f"{versions} model versions"] if versions else []
    parts += [f"{chosen.files.files} files"] if chosen.files.files else []
    return " and ".join(parts)


def report(console: Console, result: PruneResult) -> None:
    """What was removed, kept since the plan, and not removed (errors to stderr), as plain text."""
    from modelyard.core.cli import print_error
    from modelyard.deploy.rollout import version_retention
    from modelyard.monitoring import retention

    removed = [version_retention.describe(result.versions.removed)] if result.versions.removed else []
    removed += [retention.describe(result.files.removed)] if result.files.removed or not removed else []
    console.print(f"removed {' and '.join(removed)}", markup=False, highlight=False)
    for version, why in result.versions.skipped:
        console.print(f"{version.model} v{version.version}: {why}", markup=False, highlight=False)
    for removal, why in result.files.skipped:
        console.print(f"{removal.family}/{removal.region} {removal.name}: {why}", markup=False, highlight=False)
    for version, why in result.versions.failed:
        print_error(f"{version.model} v{version.version}: not deleted ({why})")
    for removal, why in result.files.failed:
        print_error(f"{removal.family}/{removal.region} {removal.kind} {removal.name}: not removed ({why})")


def render_kept(chosen: Prune) -> list[Table]:
    """One row per kept snapshot (pair or group, digest, why), and per kept model version when versions are pruned."""
    from rich.markup import escape
    from rich.table import Table

    tables = []
    if chosen.files.kept:
        table = Table(title="Kept", title_justify="left")
        for column in ("family", "region", "digest", "why"):
            table.add_column(column, no_wrap=column != "why")
        for (family, region, digest), reasons in chosen.files.kept.items():
            table.add_row(*(escape(cell) for cell in (family, region, digest, ", ".join(reasons))))
        tables.append(table)
    if chosen.versions is not None and chosen.versions.kept:
        table = Table(title="Kept model versions", title_justify="left")
        for column in ("model", "version", "why"):
            table.add_column(column, no_wrap=column != "why")
        for (model, version), reasons in chosen.versions.kept.items():
            table.add_row(*(escape(cell) for cell in (model, f"v{version}", ", ".join(reasons))))
        tables.append(table)
    return tables


def render_removals(chosen: Prune, title: str) -> Table:
    """One row per removal: what, the pair, its name (version, digest, file), the detail and the bytes."""
    from rich.filesize import decimal
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("what", "family", "region", "name", "detail", "size"):
        table.add_column(column, no_wrap=column != "detail", justify="right" if column == "size" else "left")
    for version in chosen.versions.removals if chosen.versions is not None else ():
        row = ("model version", version.family, version.region, f"{version.model} v{version.version}", version.detail)
        table.add_row(*(escape(cell) for cell in row), "-")
    for removal in chosen.files.removals:
        row = (removal.kind, removal.family, removal.region, removal.name, removal.detail)
        table.add_row(*(escape(cell) for cell in row), "-" if removal.kind == "runs" else decimal(removal.size))
    return table
