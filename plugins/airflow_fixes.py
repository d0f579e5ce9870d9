"""Two Airflow queries that grow with the assets a DAG is scheduled on, fixed for the embedded stack.

After every parse of a DAG file, Airflow's DAG processor reads the file's ``DagModel`` rows back
(``DagModelOperation.find_orm_dags``) with five one-to-many collections joined into one query: tags
x schedule asset references x alias references x outlet references x owner links. Each of the
product's rows carries the DAG's whole ``asset_expression`` JSON, which psycopg decodes row by row.
modelyard's training DAG is scheduled on two assets per pair and has three tags: at 1,000 pairs one
sync fetched 6,000 rows, each decoding a 288 KB expression, every 30 s. The DAG processor then held
the machine's busiest core and 2.5-10 GB of RSS (``make bench-scale``, 2026-12-05, ADR 0020). The
cost grows with the square of the pairs: the rows and each row's expression both grow with them.

:func:`install` swaps that query for the one Airflow's open fix proposes (apache/airflow#72395):
the same rows locked, the collections loaded by ``selectinload`` (one query each), so a DAG's row,
and its expression, are read once. It applies only to an Airflow whose ``find_orm_dags`` still
joins the collections (read from its source), so an Airflow that ships the fix runs as it is. The
embedded stack installs it from ``AIRFLOW_HOME/config/airflow_local_settings.py``; an existing
Airflow does the same with two lines there (README, "Installing into an existing Airflow").

A task's start without a query per triggering event (apache/airflow#72672). Every task instance of
an asset-triggered run starts through the Execution API's ``ti_run``, which answers with the run and
the asset events that triggered it. It joins the events but not their asset and source aliases, so
serialising the answer reads both per event, two ``SELECT`` statements each, inside the task instance's
``FOR UPDATE`` transaction. A stage of modelyard's chain is triggered by one event per pair: at 1,000
pairs each of a run's ~34 task instances waited ~10 s for its start (the api-server's access log,
2026-12-05), longer than the task supervisor's 5 s timeout, and four of promotion's chunk tasks were
killed after their retries, waiting for the heartbeat timeout to run again. :func:`patch_run_context`
gives ``ti_run``'s load of the events the two nested loads the open fix proposes (a joined load of
each event's asset, one ``selectinload`` of the aliases), when ``ti_run``'s source still lacks them.

The module imports nothing at import time and patches nothing until Airflow's ``collection`` (or
``task_instances`` route) module is imported: a task process, which never syncs DAGs, pays neither.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import inspect
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

COLLECTION_MODULE = "airflow.dag_processing.collection"
# What Airflow's unfixed query says (3.0-3.2): a joined load of the schedule's asset references.
EXPLODING_LOAD = "joinedload(DagModel.schedule_asset_references)"
# The function :func:`patch` replaced, per module name (what a comparison with Airflow's own reads).
REPLACED: dict[str, Any] = {}


TASK_INSTANCES_MODULE = "airflow.api_fastapi.execution_api.routes.task_instances"
# What Airflow's unfixed ``ti_run`` says (3.0-3.3): the events joined, their asset and aliases not.
LAZY_EVENTS_LOAD = "joinedload(DR.consumed_asset_events)"
FIXED_EVENTS_LOAD = "AssetEvent.asset"


def install() -> None:
    """Patch Airflow's modules now if they are loaded, else each as soon as something imports it."""
    pending = {}
    for name, fix in _FIXES.items():
        module = sys.modules.get(name)
        if module is not None:
            fix(module)
        else:
            pending[name] = fix
    if pending and not any(isinstance(finder, _PatchOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport(pending))


def patch(module: ModuleType) -> bool:
    """Replace ``find_orm_dags`` in Airflow's ``collection`` module; whether it was the unfixed query."""
    operation = getattr(module, "DagModelOperation", None)
    current = getattr(operation, "find_orm_dags", None)
    if current is None or current is find_orm_dags:
        return False
    try:
        source = inspect.getsource(current)
    except (OSError, TypeError):
        return False
    if EXPLODING_LOAD not in source:
        return False
    REPLACED[module.__name__] = current
    operation.find_orm_dags = find_orm_dags  # type: ignore[union-attr]
    return True


def find_orm_dags(self: Any, *, session: Any) -> dict[str, Any]:
    """The ``DagModel`` of each of ``self.dags``, locked, its collections loaded one query each."""
    from airflow.models.dag import DagModel
    from airflow.utils.sqlalchemy import with_row_locks
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    collections = (
        DagModel.tags,
        DagModel.schedule_asset_references,
        DagModel.schedule_asset_alias_references,
        DagModel.task_outlet_asset_references,
        DagModel.dag_owner_links,
    )
    stmt = select(DagModel).where(DagModel.dag_id.in_(self.dags))
    stmt = stmt.options(*(selectinload(collection) for collection in collections))
    locked = with_row_locks(stmt, of=DagModel, session=session)
    return {dag.dag_id: dag for dag in session.scalars(locked)}


def patch_run_context(module: ModuleType) -> bool:
    """Give ``ti_run``'s load of a run's triggering events their asset and aliases; whether it lacked them."""
    current = getattr(module, "joinedload", None)
    ti_run = getattr(module, "ti_run", None)
    if current is None or ti_run is None or getattr(current, "modelyard_fix", False):
        return False
    try:
        source = inspect.getsource(ti_run)
    except (OSError, TypeError):
        return False
    if LAZY_EVENTS_LOAD not in source or FIXED_EVENTS_LOAD in source:
        return False
    REPLACED[module.__name__] = current
    module.joinedload = _with_event_assets(current)  # type: ignore[attr-defined]
    return True


def _with_event_assets(joinedload: Any) -> Any:
    """``joinedload`` as the route module calls it, the run's events given their nested loads."""

    def fixed(*keys: Any, **kwargs: Any) -> Any:
        from airflow.models.dagrun import DagRun

        load = joinedload(*keys, **kwargs)
        if len(keys) == 1 and keys[0] is DagRun.consumed_asset_events:
            from airflow.models.asset import AssetEvent
            from sqlalchemy.orm import selectinload

            load = load.options(joinedload(AssetEvent.asset), selectinload(AssetEvent.source_aliases))
        return load

    fixed.modelyard_fix = True  # type: ignore[attr-defined]
    return fixed


_FIXES = {COLLECTION_MODULE: patch, TASK_INSTANCES_MODULE: patch_run_context}


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds each pending Airflow module as the other finders do, and patches it once executed."""

    def __init__(self, pending: dict[str, Any]) -> None:
        self.pending = pending

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        fix = self.pending.pop(fullname, None)
        if fix is None:
            return None
        if not self.pending:
            sys.meta_path.remove(self)  # every module once: the real finders answer from here on
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        execute = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            fix(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec
