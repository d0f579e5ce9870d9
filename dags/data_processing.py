"""Data processing: raw bookings → validated, content-addressed feature snapshots.

One mapped task per (family, region). Each validates the raw bookings and the features
with Great Expectations and publishes an immutable snapshot; a region that fails
validation fails its own task with the reason (column, expectation, offending rows)
and the others go on. A newly published snapshot emits an Asset event on
``modelyard://features/<family>/<region>`` with ``{family, region, digest, rows}``;
the training DAG is scheduled on those assets. Re-running on the same input publishes
nothing and emits nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import Asset, AssetAlias, Param, dag, get_current_context, task

from modelyard.plugins import dag_support

FEATURES_ALIAS = "modelyard-features"

DOC_MD = """
### Data processing

Builds the feature snapshot of every selected **(family, region)**:
source → Great Expectations (raw) → features → Great Expectations (features) → snapshot.

* **Params**: `families` and `regions` (empty: all from the config), an optional
  `start`/`end` date range (UTC days), and `source` (`synthetic`, or a CSV/Parquet path
  or glob; empty: the config's `data.source`).
* **Outputs**: `<storage.root>/features/<family>/<region>/<digest>.parquet` with its
  metadata and HTML data-quality report; an Asset event per newly published snapshot.
* **Failures**: a region whose data fails validation fails its mapped task with a
  message naming the column, the expectation and the count of offending rows, and
  writes the report under `<storage.root>/reports/`. A region with too few rows is
  skipped. Failed validation is not retried.
"""


@dag(
    dag_id="data_processing",
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
            "",
            type="string",
            title="Source",
            description="'synthetic', or a CSV/Parquet path or glob; empty: data.source from the config.",
        ),
    },
)
def data_processing() -> None:
    @task
    def select_pairs(params: dict[str, Any] | None = None) -> list[dict[str, str]]:
        """The (family, region) pairs this run builds; unknown names fail here, before any work."""
        chosen = params or {}
        with dag_support.expected_errors_fail_the_task():
            pairs = dag_support.config().pairs(chosen.get("families") or None, chosen.get("regions") or None)
        return [{"family": family, "region": region} for family, region in pairs]

    @task(outlets=[AssetAlias(FEATURES_ALIAS)], map_index_template="{{ pair_label }}")
    def build_snapshot(pair: dict[str, str], params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Build, validate and publish one (family, region); emit its asset event when new."""
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from modelyard.pipeline.assets import features_uri
        from modelyard.pipeline.build import BuildRequest, build_pair

        context = get_current_context()
        context["pair_label"] = f"{pair['family']}/{pair['region']}"  # type: ignore[typeddict-unknown-key]
        chosen = params or {}
        request = BuildRequest(
            source=chosen.get("source") or None,
            start=dt.date.fromisoformat(chosen["start"]) if chosen.get("start") else None,
            end=dt.date.fromisoformat(chosen["end"]) if chosen.get("end") else None,
        )
        with dag_support.expected_errors_fail_the_task():
            result = build_pair(dag_support.config(), pair["family"], pair["region"], request)
        if result.status == "failed":
            report = f" (report: {result.report})" if result.report else ""
            raise AirflowFailException(f"{result.family}/{result.region}: {result.reason}{report}")
        if result.status == "skipped":
            raise AirflowSkipException(f"{result.family}/{result.region}: {result.reason}")
        if result.status == "published":
            extra: dict[str, Any] = {
                "family": result.family,
                "region": result.region,
                "digest": result.digest,
                "rows": result.rows,
            }
            context["outlet_events"][AssetAlias(FEATURES_ALIAS)].add(
                Asset(features_uri(result.family, result.region)), extra=extra
            )
        return {"family": result.family, "region": result.region, "status": result.status, "digest": result.digest}

    build_snapshot.expand(pair=select_pairs())


# Bound to a name so a DAG file elsewhere (``modelyard init``) can import it: the DagBag
# attributes a DAG found in a file's globals to that file (its ``fileloc``).
data_processing_dag = data_processing()
