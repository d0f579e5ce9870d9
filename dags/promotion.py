"""
### Promotion: validation gates, champion aliases, rollback

**Triggers.** Runs when a `modelyard://challenger/<family>/<region>` Asset gets an event
(training registered a challenger), or `modelyard://challenger/<family>/<group>` (the pooled
model of a region group, ADR 0015), and then decides **only the pairs named by those
events**. Triggered by hand, the form chooses:

* `families`, `regions`: empty means all configured ones;
* `groups`: decide the pooled models of these region groups instead of regions (like
  `modelyard promote --group`); leave `regions` empty;
* `action`: `evaluate` (run the gates on each challenger, promote those that pass),
  `promote-version` (make `version` the champion of exactly one pair, with a `reason`),
  or `rollback` (move `champion` back to `previous-champion`);
* `force`: decide again on challengers already decided (otherwise they are left alone).

**Tasks.** `select_pairs` decides the pairs and splits them into chunks (`scale` in the
config); `decide` is mapped over the chunks, each labelled with its pairs and deciding
them in a pool of worker processes. Its log has one line per pair (outcome, summary, a
link to the model version in MLflow) followed by the pair's gate table. A challenger that
fails a gate is a recorded decision (`rejected`), not a failure; MLflow keeps the table
on the model version and its run. A pair that cannot be decided fails only itself (named
in the chunk's failure; the run fails on it, as on a refused form: `every_pair_decided` is
the run's verdict). `publish_champions` then emits, at once, for the pairs whose
champion moved (promoted, rolled back) `modelyard://champion/<family>/<region>` with
extra `{family, region, model_name, version}`, so the deploy stage runs once per
promotion run. A pooled champion that moved is announced as `modelyard://champion/<family>/<group>`
and, for every region of the group it serves (no champion of its own), as that region's
champion event with `pooled_group` in the extra: the deploy stage then serves those regions
from it as fallbacks.

**Approval.** Where `promotion.approval` is `required` for a pair (config; per family,
region or pair), `decide` records a challenger that passed every gate as
`awaiting-approval` instead of promoting it; `approve` (one Required Action per such pair,
labelled `<family>/<region>`: Browse → Required Actions) shows the gate table, the metrics
against the champion and links to both MLflow runs, and waits without a worker slot;
`apply_answer` promotes an approved version (champion event), keeps a rejected or timed-out
one as challenger with who, when and why on the version. A re-run asks nothing twice; see
docs/adr/0011-approval-in-airflow.md.

**MLflow.** The server comes from the Airflow connection `mlflow_default`, falling back
to `$MLFLOW_TRACKING_URI` and then `mlflow.tracking_uri` in `modelyard.yaml`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from airflow.sdk import Asset, AssetAlias, Param, dag, get_current_context, task, teardown

from modelyard.core.contracts import assets
from modelyard.plugins.dag_support import DEFAULT_ARGS, announced_by, config, families_param, regions_param
from modelyard.plugins.operators.approval import PairApprovalOperator

CHAMPIONS = AssetAlias(assets.CHAMPIONS_ALIAS)
ACTIONS = ["evaluate", "promote-version", "rollback"]


def groups_param() -> Param:
    names = list(config().region_groups)
    choices: dict[str, Any] = {"items": {"type": "string", "enum": names}, "examples": names} if names else {}
    return Param(
        [], type="array", title="Region groups",
        description="Decide the pooled models of these groups instead (leave regions empty).", **choices,
    )  # fmt: skip


@dag(
    dag_id="promotion",
    description="Judge each challenger by the gates and against the champion: promote, reject or wait for approval.",
    schedule=announced_by(assets.CHALLENGERS_ALIAS),  # the pairs' and the pooled models' challengers
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=16,  # a run waiting for approvals must not hold back the next challengers' decisions
    default_args=DEFAULT_ARGS,
    tags=["modelyard", "promotion", "mlflow"],
    doc_md=__doc__,
    params={
        "families": families_param("Families to decide (empty: all)."),
        "regions": regions_param("Regions to decide (empty: all)."),
        "groups": groups_param(),
        "action": Param(
            "evaluate", type="string", enum=ACTIONS, title="Action",
            description="evaluate: gates on each challenger; promote-version: make 'version' champion "
            "(one family and region); rollback: champion back to previous-champion.",
        ),
        "version": Param(None, type=["null", "integer"], minimum=1, title="Version", description="To promote."),
        "reason": Param(
            None, type=["null", "string"], title="Reason", description="Why (required for promote-version).",
        ),
        "force": Param(False, type="boolean", title="Force", description="Decide again on decided challengers."),
    },
)  # fmt: skip
def promotion() -> None:
    """Select the (family, region) pairs, decide them in chunks, announce the champions moved."""

    @task
    def select_pairs() -> list[list[dict[str, str]]]:
        """Pairs (or pooled models) named by triggering challenger events, else by the form (checked), in chunks."""
        from modelyard.core.contracts.assets import pairs_in
        from modelyard.plugins.dag_support import chunked, expected_errors_fail_the_task, triggering_uris
        from modelyard.promotion.decide import check_request, pooled_pairs, selected_pairs

        context = get_current_context()
        params = context["params"]
        uris = triggering_uris(context)
        if uris:
            pairs = pairs_in(uris, "challenger", [*config().pairs(), *pooled_pairs(config())])
        else:
            with expected_errors_fail_the_task():  # a bad form does not improve on retry
                chosen = {k: params.get(k) or None for k in ("families", "regions", "groups")}
                pairs = selected_pairs(config(), **chosen)
                version = str(params["version"]) if params["version"] else None
                check_request(params["action"], pairs, version, params["reason"])
        return chunked(pairs)

    @task(map_index_template="{{ chunk_label }}", execution_timeout=dt.timedelta(hours=1))
    def decide(chunk: list[dict[str, str]]) -> dict[str, Any]:
        """Decide the chunk's pairs in a worker pool: one log line per pair, then its gate table."""
        import functools

        from modelyard.core.tracking import require_reachable
        from modelyard.plugins.dag_support import run_chunk
        from modelyard.plugins.hooks.mlflow import MlflowHook
        from modelyard.plugins.stage_pairs import DecideRequest, decide_one

        context = get_current_context()
        manual = not context["triggering_asset_events"]
        params = context["params"]
        request = DecideRequest(
            tracking_uri=require_reachable(MlflowHook(config=config()).get_tracking_uri()),
            action=params["action"] if manual else "evaluate", decided_by=_decided_by(context),
            version=str(params["version"]) if manual and params["version"] else None,
            reason=params["reason"] or None if manual else None, force=bool(params["force"]) if manual else False,
        )  # fmt: skip
        return run_chunk(context, chunk, functools.partial(decide_one, request))

    @teardown
    @task(outlets=[CHAMPIONS])
    def publish_champions() -> list[str]:
        """Announce every champion the run moved, at once (one deploy run per promotion run).

        A pooled champion that moved is announced as well for the regions it serves as a fallback.
        """
        from modelyard.plugins.dag_support import pair_outcomes, publish_outcomes

        context = get_current_context()
        announced = publish_outcomes(context, "decide", CHAMPIONS)
        groups = config().region_groups
        for moved in pair_outcomes(context, "decide"):
            if moved.ok and moved.event_uri and moved.region in groups:
                announced += announce_fallbacks(context, moved.family, moved.region, moved.event_extra)
        return announced

    @task
    def every_pair_decided() -> None:
        """The run's verdict: runs only if the form was accepted and every chunk decided (all_success).

        ``approval_requests`` runs whatever became of the chunks (all_done) and ``publish_champions``
        is a teardown, which Airflow leaves out of a run's state: without this leaf a refused form or
        a failed chunk would leave a green run behind it.
        """

    decided = decide.expand(chunk=select_pairs())
    decided >> publish_champions()
    decided >> every_pair_decided()
    requests = approval_requests()
    decided >> requests
    answers = PairApprovalOperator.partial(
        task_id="approve", map_index_template="{{ task.pair_label }}", doc_md=PairApprovalOperator.__doc__
    ).expand(request=requests)
    apply_answer.expand(answer=answers.output)


