"""Build and publish the feature snapshot of every (family, region).

Per pair: read the family's dataset from its source (the built-in generator or the
declared CSV/Parquet path or glob, filtered to the region) → validate raw → build features → validate
features → :func:`pipeline.snapshots.publish` with the HTML report. A pair that fails
publishes nothing and does not stop the others. A region with fewer than ``data.min_rows``
rows that a region group pools is still published, *pooled only* (``BuildResult.pooled_only``):
too little for a model of its own, its rows train the group's pooled model (ADR 0015); one
with fewer than ``data.min_pooled_rows``, or in no group, is skipped with its reason.
Publishing is idempotent, so a re-run on the same input reports ``unchanged`` and writes nothing.

Each pair is resolved against the config once (:meth:`Config.pair_view`) and its
:class:`~modelyard.core.config.PairView` is what every step reads. The results are data;
``modelyard data build`` renders them (:mod:`pipeline.cli`).
"""

from __future__ import annotations

import datetime as dt
import errno
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from modelyard.core.config import Config, ConfigError, Dataset, PairView
from modelyard.core.contracts.columns import TIME_COLUMN
from modelyard.core.errors import ModelyardError
from modelyard.core.storage import write_bytes_atomic
from modelyard.pipeline import snapshots
from modelyard.pipeline.accounting import (
    OUT_OF_RANGE,
    RowAccount,
    accounts,
    bad_kind,
    closest_regions,
    undeclared_accounts,
    write_quarantine,
)
from modelyard.pipeline.features import FeatureError, build_features, check_family, required_raw_columns
from modelyard.pipeline.ingest import FILE_COLUMN, UNKNOWN_REGION, IngestError, RawTable, read_dataset, region_rows
from modelyard.pipeline.online import materialise_notes
from modelyard.pipeline.outcomes import write_outcomes
from modelyard.pipeline.report import render_report
from modelyard.pipeline.selection import select_rows
from modelyard.pipeline.spill import RegionSpill, spill_folder
from modelyard.pipeline.validation import ValidationOutcome, summarize, validate_features, validate_raw

if TYPE_CHECKING:
    import pandas as pd
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
    rows_by_file: tuple[RowAccount, ...] = ()  # the region's rows per source file: read, kept, dropped by reason
    undeclared: tuple[RowAccount, ...] = ()  # rows of the source whose region the config does not declare
    quarantine: UPath | None = None  # the region's set-aside rows (file, line, reason), beside the report
    pooled_only: bool = False  # published with fewer than data.min_rows rows: only its group's pooled model uses it
    retryable: bool = False  # failed on this host's storage (disk full, a folder gone), not on the data: try again

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


class BuildRequestError(ModelyardError, ValueError):
    """A build request that can select no row (a date range that ends before it starts)."""


@dataclass(frozen=True)
class BuildRequest:
    """Which data to build from: the source (None: the dataset's) and an optional date range (UTC days).

    Raises:
        BuildRequestError: ``start`` is after ``end`` (every pair would find 0 rows and be skipped).
    """

    source: str | None = None
    start: dt.date | None = None
    end: dt.date | None = None
    as_of: dt.datetime | None = None  # freshness is measured from here (default: now)

    def __post_init__(self) -> None:
        if self.start and self.end and self.start > self.end:
            raise BuildRequestError(
                f"start {self.start} is after end {self.end}: the date range (UTC days, both included) "
                "holds no day; swap them, or leave one out to build from the first or up to the last row"
            )


@dataclass
class RawCache:
    """Raw rows read once per build: per (dataset, region) from the generator, per (dataset, family) from files.

    A file's rows are set down per region in a spill on this host (:mod:`pipeline.spill`), so a
    build holds one region's rows at a time; :meth:`close` removes the spills (so does collecting
    the cache).
    """

    tables: dict[tuple[str, str], RawTable] = field(default_factory=dict)

    def close(self) -> None:
        """Remove the spilled rows of every file read."""
        for table in self.tables.values():
            if table.spill is not None:
                table.spill.close()
        self.tables.clear()


