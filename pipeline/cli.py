"""``modelyard data …`` commands: generate, ingest, validate, build.

Exit codes as in :mod:`modelyard.core.cli`: 1 data failed validation (or a region failed to build).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from modelyard.core.cli import (
    ConfigOption,
    FamiliesOption,
    RegionsOption,
    console,
    exits_on_expected_errors,
    writes_to,
)
from modelyard.core.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    import pandas as pd

    from modelyard.pipeline.build import BuildRequest, BuildResult
    from modelyard.pipeline.validation import ValidationOutcome

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)


def _config(path: Path | None) -> Config:
    with exits_on_expected_errors():
        return load_config(path)


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

    config = _config(config_path)
    with exits_on_expected_errors():
        if out.suffix.lower() not in (".csv", ".parquet", ".pq"):
            raise ConfigError(f"--out {out}: use a .csv or .parquet file name")
        frame = generate_for(config, config.region(region).name, rows)
        if family:
            keep = required_raw_columns(config, config.family(family))
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
    """Run the raw and the features suites on a file; exit 0 when good, 1 when not."""
    from modelyard.pipeline.features import required_raw_columns
    from modelyard.pipeline.ingest import read_dataset
    from modelyard.pipeline.validation import render_report

    config = _config(config_path)
    with exits_on_expected_errors():
        fam = config.family(family)
        region_name = config.region(region).name if region else None
        table = read_dataset(input_path, config.dataset_of(fam), required_raw_columns(config, fam))
        for note in table.notes:
            console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
        frame = table.frame
        outcomes = _validate_file(config, fam.name, region_name, frame)
    if report:
        with writes_to(report, "--report"):
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(render_report(f"{family} data quality: {input_path}", outcomes))
    failures = [f for o in outcomes for f in o.failures]
    checks = sum(len(o.checks) for o in outcomes)
    for line in failures:
        console.print(f"[red]✗[/] {escape(line)}", highlight=False, soft_wrap=True)
    if failures:
        console.print(f"[bold red]FAILED[/] {len(failures)} of {checks} checks on {len(frame)} rows")
        raise typer.Exit(1)
    console.print(f"[green]passed[/] {checks} checks on {len(frame)} rows of {escape(input_path)}", highlight=False)


def _validate_file(config: Config, family: str, region: str | None, frame: pd.DataFrame) -> list[ValidationOutcome]:
    """The raw suite over the file, then, if it passed, the features suite per region in it."""
    from modelyard.pipeline.features import build_features
    from modelyard.pipeline.validation import validate_features, validate_raw

    fam = config.family(family)
    outcomes = [validate_raw(frame, config, fam, region)]
    if not outcomes[0].success:
        return outcomes
    column = config.dataset_of(fam).region_column
    for name in sorted(frame[column].unique()):
        built = build_features(frame[frame[column] == name], config, fam, config.region(str(name)))
        outcomes.append(validate_features(built.frame, config, fam, str(name)))
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

    request = BuildRequest(source=source, start=start.date() if start else None, end=end.date() if end else None)
    _run_build(_config(config_path), families, regions, request)


@app.command()
def ingest(
    input_path: Annotated[str, typer.Option("--input", "-i", help="CSV/Parquet path or glob.")],
    families: FamiliesOption = None,
    regions: RegionsOption = None,
    config_path: ConfigOption = None,
) -> None:
    """Build and publish snapshots from a user file (rows are filtered to each region)."""
    from modelyard.pipeline.build import BuildRequest

    _run_build(_config(config_path), families, regions, BuildRequest(source=input_path))


def _run_build(config: Config, families: list[str] | None, regions: list[str] | None, request: BuildRequest) -> None:
    from modelyard.pipeline.build import render_summary

    with exits_on_expected_errors():
        results = _build_with_progress(config, families, regions, request)
    console.print(render_summary(results))
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
