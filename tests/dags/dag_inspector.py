"""Parse a DAG folder with Airflow's own DagBag, in a fresh process, and print what it found as JSON.

Run as ``python dag_inspector.py <dags folder>``. A fresh process per parse is what the
DAG processor does, and it lets the test see which modules parsing imported.
"""

from __future__ import annotations

import json
import sys
from typing import Any

HEAVY = ("pandas", "numpy", "mlflow", "xgboost", "sklearn", "great_expectations", "kubernetes", "matplotlib", "pyhelm3")


def _uri(obj: Any) -> str:
    return str(getattr(obj, "uri", None) or getattr(obj, "name", obj))


def _param(param: Any) -> dict[str, Any]:
    schema = dict(getattr(param, "schema", {}) or {})
    return {
        "value": param.value if getattr(param, "has_value", True) else None,
        "title": schema.get("title"),
        "description": param.description or schema.get("description"),
        "schema": json.loads(json.dumps(schema, default=str)),
    }


def _task(task: Any) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "owner": task.owner,
        "retries": task.retries,
        "outlets": [{"type": type(o).__name__, "uri": _uri(o)} for o in (task.outlets or [])],
        "mapped": any(c.__name__ == "MappedOperator" for c in type(task).__mro__),
        "is_teardown": bool(getattr(task, "is_teardown", False)),
        "upstream": sorted(task.upstream_task_ids),
        "map_index_template": getattr(task, "map_index_template", None),
        "operator": getattr(task, "operator_name", type(task).__name__),
        "trigger_rule": str(getattr(getattr(task, "trigger_rule", ""), "value", "")),
    }


def _assets(condition: Any) -> list[str]:
    """Every Asset/AssetAlias URI or name in a (possibly nested) schedule condition."""
    if condition is None:
        return []
    children = getattr(condition, "objects", None)
    if children is None:
        return [_uri(condition)]
    return [uri for child in children for uri in _assets(child)]


def _serialization_error(dag: Any) -> str | None:
    """The scheduler stores DAGs serialized: a DAG that cannot be serialized never runs."""
    from airflow.serialization.serialized_objects import DagSerialization

    try:
        DagSerialization.to_dict(dag)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _params_error(dag: Any) -> str | None:
    """A manual trigger with the form's defaults must validate."""
    try:
        dag.params.validate()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _dag(dag: Any) -> dict[str, Any]:
    timetable = dag.timetable
    return {
        "dag_id": dag.dag_id,
        "fileloc": dag.fileloc,
        "tags": sorted(dag.tags or []),
        "doc_md": dag.doc_md,
        "catchup": dag.catchup,
        "schedule": str(getattr(timetable, "summary", timetable)),
        "asset_schedule": _assets(getattr(timetable, "asset_condition", None)),
        "serialization_error": _serialization_error(dag),
        "params": {name: _param(dag.params.get_param(name)) for name in dag.params},
        "params_error": _params_error(dag),
        "tasks": [_task(t) for t in dag.tasks],
    }


def main(folder: str) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=folder, safe_mode=False)
    heavy = sorted(m for m in HEAVY if m in sys.modules)
    report = {
        "import_errors": {str(k): v for k, v in bag.import_errors.items()},
        "dags": [_dag(d) for d in bag.dags.values()],
        "heavy_modules": heavy,
    }
    print("DAG-INSPECTOR-JSON " + json.dumps(report, default=str))


if __name__ == "__main__":
    main(sys.argv[1])
