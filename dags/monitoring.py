"""
### Monitoring: drift of what the served models see, per (family, region, version)

**Schedule.** `monitoring.schedule` in `modelyard.yaml` (default hourly). Triggered by hand,
the form chooses:

* `families`, `regions`: empty means all configured ones;
* `window_hours`: how far back the samples are read (empty: `monitoring.window_hours`).

**Inputs.** The prediction logs the servers write under
`<storage.root>/monitoring/samples/<family>/<region>/<version>/` (a sample of the raw
records, the computed features and the predictions of served requests).

**Tasks.** `select_pairs` lists the pairs with a served version that published samples in
the window and splits them into chunks (`scale` in `modelyard.yaml`, as the other stages:
a thousand pairs never make a thousand task instances); `measure` runs a chunk's pairs in a
pool of worker processes, one log line per pair with its verdict and its MLflow monitoring
run. Per served version: input drift per feature against the version's training window (PSI
on the training quantile bins for numbers, Jensen-Shannon distance for categorical
features), prediction drift against its holdout predictions (PSI), the volume and the error
rate, and live AUC / MAE where outcomes arrived. Each measurement is an MLflow run
(experiment `<project>/<family>/monitoring`, metrics and a drift plot), tagged with the
model version and tagging it back (`monitoring.*`); `modelyard status` shows the verdict. A
version with fewer sampled rows than `min_samples` gets no verdict. `publish_drifts`
announces every drifted pair of the run at once, so one monitoring run triggers one
training run.

**Outputs.** A pair over its bounds (`monitoring.defaults`, `monitoring.overrides`) emits
`modelyard://drift/<family>/<region>` with extra `{family, region, model_name, version,
run_id, reason, drifted: {feature: {statistic, value, bound}}, prediction_psi, samples}`.
The training DAG is scheduled on those events and retrains just those pairs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import AssetAlias, Param, dag, get_current_context, task, teardown

from modelyard.core.contracts import assets
from modelyard.plugins import dag_support

DRIFTS = AssetAlias(assets.DRIFT_ALIAS)


@dag(
    dag_id="monitoring",
    description="Measure drift of what serves against each version's training window and emit drift Assets.",
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
    """Select the pairs with samples, measure them in chunks, announce the drifted ones."""

    @task
    def select_pairs() -> list[list[dict[str, str]]]:
        """Pairs of the form with a served version that published samples inside the window, in chunks."""
        from modelyard.monitoring.measure import served_versions

        params = get_current_context()["params"]
        config = dag_support.config()
        with dag_support.expected_errors_fail_the_task():  # a bad form does not improve on retry
            pairs = config.pairs(params["families"] or None, params["regions"] or None)
        found = {(s.family, s.region) for s in served_versions(config.storage.samples_dir, pairs, _since(params))}
        return dag_support.chunked([pair for pair in pairs if pair in found])

    @task(map_index_template="{{ chunk_label }}", execution_timeout=dt.timedelta(minutes=60))
    def measure(chunk: list[dict[str, str]]) -> dict[str, Any]:
        """Measure the chunk's pairs in a worker pool, one log line per pair with its verdict and MLflow run."""
        import functools

        from modelyard.core.tracking import require_reachable
        from modelyard.plugins.hooks.mlflow import MlflowHook
        from modelyard.plugins.stage_pairs import MonitorRequest, monitor_one

        context = get_current_context()
        params = context["params"]
        config = dag_support.config()
        request = MonitorRequest(
            tracking_uri=require_reachable(MlflowHook(config=config).get_tracking_uri()),
            since=_since(params).isoformat(),
            window_hours=params["window_hours"] or None,
        )
        return dag_support.run_chunk(context, chunk, functools.partial(monitor_one, request))

    @teardown
    @task(outlets=[DRIFTS])
    def publish_drifts() -> list[str]:
        """Announce every drifted pair of the run at once (one training run per monitoring run)."""
        return dag_support.publish_outcomes(get_current_context(), "measure", DRIFTS)

    measure.expand(chunk=select_pairs()) >> publish_drifts()


def _since(params: Any) -> dt.datetime:
    hours = params["window_hours"] or dag_support.config().monitoring.window_hours
    return dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)


# Bound to a name so a DAG file elsewhere (``modelyard init``) can import it (see dags/model_training.py).
monitoring_dag = monitoring()