@task(trigger_rule="all_done")  # a chunk that failed on one pair must not keep the others from being asked
def approval_requests() -> list[dict[str, Any]]:
    """One request (subject, Markdown body, timeout) per pair that newly awaits approval; [] skips the rest."""
    from modelyard.plugins.dag_support import pair_outcomes
    from modelyard.plugins.hooks.mlflow import MlflowHook
    from modelyard.promotion.aliases import open_client
    from modelyard.promotion.approval import build_request, pending_requests

    decisions: list[Mapping[str, Any]] = [
        {"family": o.family, "region": o.region, "outcome": o.status, **o.facts}
        for o in pair_outcomes(get_current_context(), "decide")
    ]
    pending = pending_requests(decisions)
    if not pending:
        return []
    uri = MlflowHook(config=config()).get_tracking_uri()
    client = open_client(config(), uri)
    return [
        build_request(client, config(), p["family"], p["region"], p["version"], uri).model_dump(mode="json")
        for p in pending
    ]


@task(outlets=[CHAMPIONS], map_index_template="{{ pair_label }}", execution_timeout=dt.timedelta(minutes=30))
def apply_answer(answer: dict[str, Any]) -> dict[str, Any]:
    """Apply one person's answer (promote, or keep the challenger with the reason) and announce a new champion."""
    from modelyard.core.contracts.assets import champion_uri
    from modelyard.plugins.hooks.mlflow import MlflowHook
    from modelyard.promotion.aliases import open_client
    from modelyard.promotion.approval import Answer, apply

    context = get_current_context()
    parsed = Answer.model_validate(answer)
    context["pair_label"] = f"{parsed.family}/{parsed.region}"  # type: ignore[typeddict-unknown-key]
    client = open_client(config(), MlflowHook(config=config()).get_tracking_uri())
    decision = apply(client, config(), parsed)
    print(f"{decision.model_name} v{decision.version}: {decision.outcome} - {decision.summary}")
    if decision.champion_changed:
        champion = Asset(champion_uri(parsed.family, parsed.region))
        extra: dict[str, Any] = decision.asset_extra()
        context["outlet_events"][CHAMPIONS].add(champion, extra=extra)
        if parsed.region in config().region_groups:
            announce_fallbacks(context, parsed.family, parsed.region, extra)
    return {**decision.asset_extra(), "version": decision.version or "", "outcome": decision.outcome,
            "summary": decision.summary}  # fmt: skip


