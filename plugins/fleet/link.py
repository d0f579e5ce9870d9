"""The "Pairs on the fleet page" extra link: a task's pairs, each linked to its MLflow versions and runs.

A link button is fixed per task, so a chunk task (tens of pairs) cannot carry one MLflow link per
pair; this one opens the fleet page showing only the task's pairs, where every row links its
champion, challenger and previous versions and their runs. A chunk's pairs come from its XCom
``pair_outcomes`` (``plugins.dag_support.run_chunk``), a one-pair task's from the ``family`` and
``region`` of its return value. Registered as a global link (``plugins.modelyard_plugin``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from airflow.sdk import BaseOperatorLink

from modelyard.plugins.fleet.urls import PAGE_PATH, URL_PREFIX
from modelyard.plugins.links import RETURN_VALUE_KEY, task_xcom

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

OUTCOMES_KEY = "pair_outcomes"  # plugins.dag_support.OUTCOMES_KEY (not imported: it pulls the DAG helpers in)


def fleet_pairs_url(outcomes: Any, returned: Any) -> str:
    """The fleet page showing the pairs a task handled ('' when it names none)."""
    items = outcomes if isinstance(outcomes, list) else [returned]
    names = [
        f"{item['family']}/{item['region']}"
        for item in items
        if isinstance(item, Mapping) and item.get("family") and item.get("region")
    ]
    if not names:
        return ""
    return f"{URL_PREFIX}{PAGE_PATH}?{urlencode({'pairs': ','.join(dict.fromkeys(names))})}"


class FleetPairsLink(BaseOperatorLink):
    """Task instance → the fleet page with only its pairs."""

    name = "Pairs on the fleet page"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return fleet_pairs_url(task_xcom(ti_key, OUTCOMES_KEY), task_xcom(ti_key, RETURN_VALUE_KEY))
