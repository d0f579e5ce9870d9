"""
### Housekeeping: remove old feature snapshots and prediction logs, keep what is still needed

**Schedule.** `retention.schedule` in `modelyard.yaml` (default daily). Triggered by hand,
the form chooses:

* `families`, `regions`: empty means all configured ones (and the region groups serving them);
* `snapshots`: newest snapshots kept per pair (empty: `retention.snapshots`);
* `sample_days`: prediction logs kept, in days (empty: `retention.sample_days`);
* `monitoring_days`: monitoring runs kept in MLflow, in days (empty: `retention.monitoring_days`);
* `versions`: also delete model versions, keeping the newest N of each model (empty:
  `retention.versions`; unset there too, every version stays);
* `dry_run`: list what would be removed in the task log, remove nothing.

**What stays.** The snapshot `LATEST` names (what training reads next), the newest
`snapshots` of each pair, and every snapshot a registered model version was trained on
(`data_digest`) or pooled (`pooled_snapshots`): the gates, the monitoring reference and the
lineage in MLflow read them. Model versions are deleted only when `versions` is set: every
version an alias holds, the newest `versions` and every version a plan of the deploy target
names (the local server's plan files; every revision in each Helm release's history, read on
the connection `kubernetes_default`) stay, and if those plans cannot be read the task fails
and nothing is removed. A deleted version's snapshot goes in the same run (so does one a person
deleted in the MLflow UI). Prediction-log files newer than `sample_days` stay
(the config refuses fewer days than `monitoring.window_hours` reads), and so do the data
stage's outcome files (`ingested-*.parquet`) written since.

**What goes.** Every other snapshot (its JSON first, then its data and report), data files
no snapshot names once a day old (a build that died before publishing), and older
prediction-log and outcome files, and monitoring runs older than `monitoring_days` (default 90)
except the latest of each version, which its page links to (deleted softly: `mlflow gc` purges
them). The registry is read before anything is removed: if MLflow
does not answer, the task fails and nothing is removed. The log lists each removal and its
size (`modelyard prune` does the same from a shell; docs/adr/0035-retention.md, 0036).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from modelyard.plugins import dag_support


@dag(
    dag_id="housekeeping",
    description="Remove old feature snapshots, prediction logs and (opt-in) model versions; keep what is needed.",
    schedule=dag_support.config().retention.schedule,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=dag_support.DEFAULT_ARGS,
    tags=["modelyard", "housekeeping"],
    doc_md=__doc__,
    params={
        "families": dag_support.families_param("Families to prune (empty: all)."),
        "regions": dag_support.regions_param("Regions to prune (empty: all)."),
        "snapshots": Param(
            None, type=["null", "integer"], minimum=1, title="Snapshots kept per pair",
            description="Newest snapshots kept besides the needed ones (empty: retention.snapshots).",
        ),
        "sample_days": Param(
            None, type=["null", "integer"], minimum=1, maximum=3650, title="Prediction logs kept (days)",
            description="Prediction-log files older than this are removed (empty: retention.sample_days).",
        ),
        "monitoring_days": Param(
            None, type=["null", "integer"], minimum=1, maximum=3650, title="Monitoring runs kept (days)",
            description="Monitoring runs older than this are deleted in MLflow; each version's latest stays "
            "(empty: retention.monitoring_days).",
        ),
        "versions": Param(
            None, type=["null", "integer"], minimum=1, title="Model versions kept per model",
            description="Also delete model versions: the newest N stay, with every aliased or served one "
            "(empty: retention.versions; unset keeps every version).",
        ),
        "dry_run": Param(False, type="boolean", title="Dry run", description="List what would go; remove nothing."),
    },
)  # fmt: skip
def housekeeping() -> None:
    """Plan what to remove against the registry, then remove it (or only list it)."""

    @task(execution_timeout=dt.timedelta(minutes=60))
    def prune() -> dict[str, Any]:
        """Read the registry, plan, log every removal with its size, and remove (unless a dry run)."""
        from modelyard.core.tracking import require_reachable
        from modelyard.deploy.rollout import pruning
        from modelyard.plugins.hooks.mlflow import MlflowHook

        params = get_current_context()["params"]
        config = dag_support.config()
        tracking_uri = require_reachable(MlflowHook(config=config).get_tracking_uri())
        with dag_support.expected_errors_fail_the_task():  # a bad form does not improve on retry
            return pruning.run(
                config,
                tracking_uri,
                families=params["families"] or None,
                regions=params["regions"] or None,
                keep=params["snapshots"],
                sample_days=params["sample_days"],
                versions=params["versions"],
                monitoring_days=params["monitoring_days"],
                dry_run=params["dry_run"],
                releaser=_releaser(config, params["versions"]),
            )

    prune()


def _releaser(config: Any, versions: int | None) -> Any:
    """Helm on the connection ``kubernetes_default`` when model versions are pruned and Kubernetes releases
    may serve them (``deploy.target: kubernetes``, or a deploy recorded one); else None."""
    from modelyard.deploy.rollout.version_retention import kubernetes_releases

    pruned = versions if versions is not None else config.retention.versions
    if pruned is None or not kubernetes_releases(config):
        return None
    from modelyard.deploy.rollout.kube_deploy import chart_path
    from modelyard.plugins.hooks.helm import HelmHook

    settings = config.deploy.kubernetes
    helm = HelmHook(timeout_seconds=settings.timeout_seconds)
    return helm.get_releases(settings.namespace, chart_path(config))


# Bound to a name so a DAG file elsewhere (``modelyard init``) can import it (see dags/model_training.py).
housekeeping_dag = housekeeping()
