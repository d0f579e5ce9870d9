"""
### Training: one model per (family, region), registered in MLflow as the region's challenger

**Triggers.** Runs when any `modelyard://features/<family>/<region>` Asset gets an event
(the data-processing DAG published a new validated snapshot) and then retrains **only the
pairs named by those events**. It also runs on `modelyard://drift/<family>/<region>` (the
monitoring DAG saw served inputs or predictions drift): such a pair's snapshot is rebuilt
from the newest data first and retrained on it, with the drift in the run's tags
(`retrain_reason`, `drift_reason`, `drift_features`); see ADR 0010. Triggered by hand, it trains what the form selects:

* `families`, `regions`: empty means all configured ones;
* `force`: retrain even if a registered version was already trained on the same inputs
  (same snapshot digest, settings, seed, algorithm and hyperparameters);
* `hyperparameters`: a JSON object merged over the config's params, validated against
  each pair's algorithm before anything trains (an unknown key or wrong type fails the
  run, naming the key).

**Tasks.** `select_pairs` decides the pairs; `train` is mapped over them (one task per
pair). Each logs an MLflow run (params, metrics, slices, dataset, data-quality report,
plots, model) and registers a version with alias `challenger`, then emits
`modelyard://challenger/<family>/<region>` with extra `{family, region, model_name,
version, run_id}`. Inputs already trained are not retrained: the existing version is
re-announced. A pair with too little data is **skipped** with the reason in its log.

**MLflow.** The server comes from the Airflow connection `mlflow_default`, falling back
to `$MLFLOW_TRACKING_URI` and then `mlflow.tracking_uri` in `modelyard.yaml`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import AssetAlias, AssetAny, Param, dag, get_current_context, task

from modelyard.plugins.dag_support import DEFAULT_ARGS, drift_assets, families_param, feature_assets, regions_param

CHALLENGERS = AssetAlias("modelyard-challengers")


@dag(
    dag_id="training",
    schedule=AssetAny(*feature_assets(), *drift_assets()),
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
            "", type="string", title="Hyperparameter overrides",
            description='JSON object merged over the config params, e.g. {"max_depth": 4, "learning_rate": 0.05}.',
        ),
    },
)  # fmt: skip
def training() -> None:
    """Select the (family, region) pairs, then train each in its own mapped task."""

    @task
    def select_pairs() -> list[dict[str, str]]:
        """Pairs named by triggering feature events, else by the form; validates the overrides."""
        from modelyard.pipeline.assets import pairs_in
        from modelyard.plugins.dag_support import config, expected_errors_fail_the_task, triggering_uris
        from modelyard.training.models import parse_params_json
        from modelyard.training.train import validate_override

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
        return [{"family": family, "region": region} for family, region in pairs]

    @task(outlets=[CHALLENGERS], map_index_template="{{ pair_label }}", execution_timeout=dt.timedelta(hours=1))
    def train(pair: dict[str, str]) -> dict[str, Any]:
        """Train one pair, register the challenger and announce it on the challenger Asset."""
        from airflow.sdk import Asset
        from airflow.sdk.exceptions import AirflowSkipException

        from modelyard.pipeline.assets import challenger_uri
        from modelyard.plugins.dag_support import config, expected_errors_fail_the_task
        from modelyard.plugins.hooks.mlflow import MlflowHook
        from modelyard.training.models import parse_params_json
        from modelyard.training.monitoring import drift_event, retrain_drifted
        from modelyard.training.train import train_pair

        context = get_current_context()
        family, region = pair["family"], pair["region"]
        context["pair_label"] = f"{family}/{region}"  # type: ignore[typeddict-unknown-key]
        manual = not context["triggering_asset_events"]
        params = context["params"]
        drift = drift_event(context["triggering_asset_events"], family, region)
        with expected_errors_fail_the_task():  # missing snapshot, bad params: retrying cannot help
            result = retrain_drifted(
                config(), family, region, drift, tracking_uri=MlflowHook(config=config()).get_tracking_uri()
            ) if drift is not None else train_pair(
                config(), family, region,
                tracking_uri=MlflowHook(config=config()).get_tracking_uri(),
                force=bool(params["force"]) if manual else False,
                params_override=parse_params_json(params["hyperparameters"]) if manual else None,
            )  # fmt: skip
        if result.status == "skipped":
            raise AirflowSkipException(f"{family}/{region} skipped: {result.reason}")
        extra: dict[str, Any] = result.asset_extra()
        context["outlet_events"][CHALLENGERS].add(Asset(challenger_uri(family, region)), extra=extra)
        return {"status": result.status, **extra, "run_url": result.run_url or ""}

    train.expand(pair=select_pairs())


# Bound to a name so a DAG file elsewhere (``modelyard init``) can import it: the DagBag
# attributes a DAG found in a file's globals to that file (its ``fileloc``).
training_dag = training()
