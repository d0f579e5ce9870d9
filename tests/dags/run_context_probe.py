"""Compare the Execution API's task-start answer with and without :mod:`modelyard.plugins.airflow_fixes` (not a test).

Run in a fresh process whose ``AIRFLOW_HOME`` holds a migrated database where ``airflow dags
reserialize`` synced ``DAG_ID`` (scheduled on assets): it records one run of that DAG triggered by an
event on each of its assets (some through an alias), then loads the run as ``ti_run`` does, with
Airflow's ``joinedload`` and with the fix's, and builds the answer a task gets (``TIRunContext``).
Prints one line ``RUN-CONTEXT-PROBE <json>``: per load the ``SELECT`` statements it took and the
answer, and whether the process's local settings had installed the fix already.
"""

from __future__ import annotations

import json
import sys
from typing import Any

DAG_ID = "many_assets"
RUN_ID = "probe_run"
ALIASED_EVENTS = 3


def record_run() -> int:
    """One run of ``DAG_ID`` consuming an event on each of its assets; the number of events."""
    from airflow._shared.timezones import timezone
    from airflow.models.asset import AssetAliasModel, AssetEvent, AssetModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType
    from sqlalchemy import select

    with create_session() as session:
        assets = list(session.scalars(select(AssetModel).where(AssetModel.uri.like("modelyard://probe/%"))))
        alias = AssetAliasModel(name="probe_alias", group="probe")
        session.add(alias)
        events = [
            AssetEvent(asset_id=asset.id, extra={"i": i}, source_dag_id="upstream", source_task_id="t")
            for i, asset in enumerate(assets)
        ]
        for event in events[:ALIASED_EVENTS]:
            event.source_aliases.append(alias)
        session.add_all(events)
        run = DagRun(
            dag_id=DAG_ID,
            run_id=RUN_ID,
            run_after=timezone.utcnow(),
            run_type=DagRunType.ASSET_TRIGGERED,
            state=DagRunState.RUNNING,
        )
        run.consumed_asset_events = events
        session.add(run)
    return len(events)


def answer(joinedload: Any) -> dict[str, Any]:
    """The run loaded as ``ti_run`` loads it with ``joinedload``, its answer built; the SELECTs it took."""
    from airflow.api_fastapi.execution_api.datamodels.taskinstance import TIRunContext
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import event, select

    selects: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    with create_session() as session:
        engine = session.get_bind()
        event.listen(engine, "before_cursor_execute", count)
        try:
            query = select(DagRun).filter_by(dag_id=DAG_ID, run_id=RUN_ID)
            run = session.scalars(query.options(joinedload(DagRun.consumed_asset_events))).unique().one()
            context = TIRunContext(
                dag_run=run,
                task_reschedule_count=0,
                max_tries=0,
                variables=[],
                connections=[],
                xcom_keys_to_clear=[],
                should_retry=False,
            )
            payload = context.model_dump(mode="json")
        finally:
            event.remove(engine, "before_cursor_execute", count)
        session.rollback()
    events = sorted(payload["dag_run"]["consumed_asset_events"], key=lambda e: e["extra"]["i"])
    return {"selects": len(selects), "events": events}


def main() -> None:
    from airflow.api_fastapi.execution_api.routes import task_instances

    from modelyard.plugins import airflow_fixes

    installed = getattr(task_instances.joinedload, "modelyard_fix", False)
    airflow_fixes.patch_run_context(task_instances)
    original = airflow_fixes.REPLACED.get(task_instances.__name__)
    events = record_run()
    result = {
        "installed_by_local_settings": installed,
        "consumed_events": events,
        "airflow": answer(original) if original is not None else None,
        "fixed": answer(task_instances.joinedload),
    }
    print("RUN-CONTEXT-PROBE " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
    sys.exit(0)
