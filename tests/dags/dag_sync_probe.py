"""Compare Airflow's DAG sync read with :mod:`modelyard.plugins.airflow_fixes`' on a synced DAG (not a test).

Run in a fresh process whose ``AIRFLOW_HOME`` holds a migrated database where ``airflow dags
reserialize`` synced ``DAG_ID``: prints one line ``DAG-SYNC-PROBE <json>`` with, for each read (Airflow's
own and the fix's), the rows the ``dag`` table's query returned and what was loaded (tags, asset
references, owner links), and whether the process's local settings had installed the fix already.
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace
from typing import Any

DAG_ID = "many_assets"


def read(find_orm_dags: Any) -> dict[str, Any]:
    """What ``find_orm_dags`` loads for ``DAG_ID``, and how many rows its ``dag`` query fetched."""
    from airflow.utils.session import create_session
    from sqlalchemy import event

    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "asset_expression" in statement:
            statements.append((statement, parameters))

    with create_session() as session:
        engine = session.get_bind()
        event.listen(engine, "before_cursor_execute", record)
        try:
            found = find_orm_dags(SimpleNamespace(dags={DAG_ID: None}), session=session)
        finally:
            event.remove(engine, "before_cursor_execute", record)
        dag = found[DAG_ID]
        loaded = {
            "dags": sorted(found),
            "tags": sorted(tag.name for tag in dag.tags),
            "schedule_assets": sorted(ref.asset_id for ref in dag.schedule_asset_references),
            "alias_refs": len(dag.schedule_asset_alias_references),
            "outlet_refs": len(dag.task_outlet_asset_references),
            "owner_links": len(dag.dag_owner_links),
        }
        connection: Any = session.connection().connection.driver_connection
        rows = sum(len(connection.execute(statement, parameters).fetchall()) for statement, parameters in statements)
        session.rollback()
    return {**loaded, "dag_rows": rows}


def main() -> None:
    from airflow.dag_processing import collection

    from modelyard.plugins import airflow_fixes

    installed = collection.DagModelOperation.find_orm_dags is airflow_fixes.find_orm_dags
    airflow_fixes.patch(collection)
    original = airflow_fixes.REPLACED.get(collection.__name__)
    result = {
        "installed_by_local_settings": installed,
        "airflow": read(original) if original is not None else None,
        "fixed": read(airflow_fixes.find_orm_dags),
    }
    print("DAG-SYNC-PROBE " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
    sys.exit(0)
