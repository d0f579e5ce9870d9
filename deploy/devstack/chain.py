"""The chain as Airflow's REST API shows it: the runs of the stages' DAGs, their tasks and outcomes.

:func:`trigger_chain` unpauses the DAGs and triggers the first one; :func:`poll_chain` reads
every run since then (and any still running), their task instances, the pair outcomes of
finished chunk tasks and the asset events queued for the next run; :func:`failure_report`
says which tasks failed, with the first one's log from its first error line on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from modelyard.deploy.devstack.stack import DAG_IDS, AirflowApi, StackError

TERMINAL_RUN_STATES = frozenset({"success", "failed"})
FAILED_TASK_STATES = frozenset({"failed"})
# The chunk task of each stage (ADR 0008): its XCom ``pair_outcomes`` says what happened to each pair.
CHUNK_TASKS = frozenset({"build_snapshots", "measure", "train", "decide"})


class ChainFailedError(StackError):
    """A task of the chain failed; the message carries its log excerpt."""


@dataclass
class ChainState:
    """Runs of the stage DAGs since the demo's trigger, their task instances and queued asset events."""

    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tasks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # run_id -> task instances
    queued: dict[str, int] = field(default_factory=dict)
    # (dag_id, run_id, task_id, map_index, try) of a finished chunk task -> its pairs' outcomes.
    outcomes: dict[tuple[str, str, str, int, int], list[dict[str, Any]]] = field(default_factory=dict)

    def all_runs(self) -> Iterable[dict[str, Any]]:
        for dag_id in DAG_IDS:
            yield from self.runs.get(dag_id, [])

    def busy(self) -> bool:
        """Something still runs, or an asset event waits to start a run."""
        pending = any(run["state"] not in TERMINAL_RUN_STATES for run in self.all_runs())
        return pending or any(self.queued.values())

    def failures(self) -> list[dict[str, Any]]:
        """Failed task instances, oldest run first."""
        return [ti for run in self.all_runs() for ti in self.tasks.get(run["dag_run_id"], []) if _failed(ti)]

    def failed_runs(self) -> list[dict[str, Any]]:
        return [run for run in self.all_runs() if run["state"] == "failed"]


def _failed(ti: dict[str, Any]) -> bool:
    return ti.get("state") in FAILED_TASK_STATES


def poll_chain(api: AirflowApi, since: str, known: ChainState | None = None) -> ChainState:
    """The chain's state: runs after ``since`` plus any run still queued or running.

    The pair outcomes of finished chunk tasks are read once (kept from ``known``, the previous poll),
    and so are the task instances of a run that had already finished then and has not changed since.
    """
    state = ChainState(outcomes=dict(known.outcomes) if known else {})
    settled = _settled_runs(known)
    for dag_id in DAG_IDS:
        runs = {run["dag_run_id"]: run for run in api.dag_runs(dag_id, since)}
        for run in api.dag_runs(dag_id):
            if run["state"] not in TERMINAL_RUN_STATES:
                runs.setdefault(run["dag_run_id"], run)
        state.runs[dag_id] = sorted(runs.values(), key=lambda r: str(r.get("run_after")))
        for run in state.runs[dag_id]:
            run_id = run["dag_run_id"]
            if known is not None and _unchanged(settled.get((dag_id, run_id)), run):
                state.tasks[run_id] = known.tasks[run_id]
                continue
            state.tasks[run_id] = api.task_instances(dag_id, run_id)
            _read_outcomes(api, state, state.tasks[run_id])
        state.queued[dag_id] = api.queued_asset_events(dag_id)
    return state


def _settled_runs(known: ChainState | None) -> dict[tuple[str, str], dict[str, Any]]:
    """The runs ``known`` saw finished, whose task instances it holds."""
    if known is None:
        return {}
    return {
        (dag_id, run["dag_run_id"]): run
        for dag_id, runs in known.runs.items()
        for run in runs
        if run["state"] in TERMINAL_RUN_STATES and run["dag_run_id"] in known.tasks
    }


def _unchanged(before: dict[str, Any] | None, run: dict[str, Any]) -> bool:
    """A run seen finished before and still finished the same way (a cleared run changes state or end date)."""
    return before is not None and all(before.get(key) == run.get(key) for key in ("state", "end_date"))


def _read_outcomes(api: AirflowApi, state: ChainState, tis: list[dict[str, Any]]) -> None:
    for ti in tis:
        key = outcome_key(ti)
        if key is not None and key not in state.outcomes and ti.get("state") in ("success", "failed"):
            state.outcomes[key] = api.pair_outcomes(key[0], key[1], key[2], key[3])


def outcome_key(ti: dict[str, Any]) -> tuple[str, str, str, int, int] | None:
    """(dag_id, run_id, task_id, map_index, try) of a mapped chunk task, the key of its pair outcomes; else None."""
    if ti["task_id"] not in CHUNK_TASKS or int(ti["map_index"]) < 0:
        return None
    return (ti["dag_id"], ti["dag_run_id"], ti["task_id"], int(ti["map_index"]), int(ti.get("try_number") or 0))


def failure_report(api: AirflowApi, failures: list[dict[str, Any]], lines: int = 40) -> str:
    """The failing tasks and the tail of the first one's log (from its first error line on)."""
    first = failures[0]
    names = ", ".join(_ti_name(ti) for ti in failures)
    log = api.task_log(
        first["dag_id"], first["dag_run_id"], first["task_id"], int(first["map_index"]), int(first["try_number"])
    )
    excerpt = log_excerpt(log, lines)
    return f"failed: {names}\n--- log of {_ti_name(first)} (try {first['try_number']}) ---\n{excerpt}"


def log_excerpt(log: str, lines: int = 40) -> str:
    """The last ``lines`` lines of a log, starting at the first error when there is one in them."""
    all_lines = log.splitlines()
    tail = all_lines[-lines:]
    for index, line in enumerate(tail):
        if "[error]" in line.lower() or "Traceback" in line or "Error:" in line:
            return "\n".join(tail[index:])
    return "\n".join(tail) or "(empty log)"


def _ti_name(ti: dict[str, Any]) -> str:
    label = ti.get("rendered_map_index") or (str(ti["map_index"]) if int(ti["map_index"]) >= 0 else "")
    return f"{ti['dag_id']}.{ti['task_id']}" + (f"[{label}]" if label else "")


def trigger_chain(
    api: AirflowApi, conf: dict[str, Any] | None = None, note: str | None = None, first: str = "data_processing"
) -> str:
    """Unpause the chain's DAGs and trigger ``first``; the trigger's ``run_after``."""
    for dag_id in DAG_IDS:
        api.unpause(dag_id)
    run = api.trigger(first, conf, note)
    return str(run.get("run_after") or dt.datetime.now(dt.UTC).isoformat())