def announce_fallbacks(context: Any, family: str, group: str, extra: Mapping[str, Any]) -> list[str]:
    """Announce a moved pooled champion as the champion of every region of ``group`` it serves (ADR 0015)."""
    from modelyard.core.contracts.assets import fallback_champions
    from modelyard.plugins.hooks.mlflow import MlflowHook
    from modelyard.promotion.aliases import open_client
    from modelyard.promotion.status import regions_served_by

    client = open_client(config(), MlflowHook(config=config()).get_tracking_uri())
    served = regions_served_by(client, config(), family, group)
    announced = []
    for uri, region_extra in fallback_champions(family, group, extra, served):
        context["outlet_events"][CHAMPIONS].add(Asset(uri), extra=region_extra)
        print(f"announce {uri} {region_extra} (served by the pooled champion of {group})")
        announced.append(uri)
    return announced


def _decided_by(context: Any) -> str:
    run = context["dag_run"]
    user = getattr(run, "triggering_user_name", None)
    return f"airflow:{run.dag_id}/{run.run_id}" + (f" (by {user})" if user else "")


# Bound to a name so a DAG file elsewhere (``modelyard init``) can import it: the DagBag
# attributes a DAG found in a file's globals to that file (its ``fileloc``).
promotion_dag = promotion()
