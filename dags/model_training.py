"""
### Training: one model per (family, region), registered in MLflow as the region's challenger

**Triggers.** Runs when the data-processing DAG announces `modelyard://features/<family>/<region>`
events (new validated snapshots) through the `modelyard-features` alias it is scheduled on (ADR 0023),
and then retrains **only the pairs named by those events**, each on the snapshot its event announced (the `digest` in
the event's extra). It also runs on `modelyard://drift/<family>/<region>` events through `modelyard-drift` (the
monitoring DAG saw served inputs or predictions drift): such a pair's snapshot is rebuilt
from the newest data first and retrained on it, with the drift in the run's tags
(`retrain_reason`, `drift_reason`, `drift_features`); see ADR 0010. Triggered by hand, it
trains what the form selects, each pair on its latest snapshot:

* `families`, `regions`: empty means all configured ones;
* `force`: retrain even if a registered version was already trained on the same inputs
  (same snapshot digest, settings, seed, algorithm and hyperparameters);
* `hyperparameters`: a JSON object merged over the config's params, validated against
  each pair's algorithm before anything trains (an unknown key or wrong type fails the
  run, naming the key).

**Tasks.** `select_pairs` decides the pairs and splits them into chunks (`scale` in the
config; its log says which chunk holds which pair); `train` is mapped over the chunks,
each labelled with its pairs and training them in a pool of worker processes. Per pair it
logs an MLflow run (params, metrics, slices, dataset, data-quality report, plots, model)
and registers a version with alias `challenger`; the chunk's log has one line per pair
with the outcome and the MLflow run link. Inputs already trained are not retrained: the
existing version is re-announced. A pair with too little data is **skipped** with the
reason on its line. A pair that fails fails only itself: the chunk ends failed, naming
it, after the others finished, and a retry redoes only the pairs that did not succeed.
`train_pooled_models` then trains the **pooled model** of every region group holding a trained
pair's region (by default the regions of one country; ADR 0015), on the group's snapshots
together, registered as `<family>-<group>`: it serves the group's regions that have too little
data for a model of their own. `publish_challengers` then emits, at once,
`modelyard://challenger/<family>/<region>` with extra `{family, region, model_name, version, run_id}`
for every pair registered or re-announced, and `modelyard://challenger/<family>/<group>` (the
same extra, `region` the group) for every pooled model, so promotion runs once per training run
and gates the pooled challengers too.

**MLflow.** The server comes from the Airflow connection `mlflow_default`, falling back
to `$MLFLOW_TRACKING_URI` and then `mlflow.tracking_uri` in `modelyard.yaml`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import AssetAlias, Param, dag, get_current_context, task, teardown

from modelyard.core.contracts import assets
from modelyard.plugins.dag_support import DEFAULT_ARGS, announced_by, families_param, regions_param

CHALLENGERS = AssetAlias(assets.CHALLENGERS_ALIAS)
POOLED_EVENTS = "pooled_challengers"  # XCom key: the pooled challengers' events, pushed even when a group failed


@dag(
    dag_id="training",
    description="Train each (family, region) on its newest snapshot and register the version as challenger.",
    schedule=announced_by(assets.FEATURES_ALIAS, assets.DRIFT_ALIAS),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["modelyard", "training", "mlflow"],
    doc_md=__doc__,
    params={
        "families": families_param("Families to train (empty: all)."),
        "regions": regions_param("Regions to train (empty: all)."),
        "force": Param(False, type="boolean", title="Force", description="Retrain inputs already trained."),
        "hyperparameters": Param(
            None, type=["null", "string"], title="Hyperparameter overrides",
            description='JSON object merged over the config params, e.g. {"max_depth": 4, "learning_rate": 0.05}.',
        ),
    },
)  # fmt: skip
def training() -> None:
    """Select the (family, region) pairs, train them in chunks, announce the challengers."""

    @task
    def select_pairs() -> list[list[dict[str, str]]]:
        """Pairs named by triggering feature events, else by the form, in chunks; validates the overrides."""
        from modelyard.core.contracts.assets import pairs_in
        from modelyard.plugins.dag_support import chunked, config, expected_errors_fail_the_task, triggering_uris
        from modelyard.training.job import validate_override
        from modelyard.training.models import parse_params_json

        context = get_current_context()
        params = context["params"]
        uris = triggering_uris(context)
        if uris:
            named = set(pairs_in(uris, "features", config().pairs())) | set(pairs_in(uris, "drift", config().pairs()))
            pairs = [pair for pair in config().pairs() if pair in named]
        else:
            with expected_errors_fail_the_task():  # a bad form does not improve on retry
                pairs = config().pairs(params["families"] or None, params["regions"] or None)
                validate_override(config(), pairs, parse_params_json(params["hyperparameters"]))
        return chunked(pairs)

    @task(map_index_template="{{ chunk_label }}", execution_timeout=dt.timedelta(hours=2))
    def train(chunk: list[dict[str, str]]) -> dict[str, Any]:
        """Train the chunk's pairs in a worker pool, one log line per pair with its MLflow run."""
        import functools

        from modelyard.core.tracking import require_reachable
        from modelyard.monitoring.measure import drift_event
        from modelyard.plugins.dag_support import config, expected_errors_fail_the_task, run_chunk
        from modelyard.plugins.hooks.mlflow import MlflowHook
        from modelyard.plugins.stage_pairs import TrainRequest, train_one
        from modelyard.training.job import event_digest
        from modelyard.training.models import parse_params_json

        context = get_current_context()
        manual = not context["triggering_asset_events"]
        params = context["params"]
        triggering = context["triggering_asset_events"]
        drifted = {
            f"{p['family']}/{p['region']}": extra
            for p in chunk
            if (extra := drift_event(triggering, p["family"], p["region"])) is not None
        }
        digests = {
            f"{p['family']}/{p['region']}": digest
            for p in chunk
            if (digest := event_digest(triggering, p["family"], p["region"])) is not None
        }
        with expected_errors_fail_the_task():  # bad params: retrying cannot help (an unreachable server is retried)
            request = TrainRequest(
                tracking_uri=require_reachable(MlflowHook(config=config()).get_tracking_uri()),
                drift=drifted,
                digests=digests,
                force=bool(params["force"]) if manual else False,
                params_override=parse_params_json(params["hyperparameters"]) if manual else None,
            )
        return run_chunk(context, chunk, functools.partial(train_one, request))

    @teardown
    @task(outlets=[CHALLENGERS])
    def publish_challengers() -> list[str]:
        """Announce every challenger of the run at once, pooled models' too (one promotion run per training run)."""
        from airflow.sdk import Asset

        from modelyard.plugins.dag_support import publish_outcomes

        context = get_current_context()
        announced = publish_outcomes(context, "train", CHALLENGERS)
        for event in context["ti"].xcom_pull(task_ids="train_pooled_models", key=POOLED_EVENTS) or []:
            context["outlet_events"][CHALLENGERS].add(Asset(event["uri"]), extra=event["extra"])
            print(f"announce {event['uri']} {event['extra']}")
            announced.append(event["uri"])
        return announced

    @task(trigger_rule="all_done", execution_timeout=dt.timedelta(hours=2))
    def train_pooled_models(chunks: Any) -> list[str]:
        """Train the pooled model of each group holding a selected region; one log line per (family, group).

        ``chunks``: what ``select_pairs`` returned (lists of ``{family, region}``), typed Any because the
        DAG passes it as an XComArg. The challengers' events go to XCom before a failed group fails the
        task, so ``publish_challengers`` announces the others.
        """
        from airflow.sdk.exceptions import AirflowSkipException

        from modelyard.core.tracking import require_reachable
        from modelyard.plugins.dag_support import config, expected_errors_fail_the_task
        from modelyard.plugins.hooks.mlflow import MlflowHook
        from modelyard.training.pooled import challenger_events, pooled_selection, train_pooled

        if chunks is None:  # select_pairs failed (a refused form): it says why, and the run fails on it
            raise AirflowSkipException("select_pairs selected no pairs (it failed): no pooled model to train")
        families, groups = pooled_selection(config(), [(p["family"], p["region"]) for c in chunks for p in c])
        if not groups:
            print("no selected region is in a region group: no pooled model to train")
            return []
        with expected_errors_fail_the_task():
            uri = require_reachable(MlflowHook(config=config()).get_tracking_uri())
        results = train_pooled(config(), families, groups, tracking_uri=uri)
        for result in results:
            print(f"{result.family}/{result.region}: {result.status} {result.version or ''} {result.reason or ''}")
        events = challenger_events(results)
        get_current_context()["ti"].xcom_push(POOLED_EVENTS, events)
        failed = [f"{r.family}/{r.region}" for r in results if r.status == "failed"]
        if failed:
            raise RuntimeError(f"pooled training failed for {', '.join(failed)} (see the lines above)")
        return [event["uri"] for event in events]

    @task
    def every_pair_trained() -> None:
        """The run's verdict: runs only if every chunk and the pooled models succeeded (all_success).

        ``train_pooled_models`` runs whatever became of single pairs (all_done), so without this leaf
        a failed chunk would leave a green run behind it.
        """

    chunks = select_pairs()
    trained = train.expand(chunk=chunks)
    pooled = train_pooled_models(chunks)
    trained >> pooled
    [trained, pooled] >> publish_challengers()
    [trained, pooled] >> every_pair_trained()


# Bound to a name so a DAG file elsewhere (``modelyard init``) can import it: the DagBag
# attributes a DAG found in a file's globals to that file (its ``fileloc``).
training_dag = training()
