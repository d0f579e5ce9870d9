"""Build and publish the feature snapshot of every (family, region).

Per pair: read the family's dataset from its source (the built-in generator or the
declared CSV/Parquet path or glob, filtered to the region) → validate raw → build features → validate
features → :func:`pipeline.snapshots.publish` with the HTML report. A pair that fails
publishes nothing and does not stop the others; a pair with fewer than
``data.min_rows`` rows is skipped with its reason. Publishing is idempotent, so a
re-run on the same input reports ``unchanged`` and writes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from modelyard.core.config import Config, ConfigError, Dataset, Family
from modelyard.core.contracts.columns import TIME_COLUMN
from modelyard.core.storage import write_bytes_atomic
from modelyard.pipeline import snapshots
from modelyard.pipeline.features import FeatureError, build_features, check_family, required_raw_columns
from modelyard.pipeline.ingest import IngestError, RawTable, read_dataset
from modelyard.pipeline.outcomes import write_outcomes
from modelyard.pipeline.validation import ValidationOutcome, render_report, summarize, validate_features, validate_raw

if TYPE_CHECKING:
    import pandas as pd
    from rich.table import Table
    from upath import UPath

Status = Literal["published", "unchanged", "failed", "skipped"]
SYNTHETIC = "synthetic"


@dataclass(frozen=True)
class BuildResult:
    """What happened to one (family, region)."""

    family: str
    region: str
    status: Status
    rows: int = 0
    digest: str | None = None
    reason: str = ""
    checks: int = 0
    failed_checks: int = 0
    report: UPath | None = None  # local or object-store path (storage.root)
    notes: tuple[str, ...] = ()  # what ingest and the features decided (naive times as UTC, unknown categories)

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    @property
    def validation(self) -> str:
        """A short validation verdict for tables: 'passed 79/79', 'FAILED 2/34' or '-'."""
        if not self.checks:
            return "-"
        if self.failed_checks:
            return f"FAILED {self.failed_checks}/{self.checks}"
        return f"passed {self.checks}/{self.checks}"


@dataclass(frozen=True)
class BuildRequest:
    """Which data to build from: the source (None: the dataset's) and an optional date range (UTC days)."""

    source: str | None = None
    start: dt.date | None = None
    end: dt.date | None = None
    as_of: dt.datetime | None = None  # freshness is measured from here (default: now)


@dataclass
class RawCache:
    """Raw rows read once per build: per (dataset, region) from the generator, per (dataset, family) from files."""

    tables: dict[tuple[str, str], RawTable] = field(default_factory=dict)


def source_of(dataset: Dataset, request: BuildRequest) -> str:
    """The effective source: the request's, else the dataset's path or 'synthetic'."""
    if request.source:
        return request.source
    if dataset.source.kind == "file" and dataset.source.path:
        return dataset.source.path
    return SYNTHETIC


def load_raw(config: Config, family: Family, region: str, source: str, cache: RawCache | None = None) -> RawTable:
    """Raw rows of ``region`` from ``source`` ('synthetic' or a CSV/Parquet path or glob).

    Raises:
        IngestError: the file cannot be read (the message names file and cause).
    """
    from modelyard.pipeline.generator import generate_for

    cache = cache or RawCache()
    dataset = config.dataset_of(family)
    key = (dataset.name, region) if source == SYNTHETIC else (dataset.name, family.name)
    if key not in cache.tables:
        if source == SYNTHETIC:
            cache.tables[key] = RawTable(generate_for(config, region))
        else:
            cache.tables[key] = read_dataset(source, dataset, required_raw_columns(config, family))
    table = cache.tables[key]
    if source == SYNTHETIC:
        return table
    frame = table.frame
    return RawTable(frame[frame[dataset.region_column] == region].reset_index(drop=True), table.notes)


def build_pair(
    config: Config,
    family_name: str,
    region: str,
    request: BuildRequest | None = None,
    cache: RawCache | None = None,
) -> BuildResult:
    """Build, validate and publish the snapshot of one (family, region); never raises for bad data.

    Returns:
        A :class:`BuildResult`; ``status`` is failed (with the reason) when the input cannot be
        read or a suite fails, skipped when too few rows, else published or unchanged.
    """
    request = request or BuildRequest()
    family = config.family(family_name)
    check_family(config, family)
    dataset = config.dataset_of(family)
    source = source_of(dataset, request)
    try:
        table = load_raw(config, family, region, source, cache)
    except IngestError as exc:
        return BuildResult(family.name, region, "failed", reason=str(exc))
    raw = _in_range(table.frame, dataset.time_column, request)
    if len(raw) < config.data.min_rows:
        reason = f"{len(raw)} rows for region '{region}', fewer than data.min_rows={config.data.min_rows}"
        return BuildResult(family.name, region, "skipped", rows=len(raw), reason=reason)
    return _validate_and_publish(config, family, region, raw, source, request.as_of, tuple(table.notes))


def _in_range(raw: pd.DataFrame, time_column: str, request: BuildRequest) -> pd.DataFrame:
    import pandas as pd

    if request.start:
        raw = raw[raw[time_column] >= pd.Timestamp(request.start, tz="UTC")]
    if request.end:
        raw = raw[raw[time_column] < pd.Timestamp(request.end, tz="UTC") + pd.Timedelta(days=1)]
    return raw.reset_index(drop=True)


def _validate_and_publish(
    config: Config,
    family: Family,
    region: str,
    raw: pd.DataFrame,
    source: str,
    as_of: dt.datetime | None,
    notes: tuple[str, ...] = (),
) -> BuildResult:
    outcomes = [validate_raw(raw, config, family, region, as_of)]
    built = None
    if outcomes[0].success:
        try:
            built = build_features(raw, config, family, config.region(region))
        except FeatureError as exc:
            return BuildResult(family.name, region, "failed", rows=len(raw), reason=f"region '{region}': {exc}")
        outcomes.append(validate_features(built.frame, config, family, region, as_of))
    title = f"{family.name}/{region} data quality"
    summary = summarize(outcomes)
    if built is None or not summary.success:
        report = _write_failed_report(config, family.name, region, render_report(title, outcomes))
        return _failed(family.name, region, len(raw), outcomes, report)
    meta, created = snapshots.publish(
        config.storage.features_dir,
        built.frame,
        family=family.name,
        region=region,
        target=family.target,
        time_column=TIME_COLUMN,
        source=_describe_source(config, source),
        validation=summary,
        report_html=render_report(title, outcomes),
        feature_spec=built.fitted.to_dict(),
        unknown_categories=built.unknown,
    )
    notes += tuple(
        f"family '{family.name}', feature '{name}': {count} rows outside the training window have a category "
        "never seen in it (coded as unknown)"
        for name, count in built.unknown.items()
    )
    served, _ = write_outcomes(config, family, region, raw, meta.digest)
    if served:
        notes += (f"{served} rows are outcomes of served requests (kept for the monitoring stage's live quality)",)
    return BuildResult(
        family.name,
        region,
        "published" if created else "unchanged",
        rows=meta.rows,
        digest=meta.digest,
        checks=summary.checks,
        report=meta.report_path(config.storage.features_dir),
        reason="; ".join(notes),
        notes=notes,
    )


def _failed(family: str, region: str, rows: int, outcomes: list[ValidationOutcome], report: UPath) -> BuildResult:
    summary = summarize(outcomes)
    return BuildResult(
        family,
        region,
        "failed",
        rows=rows,
        reason="; ".join(summary.failures),
        checks=summary.checks,
        failed_checks=summary.failed,
        report=report,
    )


def _write_failed_report(config: Config, family: str, region: str, html: str) -> UPath:
    """Failed reports go under ``<root>/reports``, never next to snapshots: nothing is published."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = config.storage.reports_dir / family / region / f"failed-{stamp}.html"
    write_bytes_atomic(path, html.encode())
    return path


def _describe_source(config: Config, source: str) -> str:
    if source != SYNTHETIC:
        return f"file:{source}"
    synthetic = config.data.synthetic
    return f"synthetic:seed={config.seed},rows={synthetic.rows},start={synthetic.start},days={synthetic.days}"


def build_all(
    config: Config,
    families: list[str] | None = None,
    regions: list[str] | None = None,
    request: BuildRequest | None = None,
    on_result: Callable[[BuildResult], None] | None = None,
) -> list[BuildResult]:
    """Build every selected (family, region); one pair's failure never stops the others.

    Args:
        config: The modelyard config.
        families: Family names (None or empty: all).
        regions: Region names (None or empty: all).
        request: Source override, date range and freshness reference.
        on_result: Called after each pair (progress bars).

    Raises:
        ConfigError: an unknown family or region name, a family without a dataset, or a user
            feature function that does not import.
    """
    pairs = config.pairs(families or None, regions or None)
    for family in {f for f, _ in pairs}:
        check_family(config, config.family(family))
    cache = RawCache()
    results = []
    for family, region in pairs:
        result = build_pair(config, family, region, request, cache)
        results.append(result)
        if on_result:
            on_result(result)
    return results


def render_summary(results: list[BuildResult]) -> Table:
    """A compact rich table: family, region, status, rows, validation, digest, reason."""
    from rich.markup import escape
    from rich.table import Table

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


__all__ = [
    "BuildRequest",
    "BuildResult",
    "ConfigError",
    "build_all",
    "build_pair",
    "render_summary",
]