def source_of(dataset: Dataset, request: BuildRequest) -> str:
    """The effective source: the request's, else the dataset's path or 'synthetic'."""
    if request.source:
        return request.source
    if dataset.source.kind == "file" and dataset.source.path:
        return dataset.source.path
    return SYNTHETIC


def load_raw(config: Config, pair: PairView, source: str, cache: RawCache | None = None) -> RawTable:
    """Raw rows of the pair's region from ``source`` ('synthetic' or a CSV/Parquet path or glob).

    Raises:
        IngestError: the file cannot be read (the message names file and cause).
    """
    from modelyard.pipeline.generator import generate_for

    cache = cache or RawCache()
    dataset, region = pair.dataset, pair.region.name
    key = (dataset.name, region) if source == SYNTHETIC else (dataset.name, pair.family.name)
    if key not in cache.tables:
        if source == SYNTHETIC:
            frame = generate_for(config, pair.region)
            cache.tables[key] = RawTable(frame, read=Counter({(SYNTHETIC, region): len(frame)}))
        else:
            required = list(dict.fromkeys([*required_raw_columns(pair), *dataset.required_columns]))
            zones = {r.name: r.timezone for r in config.regions}
            spill = RegionSpill(spill_folder(), dataset.region_column)
            try:
                cache.tables[key] = read_dataset(source, dataset, required, zones, spill)
            except BaseException:
                spill.close()
                raise
    table = cache.tables[key]
    if source == SYNTHETIC:
        return table
    return region_table(table, dataset, region)


