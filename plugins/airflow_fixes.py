"""Airflow's DAG sync without the row explosion (apache/airflow#72393), for DAGs scheduled on many assets.

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

The module imports nothing at import time and patches nothing until Airflow's ``collection`` module
is imported: a task process, which never syncs DAGs, pays neither.
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


def install() -> None:
    """Patch Airflow's DAG sync now if its module is loaded, else as soon as something imports it."""
    module = sys.modules.get(COLLECTION_MODULE)
    if module is not None:
        patch(module)
    elif not any(isinstance(finder, _PatchOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())


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


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds Airflow's ``collection`` module as the other finders do, and patches it once executed."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != COLLECTION_MODULE:
            return None
        sys.meta_path.remove(self)  # one module, once: the real finders answer from here on
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        execute = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            patch(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec
