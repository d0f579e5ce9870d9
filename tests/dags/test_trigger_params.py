"""Trigger forms: every DAG's form submits with its defaults, a typical selection validates, bad input is refused.

Two judges, both Airflow's own: ``ParamsDict.validate()`` (what the API server runs on a
trigger) and the rule the trigger form applies before it enables the Trigger button (Airflow
3's ``FlexibleForm``: a param whose schema ``type`` does not include ``"null"`` is required,
and an empty value, ``None`` or ``""``, greys the button out). The params come from Airflow's
DagBag parse of ``dags/`` (the ``dagbag`` fixture of ``test_dag_integrity``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.definitions.param import ParamsDict

from modelyard.core.config import load_config

REPO = Path(__file__).resolve().parents[2]
DAG_IDS = ["batch_scoring", "data_processing", "deploy", "housekeeping", "monitoring", "promotion", "training"]


def _params(report: dict[str, Any], dag_id: str, **values: Any) -> ParamsDict:
    """The DAG's form as Airflow rebuilds it from the schema, with ``values`` typed over the defaults."""
    dag = next((d for d in report["dags"] if d["dag_id"] == dag_id), None)
    assert dag is not None, f"no DAG {dag_id}"
    from airflow.sdk import Param

    params = {name: Param(p["value"], **p["schema"]) for name, p in dag["params"].items()}
    for name, value in values.items():
        assert name in params, f"{dag_id} has no param {name!r}"
        params[name] = Param(value, **dag["params"][name]["schema"])
    return ParamsDict(params)


def form_blocks(schema: dict[str, Any], value: Any) -> bool:
    """Airflow 3's trigger form: a typed param without "null" in its type is required; empty is missing."""
    kind = schema.get("type")
    required = bool(kind) and (not isinstance(kind, list) or "null" not in kind)
    return required and value in (None, "")


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_form_submits_with_its_defaults(dagbag: dict[str, Any], dag_id: str) -> None:
    dag = next(d for d in dagbag["dags"] if d["dag_id"] == dag_id)
    blocked = [name for name, p in dag["params"].items() if form_blocks(p["schema"], p["value"])]
    assert not blocked, f"{dag_id}: the form marks {blocked} required with an empty default (Trigger greyed out)"
    _params(dagbag, dag_id).validate()


TYPICAL = {
    "batch_scoring": {"regions": ["jakarta"], "input": "/data/next_day/*.parquet", "version": 3, "chunk_rows": 50_000},
    "data_processing": {"regions": ["jakarta"], "start": "2026-01-01", "end": "2026-01-31", "source": "synthetic"},
    "deploy": {"regions": ["jakarta"], "strategy": "canary", "version": 3, "dry_run": True},
    "housekeeping": {
        "regions": ["jakarta"],
        "snapshots": 5,
        "sample_days": 90,
        "monitoring_days": 60,
        "versions": 10,
        "dry_run": True,
    },
    "monitoring": {"regions": ["jakarta"], "window_hours": 48},
    "promotion": {"regions": ["jakarta"], "action": "promote-version", "version": 2, "reason": "hotfix"},
    "training": {"regions": ["jakarta"], "force": True, "hyperparameters": '{"max_depth": 4}'},
}


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_a_typical_selection_validates(dagbag: dict[str, Any], dag_id: str) -> None:
    family = load_config(REPO / "modelyard.yaml", environ={}).family_names[0]
    values = {**TYPICAL[dag_id], "families": [family]}
    validated = _params(dagbag, dag_id, **values).validate()
    assert {k: validated[k] for k in values} == values


BAD = [
    ("batch_scoring", "alias", "latest"),
    ("batch_scoring", "version", 0),
    ("batch_scoring", "chunk_rows", 0),
    ("deploy", "version", "abc"),
    ("deploy", "version", 0),
    ("deploy", "strategy", "big-bang"),
    ("deploy", "canary_steps", [0, 100]),
    ("promotion", "version", "abc"),
    ("promotion", "action", "delete"),
    ("promotion", "groups", ["java"]),
    ("training", "regions", ["atlantis"]),
    ("data_processing", "start", "yesterday"),
    ("monitoring", "window_hours", 0),
    ("housekeeping", "snapshots", 0),
    ("housekeeping", "sample_days", 0),
    ("housekeeping", "versions", 0),
    ("housekeeping", "monitoring_days", 0),
    ("housekeeping", "dry_run", "maybe"),
]


@pytest.mark.parametrize(("dag_id", "name", "value"), BAD, ids=[f"{d}-{n}-{v}" for d, n, v in BAD])
def test_bad_values_are_refused(dagbag: dict[str, Any], dag_id: str, name: str, value: Any) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        _params(dagbag, dag_id, **{name: value}).validate()


def test_the_promotion_form_selects_pooled_models_by_region_group(dagbag: dict[str, Any]) -> None:
    """The groups of the config (ADR 0015) are the form's choices, like families and regions."""
    config = load_config(REPO / "modelyard.yaml", environ={})
    dag = next(d for d in dagbag["dags"] if d["dag_id"] == "promotion")
    assert dag["params"]["groups"]["schema"]["items"]["enum"] == list(config.region_groups)
    values = {"families": config.family_names[:1], "groups": ["country-id"], "action": "evaluate"}
    validated = _params(dagbag, "promotion", **values).validate()
    assert {k: validated[k] for k in values} == values
