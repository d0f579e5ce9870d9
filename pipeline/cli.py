"""``modelyard data …`` commands: generate, ingest, validate, build; list snapshots, point LATEST back.

Exit codes as in :mod:`modelyard.core.cli`: 1 data failed validation (or a region failed to build).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from modelyard.core.cli import (
    ConfigOption,
    FamiliesOption,
    FamilyOption,
    RegionOption,
    RegionsOption,
    config_or_exit,
    console,
    exits_on_expected_errors,
    writes_to,
)
from modelyard.core.config import Config, ConfigError, PairView

if TYPE_CHECKING:
    import pandas as pd

    from modelyard.pipeline.accounting import RowAccount
    from modelyard.pipeline.build import BuildRequest, BuildResult
    from modelyard.pipeline.ingest import RawTable
    from modelyard.pipeline.validation import ValidationOutcome

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)


@app.command()
def generate(
    region: Annotated[str, typer.Option("--region", "-r", help="Region to generate rows for.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file: .csv or .parquet.")],
    family: Annotated[str | None, typer.Option("--family", "-f", help="Keep only this family's columns.")] = None,
    rows: Annotated[int | None, typer.Option("--rows", "-n", min=1, help="Rows (default data.synthetic.rows).")] = None,
    config_path: ConfigOption = None,
) -> None:
    """Write the built-in generator's raw rows of one region as CSV or Parquet (by the extension)."""
    from modelyard.pipeline.features import required_raw_columns
    from modelyard.pipeline.generator import generate_for

    config = config_or_exit(config_path)
    with exits_on_expected_errors():
        if out.suffix.lower() not in (".csv", ".parquet", ".pq"):
            raise ConfigError(f"--out {out}: use a .csv or .parquet file name")
        place = config.region(region)
        frame = generate_for(config, place, rows)
        if family:
            view = config.pair_view(family, place.name)
            keep = [*required_raw_columns(view), *view.dataset.required_columns]
            frame = frame[[c for c in frame.columns if c in keep]]
    with writes_to(out, "--out"):
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".csv":
            frame.to_csv(out, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
        else:
            frame.to_parquet(out, index=False)
    console.print(f"wrote {len(frame)} rows of region '{region}' to {escape(str(out))}", highlight=False)


@app.command()
def validate(
    input_path: Annotated[str, typer.Option("--input", "-i", help="CSV/Parquet path or glob.")],
    family: Annotated[str, typer.Option("--family", "-f", help="Family whose suites to run.")],
    region: Annotated[str | None, typer.Option("--region", "-r", help="Rows must all be of this region.")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Write the HTML report here.")] = None,
    config_path: ConfigOption = None,
) -> None:
    """Run the raw and the features suites on a file; exit 0 when good, 1 when not.

    The rows are chosen as ``build`` chooses them: undeclared regions and bad rows by the dataset's
    policies, then each region's row selection (``where``, missing labels).
    """
    from modelyard.pipeline.accounting import undeclared_accounts
    from modelyard.pipeline.features import required_raw_columns
    from modelyard.pipeline.ingest import read_dataset
    from modelyard.pipeline.report import render_report

    config = config_or_exit(config_path)
    with exits_on_expected_errors():
        # The raw suite is the family's; without --region any region's view carries it.
        pair = config.pair_view(family, region or config.region_names[0])
        required = list(dict.fromkeys([*required_raw_columns(pair), *pair.dataset.required_columns]))
        zones = {r.name: r.timezone for r in config.regions}
        table = read_dataset(input_path, pair.dataset, required, zones)
        for note in table.notes:
            console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
        frame, rows, bad = _chosen(config, pair, table, region)
        outcomes = _validate_file(config, pair, frame, one_region=region is not None)
    console.print(render_rows([*rows, *undeclared_accounts(table.undeclared)]))
    for line in bad:
        console.print(f"[red]✗[/] {escape(line)}", highlight=False, soft_wrap=True)
    if report:
        with writes_to(report, "--report"):
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(render_report(f"{family} data quality: {input_path}", outcomes))
    failures = [*bad, *(f for o in outcomes for f in o.failures)]
    checks = sum(len(o.checks) for o in outcomes)
    for line in failures:
        console.print(f"[red]✗[/] {escape(line)}", highlight=False, soft_wrap=True)
    if failures:
        console.print(f"[bold red]FAILED[/] {len(failures)} of {checks} checks on {len(frame)} rows")
        raise typer.Exit(1)
    console.print(f"[green]passed[/] {checks} checks on {len(frame)} rows of {escape(input_path)}", highlight=False)


def _chosen(
    config: Config, pair: PairView, table: RawTable, region: str | None
) -> tuple[pd.DataFrame, list[RowAccount], list[str]]:
    """Each region's rows as ``build`` would choose them, their accounts, and regions over max_bad_fraction."""
    import pandas as pd

    from modelyard.pipeline.build import choose_rows, region_table, too_many_bad

    dataset = pair.dataset
    present = sorted({str(r) for r in table.frame[dataset.region_column].dropna().unique()})
    frames: list[pd.DataFrame] = []
    rows: list[RowAccount] = []
    bad: list[str] = []
    for name in [region] if region else present:
        view = config.pair_view(pair.family.name, name)
        mine = region_table(table, dataset, name)
        chosen = choose_rows(view, mine)
        frames.append(chosen.frame)
        rows.extend(chosen.accounts)
        if reason := too_many_bad(view, mine):
            bad.append(reason)
    frame = pd.concat(frames, ignore_index=True) if frames else table.frame.iloc[:0]
    return frame, rows, bad


def _validate_file(config: Config, pair: PairView, frame: pd.DataFrame, *, one_region: bool) -> list[ValidationOutcome]:
    """The raw suite over the file, then, if it passed, the features suite per region in it.

    ``one_region``: every row must be of the pair's region; else of any configured region.
    """
    from modelyard.pipeline.features import build_features
    from modelyard.pipeline.validation import validate_features, validate_raw

    regions = None if one_region else config.region_names
    outcomes = [validate_raw(frame, pair, config.data, regions=regions)]
    if not outcomes[0].success:
        return outcomes
    column = pair.dataset.region_column
    for name in sorted(frame[column].unique()):
        view = config.pair_view(pair.family.name, str(name))
        built = build_features(frame[frame[column] == name], view, config.training)
        outcomes.append(validate_features(built.frame, view, config.data))
    return outcomes


@app.command()
def build(
    families: FamiliesOption = None,
    regions: RegionsOption = None,
    source: Annotated[str | None, typer.Option(help="'synthetic' or a CSV/Parquet path or glob.")] = None,
    start: Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="First day (UTC).")] = None,
    end: Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Last day (UTC).")] = None,
    config_path: ConfigOption = None,
) -> None:
    """Validate, build and publish feature snapshots; exit 1 if any (family, region) failed."""
    from modelyard.pipeline.build import BuildRequest

    with exits_on_expected_errors():  # a range that ends before it starts
        request = BuildRequest(source=source, start=start.date() if start else None, end=end.date() if end else None)
    _run_build(config_or_exit(config_path), families, regions, request)


