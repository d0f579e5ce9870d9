"""
### Batch scoring: a table's rows scored by each region's champion, published as Parquet

**Triggers.** Runs when any `modelyard://champion/<family>/<region>` Asset gets an event
(promotion moved a champion) and rescores **the pairs named by those events** with their new
champion; on the cron `$MODELYARD_BATCH_SCHEDULE` when it is set (unset: no schedule). Triggered
by hand, the form chooses:

* `families`, `regions`: empty means all configured ones;
* `input`: a CSV/Parquet path, glob or URL (`{family}` and `{region}` are replaced per pair);
  empty: `$MODELYARD_BATCH_INPUT`. A manual run without any input is refused; a champion event
  or the schedule with none is skipped (nothing to score is not an error). A local input that
  names no file for any selected pair fails `select_pairs` at once, naming the path;
* `alias` (`champion` by default) or `version` (one family and one region);
* `chunk_rows`: rows read, featurised and predicted at a time (bounds a worker's memory);
* `force`: rescore even when the predictions of this input by this version are published.

**Tasks.** `select_pairs` decides the pairs and splits them into chunks (`scale` in the
config); `score` is mapped over the chunks and scores each pair in a worker pool: the rows of
the pair's region (all rows when the input has no region column), featurised with the
version's own feature spec and predicted as the server answers (a classifier's
positive-class probability, a regressor's value). A window aggregate the input does not carry
is computed from its rows as the data stage computes it. Each pair's predictions are published at
once to `<storage.root>/predictions/<family>/<region>/predictions.parquet`: the key column
(the dataset's `key_column`, else `input_row`), `prediction`, `model_version`,
`spec_digest`, and in the file's footer what was scored. The same input scored by the same
version again changes nothing (`unchanged`).

**Outputs.** `publish_predictions` emits, at once, for every pair scored
`modelyard://predictions/<family>/<region>` with extra `{family, region, model_name,
version, spec_digest, input_digest, rows, path}`.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from airflow.sdk import (
    AssetAlias,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Param,
    dag,
    get_current_context,
    task,
    teardown,
)

from modelyard.core.contracts import assets
from modelyard.plugins import dag_support

PREDICTIONS = AssetAlias("modelyard-predictions")
ALIASES = ["champion", "challenger", "previous-champion"]
# Read where the DAG is parsed, like the config: what a scheduled or champion-triggered run scores.
DEFAULT_INPUT = os.environ.get("MODELYARD_BATCH_INPUT") or None
SCHEDULE = os.environ.get("MODELYARD_BATCH_SCHEDULE") or None


def _schedule() -> Any:
    champions = dag_support.announced_by(assets.CHAMPIONS_ALIAS)
    if SCHEDULE is None:
        return champions
    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(SCHEDULE, timezone="UTC"), assets=champions)


@dag(
    dag_id="batch_scoring",
    description="Score a table with each region's champion, in chunks, and publish the predictions as Parquet.",
    schedule=_schedule(),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=dag_support.DEFAULT_ARGS,
    tags=["modelyard", "batch", "serving"],
    doc_md=__doc__,
    params={
        "families": dag_support.families_param("Families to score (empty: all)."),
        "regions": dag_support.regions_param("Regions to score (empty: all)."),
        "input": Param(
            DEFAULT_INPUT, type=["null", "string"], title="Input",
            description="CSV/Parquet path, glob or URL; {family}, {region} replaced (empty: $MODELYARD_BATCH_INPUT).",
        ),
        "alias": Param("champion", enum=ALIASES, title="Alias", description="The registry alias that scores."),
        "version": Param(
            None, type=["null", "integer"], minimum=1, title="Version override",
            description="Score with this registered version instead of the alias (select one family and one region).",
        ),
        "chunk_rows": Param(
            100_000, type="integer", minimum=1, maximum=10_000_000, title="Rows per chunk",
            description="Rows read, featurised and predicted at a time (bounds a worker's memory).",
        ),
        "force": Param(
            False, type="boolean", title="Force", description="Rescore input already scored by this version."
        ),
    },
)  # fmt: skip
def batch_scoring() -> None:
    """Select the pairs, score them in chunks, announce the published predictions at once."""

    @task
    def select_pairs() -> list[list[dict[str, str]]]:
        """Pairs named by triggering champion events, else by the form, in chunks; the form and a local input
        are checked before any model is loaded."""
        from airflow.sdk.exceptions import AirflowSkipException

        from modelyard.core.contracts.assets import pairs_in
        from modelyard.deploy.batch.stage import check_input, check_selection

        context = get_current_context()
        params = context["params"]
        uris = dag_support.triggering_uris(context)
        config = dag_support.config()
        with dag_support.expected_errors_fail_the_task():  # a bad form does not improve on retry
            if uris:
                pairs = pairs_in(uris, "champion", config.pairs())
            else:
                pairs = config.pairs(params["families"] or None, params["regions"] or None)
                check_selection(pairs, params["version"], params["input"], manual=_manual(context))
            if not params["input"]:
                raise AirflowSkipException("no input to score: set MODELYARD_BATCH_INPUT or give input in the form")
            check_input(pairs, params["input"])
        return dag_support.chunked(pairs)

    @task(map_index_template="{{ chunk_label }}", execution_timeout=dt.timedelta(hours=2))
    def score(chunk: list[dict[str, str]]) -> dict[str, Any]:
        """Score the chunk's pairs in a worker pool: one log line per pair with its rows, version and file."""
        import functools

        from modelyard.core.tracking import require_reachable
        from modelyard.deploy.batch.model import trust_from_env
        from modelyard.deploy.batch.scoring import ScoreRequest
        from modelyard.deploy.batch.stage import BatchRequest, score_one
        from modelyard.plugins.hooks.mlflow import MlflowHook

        context = get_current_context()
        params = context["params"]
        manual = not context["triggering_asset_events"]
        config = dag_support.config()
        with dag_support.expected_errors_fail_the_task():
            choices = ScoreRequest(  # a champion event scores with the champion, whatever the form's defaults
                input=params["input"], alias=params["alias"] if manual and not params["version"] else None,
                version=params["version"] if manual else None, chunk_rows=params["chunk_rows"],
                force=bool(params["force"]) and manual, trust=trust_from_env(os.environ),
            )  # fmt: skip
        request = BatchRequest(config, require_reachable(MlflowHook(config=config).get_tracking_uri()), choices)
        return dag_support.run_chunk(context, chunk, functools.partial(score_one, request))

    @teardown
    @task(outlets=[PREDICTIONS])
    def publish_predictions() -> list[str]:
        """Announce every pair's published predictions at once (one event per pair scored)."""
        return dag_support.publish_outcomes(get_current_context(), "score", PREDICTIONS)

    score.expand(chunk=select_pairs()) >> publish_predictions()


def _manual(context: Any) -> bool:
    run_type = context["dag_run"].run_type
    return getattr(run_type, "value", run_type) == "manual"


# Bound to a name so a DAG file elsewhere (``modelyard init``) can import it (see dags/model_training.py).
batch_scoring_dag = batch_scoring()