def region_table(table: RawTable, dataset: Dataset, region: str) -> RawTable:
    """The rows of ``table`` (read from files) of one region, with that region's counts and set-aside rows."""
    frame, origin = region_rows(table, dataset.region_column, region)
    return replace(
        table,
        frame=frame,
        origin=origin,
        spill=None,
        read=Counter({k: n for k, n in table.read.items() if k[1] == region}),
        bad=[b for b in table.bad if b.region in (region, UNKNOWN_REGION)],
        notes=list(table.notes),
    )


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

    Raises:
        ConfigError: an unknown family or region, a family without a dataset, or a user feature
            function that does not import.
    """
    pair = config.pair_view(family_name, region)
    check_family(pair)
    return build_view(config, pair, request, cache)


def build_view(
    config: Config, pair: PairView, request: BuildRequest | None = None, cache: RawCache | None = None
) -> BuildResult:
    """:func:`build_pair` for a pair already resolved (and its family checked with :func:`check_family`).

    Args:
        config: Gives the settings: storage, data, training windows, the generator's.
        pair: The (family, region), resolved once.
        request: Source override, date range and freshness reference.
        cache: Raw rows already read in this build.
    """
    request, cache = request or BuildRequest(), cache or RawCache()
    family, region = pair.family.name, pair.region.name
    source = source_of(pair.dataset, request)
    try:
        table = load_raw(config, pair, source, cache)
    except IngestError as exc:
        return BuildResult(family, region, "failed", reason=str(exc))
    except OSError as exc:  # the spill's disk, not the input: retried
        return BuildResult(family, region, "failed", reason=storage_fault(exc), retryable=True)
    try:
        return _build_table(config, pair, table, source, request, cache)
    except OSError as exc:
        return BuildResult(family, region, "failed", reason=storage_fault(exc), retryable=True)


def storage_fault(exc: OSError) -> str:
    """One line for a write that failed on storage: what, why, and that nothing of the pair was published."""
    where = f" {exc.filename}" if exc.filename else ""
    why = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return (
        f"could not write{where}: {why}; nothing of this pair was published (writes are whole or nothing): "
        "free space or fix the storage, then rerun (Airflow retries the pair)"
    )


def _build_table(
    config: Config, pair: PairView, table: RawTable, source: str, request: BuildRequest, cache: RawCache
) -> BuildResult:
    family, region = pair.family.name, pair.region.name
    chosen = choose_rows(pair, table, request)
    base = BuildResult(
        family, region, "skipped", rows_by_file=chosen.accounts, undeclared=undeclared_accounts(table.undeclared)
    )
    too_bad = too_many_bad(pair, table)
    if too_bad:
        path = _quarantine_path(config, family, region)
        return replace(base, status="failed", reason=too_bad, quarantine=write_quarantine(path, table.bad))
    raw = chosen.frame
    groups = config.groups_of(region)
    too_few = too_few_rows(config, region, len(raw), groups)
    if too_few:
        if not sum(table.read.values()):
            too_few += _closest_hint(region, cache, pair)
        return replace(base, rows=len(raw), reason=too_few)
    pooled = _pooled_note(config, region, len(raw), groups)
    notes = (*table.notes, *([pooled] if pooled else []))
    floor = config.data.min_rows if not pooled else config.data.pooled_floor
    result = _validate_and_publish(config, pair, raw, source, request.as_of, notes, min_rows=floor)
    result = replace(result, pooled_only=bool(pooled) and result.ok)
    result = replace(result, rows_by_file=base.rows_by_file, undeclared=base.undeclared)
    if table.bad:
        beside = (
            result.report.with_suffix(".quarantine.csv") if result.report else _quarantine_path(config, family, region)
        )
        result = replace(result, quarantine=write_quarantine(beside, table.bad))
    return result


def too_few_rows(config: Config, region: str, rows: int, groups: list[str]) -> str:
    """Why a region with ``rows`` rows is not published ('' when it is: for its own model or pooled only)."""
    data = config.data
    own = f"{rows} rows for region '{region}', fewer than data.min_rows={data.min_rows}"
    if data.own_model(rows):
        return ""
    if not groups:
        return f"{own}, and no region group pools it (see groups: in the config, ADR 0015)"
    if rows < data.pooled_floor:
        return f"{own}, and fewer than data.min_pooled_rows={data.pooled_floor} to be pooled with {groups[0]}"
    return ""


def _pooled_note(config: Config, region: str, rows: int, groups: list[str]) -> str:
    """The note of a pooled-only region ('' when it has enough rows for a model of its own)."""
    if config.data.own_model(rows):
        return ""
    return (
        f"pooled only: {rows} rows for region '{region}', fewer than data.min_rows={config.data.min_rows} "
        f"for a model of its own; served by the pooled model of {' or '.join(groups)}"
    )


@dataclass(frozen=True)
class ChosenRows:
    """A pair's rows after the date range and its row selection, and where every row of each file went."""

    frame: pd.DataFrame
    accounts: tuple[RowAccount, ...]


def choose_rows(pair: PairView, table: RawTable, request: BuildRequest | None = None) -> ChosenRows:
    """The rows of ``table`` (one region's) the pair learns from, counted per source file by reason.

    Drops, in order: rows outside the request's days (out of range), rows the dataset's or family's
    ``where`` excludes (filter), rows without a label (missing target). Rows ingest set aside are
    counted as malformed line or bad value.
    """
    import pandas as pd

    request = request or BuildRequest()
    frame = table.frame.reset_index(drop=True)
    files = (
        table.origin[FILE_COLUMN].reset_index(drop=True)
        if table.origin is not None
        else pd.Series(SYNTHETIC, index=frame.index)
    )
    in_range = _range_mask(frame, pair.dataset.time_column, request)
    dropped: dict[str, Counter[str]] = {}
    for row in (b for b in table.bad if b.region == pair.region.name):
        dropped.setdefault(bad_kind(row), Counter())[row.file] += 1
    dropped[OUT_OF_RANGE] = Counter(files[~in_range])
    selection = select_rows(frame[in_range].reset_index(drop=True), pair)
    kept_files = files[in_range].reset_index(drop=True)
    kept = pd.Series(True, index=kept_files.index)
    for reason, mask in selection.dropped.items():
        dropped[reason] = Counter(kept_files[mask.to_numpy()])
        kept &= ~mask.to_numpy()
    read = {file: n for (file, _), n in table.read.items()}
    return ChosenRows(selection.frame, accounts(read, Counter(kept_files[kept]), dropped, pair.region.name))


