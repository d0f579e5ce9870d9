"""The live view of the chain: a table per stage and one per (family, region), refreshed as it runs.

:func:`follow_chain` polls the chain (``deploy.devstack.chain``) and redraws
:func:`render_progress` until nothing runs or waits to run; a failed task ends it with
that task's log excerpt.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modelyard.deploy.devstack.chain import ChainFailedError, ChainState, failure_report, outcome_key, poll_chain
from modelyard.deploy.devstack.stack import DAG_IDS, AirflowApi, StackError

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

POLL_SECONDS = 3.0
QUIET_POLLS = 3  # consecutive polls with nothing running or queued before the chain counts as done
STAGE_LABELS = {
    "data_processing": "data", "monitoring": "monitoring", "training": "training", "promotion": "promotion",
    "deploy": "deploy", "batch_scoring": "batch", "housekeeping": "housekeeping",
}  # fmt: skip
STATE_STYLES = {
    "success": "green",
    "failed": "bold red",
    "upstream_failed": "red",
    "running": "cyan",
    "queued": "yellow",
    "scheduled": "yellow",
    "up_for_retry": "magenta",
    "skipped": "dim",
    "deferred": "blue",
    # a pair's own outcome in a chunk (pipeline.chunks.PairOutcome.status)
    "published": "green",
    "registered": "green",
    "promoted": "green",
    "unchanged": "green",
    "rejected": "red",
    "awaiting-approval": "blue",
}


def follow_chain(
    api: AirflowApi,
    since: str,
    console: Console,
    *,
    timeout: float = 3600,
    on_poll: Callable[[ChainState], None] | None = None,
    extra_view: Callable[[], RenderableType] | None = None,
) -> ChainState:
    """Follow every run of the chain with a live view until nothing runs or waits to run.

    Raises:
        ChainFailedError: a task failed (with its log excerpt) or a run failed.
        StackError: the chain did not settle within ``timeout`` seconds.
    """
    from rich.live import Live

    try:
        with Live(render_progress(ChainState()), console=console, refresh_per_second=2, transient=False) as live:
            return _follow(api, since, live, timeout, on_poll, extra_view)
    finally:
        if not console.is_terminal:  # off a terminal rich's Live ends its last render without a newline
            console.line()


def _follow(
    api: AirflowApi,
    since: str,
    live: Any,
    timeout: float,
    on_poll: Callable[[ChainState], None] | None,
    extra_view: Callable[[], RenderableType] | None,
) -> ChainState:
    deadline = time.monotonic() + timeout
    quiet = 0
    state = ChainState()
    while time.monotonic() < deadline:
        state = poll_chain(api, since, state)
        live.update(_with_extra(render_progress(state), extra_view))
        if on_poll:
            on_poll(state)
        if state.failures():
            raise ChainFailedError(failure_report(api, state.failures()))
        if state.failed_runs():
            ids = ", ".join(f"{r['dag_id']}/{r['dag_run_id']}" for r in state.failed_runs())
            raise ChainFailedError(f"runs failed without a failed task (check the Airflow UI): {ids}")
        quiet = 0 if state.busy() else quiet + 1
        if quiet >= QUIET_POLLS:
            return state
        time.sleep(POLL_SECONDS)
    raise StackError(f"the chain did not finish within {timeout:.0f}s; see the Airflow UI at {api.url}")


def _with_extra(view: RenderableType, extra: Callable[[], RenderableType] | None) -> RenderableType:
    if extra is None:
        return view
    from rich.console import Group

    return Group(view, extra())


def render_progress(state: ChainState) -> RenderableType:
    """Two tables: one row per stage (latest run, its state, task counts), and one per (family, region)."""
    from rich.console import Group
    from rich.table import Table

    stages = Table(title="modelyard chain", title_justify="left")
    for column in ("stage", "runs", "latest run", "state", "tasks"):
        stages.add_column(column)
    grid: dict[str, dict[str, str]] = {}
    for dag_id in DAG_IDS:
        runs = state.runs.get(dag_id, [])
        latest = runs[-1] if runs else None
        counts: Counter[str] = Counter()
        for run in runs:
            for ti in state.tasks.get(run["dag_run_id"], []):
                for pair, pair_state in pair_states(state, ti):
                    grid.setdefault(pair, {})[dag_id] = pair_state
        if latest:
            counts.update(str(ti.get("state") or "none") for ti in state.tasks.get(latest["dag_run_id"], []))
        stages.add_row(
            STAGE_LABELS[dag_id],
            str(len(runs)),
            latest["dag_run_id"] if latest else "-",
            styled(latest["state"]) if latest else "[dim]waiting[/dim]",
            ", ".join(f"{n} {styled(s)}" for s, n in sorted(counts.items())) or "-",
        )
    pairs = Table(title="per family / region (latest task state)", title_justify="left")
    by_pair = [d for d in DAG_IDS if any(d in states for states in grid.values())]  # housekeeping handles no pair
    for column in ("family", "region", *(STAGE_LABELS[d] for d in by_pair)):
        pairs.add_column(column)
    for label in sorted(grid):
        family, _, region = label.partition("/")
        pairs.add_row(family, region, *(styled(grid[label].get(d, "-")) for d in by_pair))
    return Group(stages, pairs) if grid else stages


def pair_states(state: ChainState, ti: dict[str, Any]) -> list[tuple[str, str]]:
    """(``family/region``, state) of each pair a task handles: a finished chunk's reported outcomes,
    else the pairs its label names with the task's own state."""
    key = outcome_key(ti)
    if key is not None and key in state.outcomes:
        return [
            (f"{o['family']}/{o['region']}", str(o["status"]) if o.get("ok") else "failed") for o in state.outcomes[key]
        ]
    return [
        (pair, str(ti.get("state") or "scheduled")) for pair in labelled_pairs(str(ti.get("rendered_map_index") or ""))
    ]


def labelled_pairs(label: str) -> list[str]:
    """The ``family/region`` pairs a task's label names: one (a deploy release aside) or a chunk's list.

    A long chunk label ends with ``… (+N)`` (ADR 0008): those N pairs are not named and not shown.
    """
    return [item for item in label.split(", ") if "/" in item and not item.startswith("…")]


def styled(state: str) -> str:
    style = STATE_STYLES.get(state)
    return f"[{style}]{state}[/{style}]" if style else state