@app.command()
def ingest(
    input_path: Annotated[str, typer.Option("--input", "-i", help="CSV/Parquet path or glob.")],
    families: FamiliesOption = None,
    regions: RegionsOption = None,
    config_path: ConfigOption = None,
) -> None:
    """Build and publish snapshots from a user file (rows are filtered to each region)."""
    from modelyard.pipeline.build import BuildRequest

    _run_build(config_or_exit(config_path), families, regions, BuildRequest(source=input_path))


@app.command()
def snapshots(
    families: FamiliesOption = None,
    regions: RegionsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list, one object per snapshot.")] = False,
    config_path: ConfigOption = None,
) -> None:
    """List each pair's published snapshots, newest first: digest, built, rows, time window, source; * is LATEST.

    The region groups serving the selected regions follow, with their pooled models' snapshots.
    """
    from modelyard.pipeline.snapshots import latest_digest, list_snapshots

    config = config_or_exit(config_path)
    with exits_on_expected_errors():
        pairs = config.pairs(families or None, regions or None)
        pairs += config.pooled_pairs(pairs)  # the pooled snapshots of the region groups serving them
    features = config.storage.features_dir
    listed = []
    for family, region in pairs:
        current = latest_digest(features, family, region)
        listed += [(meta, meta.digest == current) for meta in list_snapshots(features, family, region)]
    if as_json:
        fields = ("family", "region", "digest", "rows", "time_min", "time_max", "source", "created_at")
        records = [{**meta.model_dump(mode="json", include=set(fields)), "latest": latest} for meta, latest in listed]
        typer.echo(json.dumps(records, indent=2))
        return
    table = Table(title="Feature snapshots (* LATEST: what training reads)", title_justify="left")
    for name in ("family", "region", "", "digest", "built (UTC)", "rows", "from", "to", "source"):
        table.add_column(name, justify="right" if name == "rows" else "left", overflow="fold", no_wrap=name != "source")
    for meta, latest in listed:
        table.add_row(
            meta.family, meta.region, "*" if latest else "", meta.digest, f"{meta.created_at:%Y-%m-%d %H:%M}",
            str(meta.rows), f"{meta.time_min:%Y-%m-%d}", f"{meta.time_max:%Y-%m-%d}", escape(meta.source),
        )  # fmt: skip
    console.print(table)


