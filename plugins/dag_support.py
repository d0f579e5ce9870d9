"""What every modelyard DAG file shares: the config read once at parse time, default
task arguments, and the Params that render as a form in the trigger UI.

Only cheap imports here: the DAG processor parses DAG files in a loop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
from collections.abc import Iterator
from typing import Any

from airflow.sdk import AssetAlias, AssetAny, Param

from modelyard.core.config import Config, load_config
from modelyard.core.errors import ModelyardError

OWNER = "ml-platform"


@functools.cache
def config() -> Config:
    """The modelyard config ($MODELYARD_CONFIG or ./modelyard.yaml), read once per process."""
    return load_config()


def storage_credentials(context: Any) -> None:
    """Before a task runs: export the credentials of the storage root's Airflow Connection, if any.

    A pre-execute hook (it runs in the task's own process, before ``execute``, and a failure
    stops the task), so every stage and the processes it starts reach an object-store root with
    the Connection's credentials (``plugins/hooks/storage.py``). A local root looks nothing up.
    """
    from modelyard.plugins.hooks.storage import StorageHook

    with expected_errors_fail_the_task():  # a missing or unusable Connection does not improve on retry
        StorageHook(config().storage).export_credentials()


DEFAULT_ARGS: dict[str, Any] = {
    "owner": OWNER,
    "retries": 2,
    "retry_delay": dt.timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "pre_execute": storage_credentials,
}


@contextlib.contextmanager
def expected_errors_fail_the_task() -> Iterator[None]:
    """Turn an expected error (:class:`ModelyardError`) into a task failure without retries.

    A bad form, a missing snapshot, a failed gate or a malformed plan does not improve on
    retry, so the task fails at once with the error's message. A transient one (it is also a
    ``ConnectionError`` or ``TimeoutError``: the MLflow server does not answer) and any other
    exception (a bug: its traceback is what a reader needs) propagate, and Airflow retries.
    """
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except ModelyardError as exc:
        if isinstance(exc, ConnectionError | TimeoutError):
            raise
        raise AirflowFailException(str(exc)) from exc


def families_param(description: str = "Model families to run (empty: all).") -> Param:
    names = config().family_names
    return Param(
        [], type="array", items={"type": "string", "enum": names}, examples=names, title="Families",
        description=description,
    )  # fmt: skip


def regions_param(description: str = "Regions to run (empty: all).") -> Param:
    names = config().region_names
    return Param(
        [], type="array", items={"type": "string", "enum": names}, examples=names, title="Regions",
        description=description,
    )  # fmt: skip


def triggering_uris(context: Any) -> list[str]:
    """The URIs of the asset events that triggered this run (empty for a manual run)."""
    return [event.asset.uri for events in context["triggering_asset_events"].values() for event in events]


def announced_by(*aliases: str) -> AssetAlias | AssetAny:
    """A schedule on the events upstream stages announce through ``aliases`` (ADR 0023).

    Every event still names one pair's Asset (``features/<family>/<region>``, ...); the alias is how
    the upstream stage emits them, so the schedule stays one small expression at any number of pairs.
    """
    scheduled = [AssetAlias(name) for name in aliases]
    return scheduled[0] if len(scheduled) == 1 else AssetAny(*scheduled)


# ---------------------------------------------------------------- chunked stages (ADR 0008)

OUTCOMES_KEY = "pair_outcomes"


def chunked(pairs: list[tuple[str, str]]) -> list[list[dict[str, str]]]:
    """Split a run's pairs into chunks (``config().scale``) and print which chunk holds which pair.

    The select task's log is where a user looks a region up: map index → its pairs, in full.
    """
    from modelyard.core.chunks import label, split

    scale = config().scale
    chunks = split(pairs, scale.chunk_size, scale.max_chunks)
    print(f"{len(pairs)} pairs in {len(chunks)} chunks (scale: {scale.model_dump()})")
    for index, chunk in enumerate(chunks):
        print(f"chunk {index} ({len(chunk)} pairs): {label(chunk, limit=10**6)}")
    return [[{"family": family, "region": region} for family, region in chunk] for chunk in chunks]


def run_chunk(context: Any, chunk: list[dict[str, str]], work: Any) -> dict[str, Any]:
    """Run one chunk task: its pairs in the worker pool, one log line per pair, outcomes to XCom.

    Pairs that succeeded in an earlier try of this task (Airflow's task state store) are not
    run again. The outcomes go to XCom ``pair_outcomes`` even when pairs failed, so the
    stage's publish task announces the successes; then the task fails naming the failed
    pairs: at once (no retry) when every failure is an expected one (bad data, a bad form),
    else with an error Airflow retries.
    """
    from modelyard.core import chunks
    from modelyard.plugins import stage_pairs

    pairs = [(p["family"], p["region"]) for p in chunk]
    context["chunk_label"] = chunks.label(pairs)
    store = context.get("task_state_store")  # None: Airflow before 3.3; a retry redoes the chunk (idempotent)
    successes = chunks.SuccessLog(store) if store is not None else None
    done = _earlier_successes(successes, pairs)
    print(f"chunk of {len(pairs)} pairs: {chunks.label(pairs, limit=10**6)}")
    if done:
        print(f"{len(done)} pairs succeeded in an earlier try and are not run again")

    def on_outcome(outcome: chunks.PairOutcome) -> None:
        print(outcome.line(), flush=True)
        for note in outcome.notes:
            print(f"    {note}")
        if outcome.ok and successes is not None:
            successes.add(outcome)

    try:
        with stage_pairs.worker_logs() as logs:  # workers log at their real level, not as stderr (= ERROR)
            outcomes = chunks.run_pairs(
                pairs, work, workers=config().scale.workers, initializer=stage_pairs.start_worker,
                initargs=(config(), logs), done=done, on_outcome=on_outcome,
            )  # fmt: skip
    finally:
        if successes is not None:
            successes.flush()
    context["ti"].xcom_push(OUTCOMES_KEY, [o.to_json() for o in outcomes])
    print(chunks.summary(outcomes))
    _fail_for(outcomes)
    return _chunk_result(outcomes)


def _earlier_successes(successes: Any, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """This chunk's pairs that an earlier try of the task did (a pair moved to another chunk is redone)."""
    if successes is None:
        return {}
    earlier = successes.earlier()
    return {pair: earlier[pair] for pair in pairs if pair in earlier}


def _fail_for(outcomes: list[Any]) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from modelyard.core.chunks import ChunkError

    failed = [o for o in outcomes if not o.ok]
    if not failed:
        return
    message = f"{len(failed)} of {len(outcomes)} pairs failed (the others succeeded and are announced): "
    message += failure_summary([(o.name, o.detail) for o in failed])
    if any(o.retryable for o in failed):
        raise ChunkError(message + " — retrying only these pairs")
    raise AirflowFailException(message)


def failure_summary(failures: list[tuple[str, str]]) -> str:
    """``a, b: why; c: why else``: pairs that failed for the same reason share it (a deleted experiment,
    an unreachable store: one reason for a chunk of hundreds of pairs is said once)."""
    by_reason: dict[str, list[str]] = {}
    for name, detail in failures:
        by_reason.setdefault(detail, []).append(name)
    return "; ".join(f"{', '.join(names)}: {detail}" for detail, names in by_reason.items())


def _chunk_result(outcomes: list[Any]) -> dict[str, Any]:
    """The task's return value: counts, every pair's MLflow link, and for a one-pair chunk what the links need."""
    result: dict[str, Any] = {
        "pairs": len(outcomes),
        "statuses": {o.name: o.status for o in outcomes},
        "links": {o.name: o.link for o in outcomes if o.link.startswith("http")},
    }
    if len(outcomes) == 1:
        only = outcomes[0]
        result.update({k: v for k, v in only.event_extra.items() if k in ("model_name", "version")})
        if only.link.startswith("http") and "/runs/" in only.link:
            result["run_url"] = only.link
        elif only.link.startswith("http") and "/#/models/" in only.link:  # promotion links the version decided
            result["model_version_url"] = only.link
    return result


def publish_outcomes(context: Any, chunk_task_id: str, alias: Any) -> list[str]:
    """Announce, from this one task, the Asset events of every pair of the run that has one.

    One task emits all of a run's events at once, so a downstream DAG scheduled on them is
    triggered once per upstream run, not once per chunk (ADR 0008).
    """
    from airflow.sdk import Asset

    from modelyard.core.chunks import PairOutcome

    selected, pulled = _pulled_outcomes(context, chunk_task_id)
    outcomes = [PairOutcome.from_json(o) for chunk in pulled if chunk for o in chunk]
    announced = []
    for outcome in outcomes:
        if outcome.ok and outcome.event_uri:
            context["outlet_events"][alias].add(Asset(outcome.event_uri), extra=outcome.event_extra)
            announced.append(outcome.event_uri)
            print(f"announce {outcome.event_uri} {outcome.event_extra}")
    missing = len(selected) - sum(1 for chunk in pulled if chunk)
    print(
        f"{len(announced)} events for {len(outcomes)} pairs"
        + (f"; {missing} chunks reported nothing" if missing else "")
    )
    return announced


def pair_outcomes(context: Any, chunk_task_id: str) -> list[Any]:
    """Every pair's ``PairOutcome`` reported by the run's chunks of ``chunk_task_id`` (failed chunks included)."""
    from modelyard.core.chunks import PairOutcome

    _, pulled = _pulled_outcomes(context, chunk_task_id)
    return [PairOutcome.from_json(o) for chunk in pulled if chunk for o in chunk]


def _pulled_outcomes(context: Any, chunk_task_id: str) -> tuple[list[Any], list[Any]]:
    ti = context["ti"]
    selected = ti.xcom_pull(task_ids="select_pairs") or []
    pulled = ti.xcom_pull(task_ids=chunk_task_id, key=OUTCOMES_KEY, map_indexes=list(range(len(selected))))
    return selected, list(pulled or [])
