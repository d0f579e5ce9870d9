"""
### Monitoring: drift of what the served models see, per (family, region, version)

**Schedule.** `monitoring.schedule` in `modelyard.yaml` (default hourly). Triggered by hand,
the form chooses:

* `families`, `regions`: empty means all configured ones;
* `window_hours`: how far back the samples are read (empty: `monitoring.window_hours`).

**Inputs.** The prediction logs the servers write under
`<storage.root>/monitoring/samples/<family>/<region>/<version>/` (a sample of the raw
records, the computed features and the predictions of served requests).

**Tasks.** `select_versions` lists the served versions that have samples; `measure` is
mapped over them: input drift per feature against the version's training window (PSI on
the training quantile bins for numbers, Jensen-Shannon distance for categorical features),
prediction drift against its holdout predictions (PSI), and the volume. Each measurement
is an MLflow run (experiment `<project>/<family>/monitoring`, metrics and a drift plot),
tagged with the model version and tagging it back (`monitoring.*`); `modelyard status`
shows the verdict. A version with fewer sampled rows than `min_samples` gets no verdict.

**Outputs.** A pair over its bounds (`monitoring.defaults`, `monitoring.overrides`) emits
`modelyard://drift/<family>/<region>` with extra `{family, region, model_name, version,
run_id, reason, drifted: {feature: {statistic, value, bound}}, prediction_psi, samples}`.
The training DAG is scheduled on those events and retrains just those pairs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import AssetAlias, Param, dag, get_current_context, task

from modelyard.plugins import dag_support

DRIFTS = AssetAlias("modelyard-drift")


@dag(
    dag_id="monitoring",
    schedule=dag_support.config().monitoring.schedule,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=dag_support.DEFAULT_ARGS,
    tags=["modelyard", "monitoring", "mlflow"],
    doc_md=__doc__,
    params={
        "families": dag_support.families_param("Families to measure (empty: all)."),
        "regions": dag_support.regions_param("Regions to measure (empty: all)."),
        "window_hours": Param(
            None, type=["null", "integer"], minimum=1, maximum=24 * 90, title="Window (hours)",
            description="How far back the samples are read (empty: monitoring.window_hours).",
        ),
    },
)  # fmt: skip
def monitoring() -> None:
    """List the served versions with samples, then measure each in its own mapped task."""

    @task
    def select_versions() -> list[dict[str, str]]:
        """Served versions of the selected pairs with samples published inside the window."""
        from modelyard.training.monitoring import served_versions

        params = get_current_context()["params"]
        config = dag_support.config()
        with dag_support.expected_errors_fail_the_task():  # a bad form does not improve on retry
            pairs = config.pairs(params["families"] or None, params["regions"] or None)
        hours = params["window_hours"] or config.monitoring.window_hours
        since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)
        found = served_versions(config.storage.samples_dir, pairs, since)
        return [{"family": s.family, "region": s.region, "version": s.version} for s in found]

    @task(outlets=[DRIFTS], map_index_template="{{ version_label }}", execution_timeout=dt.timedelta(minutes=30))
    def measure(served: dict[str, str]) -> dict[str, Any]:
        """Measure one served version; emit the pair's drift Asset when it is over its bounds."""
        from airflow.sdk import Asset

        from modelyard.pipeline.assets import drift_uri
        from modelyard.plugins.hooks.mlflow import MlflowHook
        from modelyard.training.monitoring import ServedVersion, measure_pair

        context = get_current_context()
        config = dag_support.config()
        family, region, version = served["family"], served["region"], served["version"]
        context["version_label"] = f"{family}/{region}/v{version}"  # type: ignore[typeddict-unknown-key]
        folder = config.storage.samples_dir / family / region / version
        with dag_support.expected_errors_fail_the_task():
            report = measure_pair(
                config, ServedVersion(family, region, version, folder),
                tracking_uri=MlflowHook(config=config).get_tracking_uri(),
                window_hours=context["params"]["window_hours"] or None,
            )  # fmt: skip
        print(f"{family}/{region} v{version}: {report.summary} ({report.run_url})")
        if report.verdict == "drifted":
            context["outlet_events"][DRIFTS].add(Asset(drift_uri(family, region)), extra=report.asset_extra())
        return {"verdict": report.verdict, "summary": report.summary, "run_url": report.run_url or ""}

    measure.expand(served=select_versions())


# Bound to a name so a DAG file elsewhere (``modelyard init``) can import it (see dags/model_training.py).
monitoring_dag = monitoring()