@app.command()
def rollback(
    family: FamilyOption,
    region: RegionOption,
    to: Annotated[str | None, typer.Option("--to", help="The snapshot's digest (a unique prefix will do).")] = None,
    config_path: ConfigOption = None,
) -> None:
    """Point the pair's LATEST back at the snapshot published before it (or --to DIGEST): what training reads next.

    For a build that passed validation with data that is wrong. The snapshots stay; a version
    already trained on the snapshot is reused (same inputs), and the next build points LATEST at
    what it publishes.
    """
    from modelyard.pipeline.snapshots import point_latest

    config = config_or_exit(config_path)
    with exits_on_expected_errors():
        config.pair_view(family, region)
        before, meta = point_latest(config.storage.features_dir, family, region, to)
    line = (
        f"{family}/{region}: LATEST {before} -> {meta.digest} (built {meta.created_at:%Y-%m-%d %H:%M} UTC, "
        f"{meta.rows} rows, {meta.time_min:%Y-%m-%d} to {meta.time_max:%Y-%m-%d}); "
        f"`modelyard train -f {family} -r {region}` trains on it"
    )
    console.print(line, markup=False, highlight=False)


def _run_build(config: Config, families: list[str] | None, regions: list[str] | None, request: BuildRequest) -> None:
    with exits_on_expected_errors():
        results = _build_with_progress(config, families, regions, request)
    console.print(render_summary(results))
    console.print(render_rows(rows_of(results)))
    for r in results:
        if r.quarantine:
            path = escape(str(r.quarantine))
            console.print(f"{r.family}/{r.region}: quarantined rows in {path}", highlight=False, soft_wrap=True)
    failed = [r for r in results if r.status == "failed"]
    for r in failed:
        if r.report:
            report = escape(str(r.report))
            console.print(f"[red]{r.family}/{r.region}[/]: report {report}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def _build_with_progress(
    config: Config, families: list[str] | None, regions: list[str] | None, request: BuildRequest
) -> list[BuildResult]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from modelyard.pipeline.build import build_all

    total = len(config.pairs(families or None, regions or None))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("building snapshots", total=total)

        def advance(result: BuildResult) -> None:
            progress.update(task, advance=1, description=f"{result.family}/{result.region}: {result.status}")

        return build_all(config, families, regions, request, on_result=advance)


def render_summary(results: list[BuildResult]) -> Table:
    """A compact rich table of build results: family, region, status, rows, validation, digest, reason."""
    table = Table(title="Feature snapshots", title_justify="left", show_lines=False)
    for name, style in (("family", "cyan"), ("region", "cyan"), ("status", ""), ("rows", ""), ("validation", "")):
        table.add_column(name, style=style, justify="right" if name == "rows" else "left", no_wrap=True)
    table.add_column("digest", style="magenta", no_wrap=True)
    table.add_column("reason", overflow="fold")
    colours = {"published": "green", "unchanged": "dim", "failed": "bold red", "skipped": "yellow"}
    for r in results:
        status = f"[{colours[r.status]}]{r.status}[/]"
        table.add_row(r.family, r.region, status, str(r.rows), r.validation, r.digest or "-", escape(r.reason))
    return table


def rows_of(results: list[BuildResult]) -> list[RowAccount]:
    """Every result's accounts, with each file's undeclared regions once."""
    rows = [(r.family, a) for r in results for a in r.rows_by_file]
    undeclared = {(a.file, a.region): a for r in results for a in r.undeclared}
    return [a for _, a in rows] + list(undeclared.values())


def render_rows(rows: list[RowAccount]) -> Table:
    """Where every row went, per source file and region: read, kept, dropped by reason."""
    from modelyard.pipeline.accounting import REASONS

    reasons = [reason for reason in REASONS if any(a.dropped.get(reason) for a in rows)]
    table = Table(title="Rows by source file and region", title_justify="left")
    for name in ("file", "region", "read", "kept", *reasons):
        table.add_column(name, justify="left" if name in ("file", "region") else "right", overflow="fold")
    for a in rows:
        counts = [str(a.dropped.get(reason, 0)) for reason in reasons]
        table.add_row(escape(a.file), escape(a.region), str(a.read), str(a.kept), *counts)
    return table
