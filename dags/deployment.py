"""
### Deploy: the registry's champions to the serving target, with a rollout strategy

**Triggers.** Runs when any `modelyard://champion/<family>/<region>` Asset gets an event
(promotion moved a champion) and deploys **the regions named by those events** (the other
services of the target keep what they serve). Triggered by hand, the form chooses:

* `target`: `local` (the local serving process, started if not running) or `kubernetes`
  (one Helm release per region group of `deploy.kubernetes.releases`);
* `families`, `regions`: empty means all;
* `strategy`: `rolling`, `canary` (weights `canary_steps`, each held while error rate and
  p99 of the canary are checked), `blue-green`, `shadow`;
* `version`: deploy this registered version instead of the champion (one family and region);
* `dry_run`: plan and record the diff, change nothing.
* `force`: roll out (canary, blue-green, shadow) even when the new version needs raw fields live
  clients are not sending (the planner refuses otherwise; see `deploy.rollout.raw_fields`).

**Tasks.** `select_releases` decides the releases (`local` is one release);
`deploy_release` (`DeployReleaseOperator`) is mapped over them. Each plans from the MLflow
registry, applies the strategy step by step, verifies (ready, smoke prediction, expected
versions) and emits `modelyard://deployed/<release>`
with extra `{release, target, plan_digest, versions, strategy, outcome}`. Applying the
plan already live changes nothing. **A rollback fails the task** with the reason (error
rate, latency, rejected model, failed rollout) and is not retried: the old plan serves.

**Deferrable waits.** The Kubernetes clients come from `KubernetesHook`/`HelmHook`
(connection `kubernetes_default`). While a Helm release's pods roll out, and during each
canary analysis window, the task defers to a trigger (`RolloutReadyTrigger`,
`CanaryAnalysisTrigger`) and holds no worker slot; it resumes to judge the step and go on
or roll back.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import AssetAlias, Param, dag, get_current_context, task

from modelyard.core.contracts import assets
from modelyard.plugins.dag_support import DEFAULT_ARGS, announced_by, config, families_param, regions_param
from modelyard.plugins.operators.deploy import DeployReleaseOperator

DEPLOYED = AssetAlias("modelyard-deployed")
STRATEGIES = ["rolling", "canary", "blue-green", "shadow"]


@dag(
    dag_id="deploy",
    description="Plan which versions serve each region and roll the plan out (local process or Helm on Kubernetes).",
    schedule=announced_by(assets.CHAMPIONS_ALIAS),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["modelyard", "deploy", "serving"],
    doc_md=__doc__,
    params={
        "target": Param(config().deploy.target, enum=["local", "kubernetes"], title="Target"),
        "families": families_param("Families to deploy (empty: all)."),
        "regions": regions_param("Regions to deploy (empty: all)."),
        "strategy": Param(config().deploy.rollout.strategy, enum=STRATEGIES, title="Rollout strategy"),
        "canary_steps": Param(
            config().deploy.rollout.canary_steps, type="array", items={"type": "integer", "minimum": 1, "maximum": 100},
            title="Canary steps", description="Increasing weights ending at 100, e.g. [10, 50, 100].",
        ),
        "version": Param(
            None, type=["null", "integer"], minimum=1, title="Version override",
            description="Deploy this registered version instead of the champion (select one family and one region).",
        ),
        "dry_run": Param(False, type="boolean", title="Dry run", description="Plan and record; change nothing."),
        "force": Param(
            False, type="boolean", title="Force",
            description="Roll out even when the new version needs raw fields live clients are not sending.",
        ),
    },
)  # fmt: skip
def deployment() -> None:
    """Select the releases, then deploy each in its own mapped task."""

    @task
    def select_releases() -> list[dict[str, Any]]:
        """The resolved deploy request (form, or the regions of triggering champion events) per release."""
        from modelyard.core.contracts.assets import pairs_in
        from modelyard.deploy.rollout.apply import release_names
        from modelyard.deploy.rollout.planner import selected_pairs
        from modelyard.deploy.rollout.request import DeployChoices, DeployRequest
        from modelyard.plugins.dag_support import expected_errors_fail_the_task, triggering_uris

        context = get_current_context()
        params = context["params"]
        uris = triggering_uris(context)
        # A pooled model's own champion event (champion/<family>/<group>) comes through the alias too;
        # the regions it serves as a fallback have events of their own (ADR 0015, 0023).
        if uris:
            regions = sorted({region for _, region in pairs_in(uris, "champion", config().pairs())})
            if not regions:
                print(f"no configured region among the triggering champions ({sorted(uris)}): nothing to deploy")
                return []
        else:
            regions = list(params["regions"])
        choices = DeployChoices(
            target=params["target"], strategy=params["strategy"], families=[] if uris else params["families"],
            regions=regions, version=str(params["version"]) if params["version"] else None,
            canary_steps=params["canary_steps"],
            dry_run=bool(params["dry_run"]) and not uris, force=bool(params.get("force", False)) and not uris,
        )  # fmt: skip
        # Resolved once, here: a refused form (canary steps, a version for several pairs, a release map
        # naming no region) fails before anything is mapped, at once (a retry cannot mend it), and
        # every mapped deploy gets the same concrete request.
        with expected_errors_fail_the_task():
            request = DeployRequest.resolve(config(), choices)
            selected_pairs(config(), request.plan_options())
            names = release_names(config(), request)
        payload = request.model_dump(mode="json")
        return [{"release": name, "request": payload} for name in names]

    DeployReleaseOperator.partial(
        task_id="deploy_release", outlets=[DEPLOYED], map_index_template="{{ release_label }}",
        kubernetes_conn_id="kubernetes_default",
    ).expand(item=select_releases())  # fmt: skip


# Bound to a name so a DAG file elsewhere (``modelyard init``) can import it: the DagBag
# attributes a DAG found in a file's globals to that file (its ``fileloc``).
deploy_dag = deployment()
