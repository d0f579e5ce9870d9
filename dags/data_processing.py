"""Data processing: raw bookings → validated, content-addressed feature snapshots.

One mapped task per chunk of (family, region) pairs (``scale`` in the config, ADR 0008),
each running its pairs in a pool of worker processes. Each pair's raw bookings and
features are validated with Great Expectations and an immutable snapshot is published; a
region that fails validation fails only itself, named with the reason (column,
expectation, offending rows) in its chunk's log, and the others go on. When the chunks
are done, ``publish_snapshots`` emits one Asset event per newly published snapshot on
``modelyard://features/<family>/<region>`` with ``{family, region, digest, rows}``, all at
once through the ``modelyard-features`` alias, so the training DAG scheduled on it runs once per data run. Re-running on
the same input publishes nothing and emits nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from airflow.sdk import AssetAlias, Param, dag, get_current_context, task, teardown

from modelyard.core.contracts import assets
from modelyard.plugins import dag_support

if TYPE_CHECKING:
    from modelyard.pipeline.build import BuildRequest

FEATURES_ALIAS = assets.FEATURES_ALIAS

DOC_MD = """
### Data processing

Builds the feature snapshot of every selected **(family, region)**:
source → Great Expectations (raw) → features → Great Expectations (features) → snapshot.

* **Params**: `families` and `regions` (empty: all from the config), an optional
  `start`/`end` date range (UTC days), and `source` (`synthetic`, or a CSV/Parquet path
  or glob; empty: the config's `data.source`).
* **Tasks**: `select_pairs` (its log lists which chunk holds which pair), `build_snapshots`
  mapped over chunks (labelled with their pairs; the log has one line per pair: outcome,
  rows, validation, digest), `publish_snapshots` (emits the run's Asset events at once).
* **Outputs**: `<storage.root>/features/<family>/<region>/<digest>.parquet` with its
  metadata and HTML data-quality report; an Asset event per newly published snapshot.
* **Failures**: a region whose data fails validation is named in its chunk's log and in
  the chunk's failure, with the column, the expectation and the count of offending rows,
  and its report is written under `<storage.root>/reports/`; the chunk's other pairs are
  published and announced. A region with too few rows is skipped. Failed validation is not
  retried; a retry (other errors) redoes only the pairs that did not succeed.
"""


@dag(
    dag_id="data_processing",
    description="Ingest, validate and publish one feature snapshot per (family, region).",
    schedule=dag_support.config().schedules.data_processing,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=dag_support.DEFAULT_ARGS,
    doc_md=DOC_MD,
    tags=["modelyard", "data"],
    params={
        "families": dag_support.families_param(),
        "regions": dag_support.regions_param(),
        "start": Param(None, type=["null", "string"], format="date", title="From (UTC day)"),
        "end": Param(None, type=["null", "string"], format="date", title="To (UTC day, inclusive)"),
        "source": Param(
            None,
            type=["null", "string"],
            title="Source",
            description="'synthetic', or a CSV/Parquet path or glob; empty: datasets[].source from the config.",
        ),
    },
)
def data_processing() -> None:
    @task
    def select_pairs(params: dict[str, Any] | None = None) -> list[list[dict[str, str]]]:
        """The run's (family, region) pairs in chunks; unknown names fail here, before any work."""
        chosen = params or {}
        with dag_support.expected_errors_fail_the_task():
            pairs = dag_support.config().pairs(chosen.get("families") or None, chosen.get("regions") or None)
            _build_request(chosen)  # a date range that ends before it starts fails here, before any chunk
        return dag_support.chunked(pairs)

    @task(map_index_template="{{ chunk_label }}")
    def build_snapshots(chunk: list[dict[str, str]], params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Build, validate and publish the chunk's pairs in a worker pool, one log line per pair."""
        import functools

        from modelyard.plugins.stage_pairs import build_one

        request = _build_request(params or {})
        return dag_support.run_chunk(get_current_context(), chunk, functools.partial(build_one, request))

    @teardown
    @task(outlets=[AssetAlias(FEATURES_ALIAS)])
    def publish_snapshots() -> list[str]:
        """Announce every new snapshot of the run at once (one training run per data run)."""
        return dag_support.publish_outcomes(get_current_context(), "build_snapshots", AssetAlias(FEATURES_ALIAS))

    build_snapshots.expand(chunk=select_pairs()) >> publish_snapshots()


def _build_request(chosen: dict[str, Any]) -> BuildRequest:
    """The form's source and date range as a build request (raises ``BuildRequestError`` for start after end)."""
    from modelyard.pipeline.build import BuildRequest

    return BuildRequest(
        source=chosen.get("source") or None,
        start=dt.date.fromisoformat(chosen["start"]) if chosen.get("start") else None,
        end=dt.date.fromisoformat(chosen["end"]) if chosen.get("end") else None,
    )


# Bound to a name so a DAG file elsewhere (``modelyard init``) can import it: the DagBag
# attributes a DAG found in a file's globals to that file (its ``fileloc``).
data_processing_dag = data_processing()