def _range_mask(raw: pd.DataFrame, time_column: str, request: BuildRequest) -> pd.Series:
    import pandas as pd

    mask = pd.Series(True, index=raw.index)
    if request.start:
        mask &= raw[time_column] >= pd.Timestamp(request.start, tz="UTC")
    if request.end:
        mask &= raw[time_column] < pd.Timestamp(request.end, tz="UTC") + pd.Timedelta(days=1)
    return mask


def too_many_bad(pair: PairView, table: RawTable) -> str:
    """Why the region fails for its set-aside rows ('' when their share is within max_bad_fraction)."""
    region = pair.region.name
    bad = [b for b in table.bad if b.region == region]
    read = sum(table.read.values())
    limit = pair.dataset.max_bad_fraction
    if not bad or limit is None or len(bad) / max(read, 1) <= limit:
        return ""
    first = min(bad, key=lambda b: (b.file, b.line))
    return (
        f"region '{region}': {len(bad)} of {read} rows are bad ({len(bad) / read:.2%}, more than max_bad_fraction "
        f"{limit:g}), e.g. {first.file} line {first.line}: {first.reason}; see the quarantine file"
    )


def _quarantine_path(config: Config, family: str, region: str) -> UPath:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return config.storage.reports_dir / family / region / f"quarantine-{stamp}.csv"


def _closest_hint(region: str, cache: RawCache, pair: PairView) -> str:
    """'; the data holds 'EWR' (12000 rows)': region values of the source that look like ``region``."""
    seen: Counter[str] = Counter()
    for (dataset, _), table in cache.tables.items() if cache else []:
        if dataset == pair.dataset.name:
            for (_, value), count in table.read.items():  # undeclared regions' rows included
                seen[value] += count
    close = closest_regions(region, seen)
    if not close:
        return "; the data holds no region value like it"
    return "; the data's closest region values: " + ", ".join(f"'{v}' ({seen[v]} rows)" for v in close)


def _validate_and_publish(
    config: Config,
    pair: PairView,
    raw: pd.DataFrame,
    source: str,
    as_of: dt.datetime | None,
    notes: tuple[str, ...] = (),
    *,
    min_rows: int | None = None,
) -> BuildResult:
    family, region = pair.family, pair.region.name
    outcomes = [validate_raw(raw, pair, config.data, as_of, min_rows=min_rows)]
    built = None
    if outcomes[0].success:
        try:
            built = build_features(raw, pair, config.training)
        except FeatureError as exc:
            return BuildResult(family.name, region, "failed", rows=len(raw), reason=f"region '{region}': {exc}")
        outcomes.append(validate_features(built.frame, pair, config.data, as_of, min_rows=min_rows))
    title = f"{pair.label} data quality"
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
        source=_describe_source(config, source, region),
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
    if created:  # online features (ADR 0019); an unchanged snapshot was materialised when it was published
        notes += materialise_notes(config, pair, built.frame, meta.digest)
    served, _ = write_outcomes(config.storage.outcomes_dir, pair, raw, meta.digest)
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


def _describe_source(config: Config, source: str, region: str) -> str:
    if source != SYNTHETIC:
        return f"file:{source}"
    synthetic = config.data.synthetic
    rows = synthetic.rows_of(region)
    return f"synthetic:seed={config.seed},rows={rows},start={synthetic.start},days={synthetic.days}"


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
    pairs = [config.pair_view(f, r) for f, r in config.pairs(families or None, regions or None)]
    for pair in {p.family.name: p for p in pairs}.values():
        check_family(pair)
    cache = RawCache()
    results = []
    try:
        for pair in pairs:
            result = build_view(config, pair, request, cache)
            results.append(result)
            if on_result:
                on_result(result)
    finally:
        cache.close()
    return results


__all__ = [
    "BuildRequest",
    "BuildResult",
    "ConfigError",
    "build_all",
    "build_pair",
    "build_view",
]
