"""DAG integrity: every file in dags/ parses with Airflow's DagBag and follows the house rules.

Generic over the folder, so DAGs added later are checked without touching this file:
no import errors, at least one DAG per file, unique ids, tags, owner and retries on
every task, a doc_md, a trigger form whose defaults validate, catchup off, no heavy
library imported at parse time, serializable, and asset wiring that names real stages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelyard.core.config import load_config
from modelyard.core.contracts import assets

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))
INSPECTOR = Path(__file__).with_name("dag_inspector.py")
OWNER = "ml-platform"
STAGE_KINDS = {"features", "challenger", "champion", "deployed", "drift", "predictions"}


def _dags_of(report: dict[str, Any], file: Path) -> list[dict[str, Any]]:
    return [d for d in report["dags"] if Path(d["fileloc"]).name == file.name]


def _ids(files: list[Path]) -> list[str]:
    return [f.name for f in files]


def test_dags_folder_is_not_empty() -> None:
    assert DAG_FILES, f"no DAG files found in {DAGS}"


def test_no_import_errors(dagbag: dict[str, Any]) -> None:
    errors = {f: e.strip().splitlines()[-1] for f, e in dagbag["import_errors"].items()}
    assert not errors, f"DAG files failed to import: {errors}"


def test_dag_ids_are_unique(dagbag: dict[str, Any]) -> None:
    ids = [d["dag_id"] for d in dagbag["dags"]]
    assert len(ids) == len(set(ids)), f"duplicate dag_ids: {sorted(i for i in ids if ids.count(i) > 1)}"


def test_parsing_imports_no_heavy_library(dagbag: dict[str, Any]) -> None:
    # The DAG processor parses every file in a loop: pandas, mlflow & co. belong inside tasks.
    assert dagbag["heavy_modules"] == [], f"parsing dags/ imported {dagbag['heavy_modules']} at module level"


@pytest.mark.parametrize("file", DAG_FILES, ids=_ids(DAG_FILES))
def test_file_defines_a_dag(dagbag: dict[str, Any], file: Path) -> None:
    assert _dags_of(dagbag, file), f"{file.name} defines no DAG (or failed to import)"


@pytest.mark.parametrize("file", DAG_FILES, ids=_ids(DAG_FILES))
def test_dag_metadata(dagbag: dict[str, Any], file: Path) -> None:
    for dag in _dags_of(dagbag, file):
        assert "modelyard" in dag["tags"], f"{dag['dag_id']}: tags {dag['tags']} lack 'modelyard'"
        assert len(dag["tags"]) >= 2, f"{dag['dag_id']}: add a stage tag besides 'modelyard'"
        assert len((dag["doc_md"] or "").strip()) > 40, f"{dag['dag_id']}: doc_md missing or too short"
        assert dag["catchup"] is False, f"{dag['dag_id']}: catchup must be off"
        assert dag["serialization_error"] is None, f"{dag['dag_id']}: {dag['serialization_error']}"


@pytest.mark.parametrize("file", DAG_FILES, ids=_ids(DAG_FILES))
def test_every_task_has_owner_and_retries(dagbag: dict[str, Any], file: Path) -> None:
    for dag in _dags_of(dagbag, file):
        assert dag["tasks"], f"{dag['dag_id']} has no tasks"
        for task in dag["tasks"]:
            where = f"{dag['dag_id']}.{task['task_id']}"
            assert task["owner"] == OWNER, f"{where}: owner {task['owner']!r}, use DEFAULT_ARGS from dag_support"
            assert task["retries"] >= 1, f"{where}: retries {task['retries']}, use DEFAULT_ARGS from dag_support"


@pytest.mark.parametrize("file", DAG_FILES, ids=_ids(DAG_FILES))
def test_trigger_form(dagbag: dict[str, Any], file: Path) -> None:
    names = load_config(REPO / "modelyard.yaml", environ={})
    for dag in _dags_of(dagbag, file):
        assert dag["params"], f"{dag['dag_id']}: no Params, so no trigger form"
        assert dag["params_error"] is None, f"{dag['dag_id']}: default params do not validate: {dag['params_error']}"
        for name, param in dag["params"].items():
            assert param["title"] or param["description"], f"{dag['dag_id']}: param {name!r} needs a title/description"
        enums = {"families": names.family_names, "regions": names.region_names}
        for name, expected in enums.items():
            if name in dag["params"]:
                items = dag["params"][name]["schema"].get("items", {})
                assert items.get("enum") == expected, f"{dag['dag_id']}: param {name!r} enum is not the config's"


def test_asset_uris_name_real_stages(dagbag: dict[str, Any]) -> None:
    uris = [u for d in dagbag["dags"] for u in d["asset_schedule"]]
    uris += [o["uri"] for d in dagbag["dags"] for t in d["tasks"] for o in t["outlets"] if o["type"] == "Asset"]
    for uri in uris:
        if uri.startswith(f"{assets.SCHEME}://"):
            kind, _ = assets.parse_uri(uri)
            assert kind in STAGE_KINDS, f"asset {uri}: unknown stage kind {kind!r}"


def test_scheduled_assets_have_a_producer(dagbag: dict[str, Any]) -> None:
    produced = {o["uri"] for d in dagbag["dags"] for t in d["tasks"] for o in t["outlets"]}
    for dag in dagbag["dags"]:
        for uri in dag["asset_schedule"]:
            assert uri in produced, f"{dag['dag_id']} waits on {uri}, no task emits through it"


# Each stage is scheduled on the alias its upstream announces per-pair events through (ADR 0023):
# one small expression, however many pairs; the events still name one pair's Asset each.
SCHEDULED_ON = {
    "training": [assets.DRIFT_ALIAS, assets.FEATURES_ALIAS],
    "promotion": [assets.CHALLENGERS_ALIAS],
    "deploy": [assets.CHAMPIONS_ALIAS],
    "batch_scoring": [assets.CHAMPIONS_ALIAS],
}


@pytest.mark.parametrize("dag_id", sorted(SCHEDULED_ON))
def test_stages_are_scheduled_on_their_upstream_alias_not_one_asset_a_pair(dagbag: dict[str, Any], dag_id: str) -> None:
    dag = next(d for d in dagbag["dags"] if d["dag_id"] == dag_id)
    assert sorted(dag["asset_schedule"]) == SCHEDULED_ON[dag_id]


def test_data_processing_wiring(dagbag: dict[str, Any]) -> None:
    dag = next((d for d in dagbag["dags"] if d["dag_id"] == "data_processing"), None)
    assert dag is not None, "dags/data_processing.py must define the data_processing DAG"
    assert "0 0 * * *" in dag["schedule"], f"schedule should follow config.schedules (@daily): {dag['schedule']}"
    assert {"families", "regions", "start", "end", "source"} <= set(dag["params"])


# Each chunked stage: select → chunk task mapped over chunks → one teardown that announces the
# run's events at once (ADR 0008). The teardown keeps a failed chunk the run's outcome.
CHUNKED_STAGES = {
    "data_processing": ("build_snapshots", "publish_snapshots", "modelyard-features"),
    "training": ("train", "publish_challengers", "modelyard-challengers"),
    "promotion": ("decide", "publish_champions", "modelyard-champions"),
}


@pytest.mark.parametrize("dag_id", sorted(CHUNKED_STAGES))
def test_chunked_stage_wiring(dagbag: dict[str, Any], dag_id: str) -> None:
    dag = next((d for d in dagbag["dags"] if d["dag_id"] == dag_id), None)
    assert dag is not None, f"no DAG {dag_id}"
    chunk_id, publish_id, alias = CHUNKED_STAGES[dag_id]
    tasks = {t["task_id"]: t for t in dag["tasks"]}
    extra = {
        "promotion": {"approval_requests", "approve", "apply_answer", "every_pair_decided"},
        "training": {"train_pooled_models", "every_pair_trained"},
    }.get(dag_id, set())
    assert set(tasks) == {"select_pairs", chunk_id, publish_id} | extra, sorted(tasks)
    chunk, publish = tasks[chunk_id], tasks[publish_id]
    assert chunk["mapped"], chunk
    assert chunk["upstream"] == ["select_pairs"], chunk
    assert chunk["outlets"] == [], f"{dag_id}.{chunk_id}: events come from {publish_id} only, all at once"
    assert chunk["map_index_template"] == "{{ chunk_label }}", chunk
    assert publish["is_teardown"], publish
    # Training announces the pooled models' challengers with the pairs' (ADR 0015): after both.
    assert publish["upstream"] == sorted([chunk_id, *({"training": ["train_pooled_models"]}.get(dag_id, []))]), publish
    assert publish["outlets"] == [{"type": "AssetAlias", "uri": alias}]


def test_training_trains_the_pooled_models_after_the_pairs(dagbag: dict[str, Any]) -> None:
    """Pooled models of the selected regions' groups (ADR 0015), whatever became of single pairs."""
    dag = next(d for d in dagbag["dags"] if d["dag_id"] == "training")
    pooled = {t["task_id"]: t for t in dag["tasks"]}["train_pooled_models"]
    assert sorted(pooled["upstream"]) == ["select_pairs", "train"]
    assert pooled["trigger_rule"] == "all_done", "a failed pair must not hold back its group's pooled model"
    assert not pooled["mapped"]
    verdict = {t["task_id"]: t for t in dag["tasks"]}["every_pair_trained"]
    assert sorted(verdict["upstream"]) == ["train", "train_pooled_models"]
    assert verdict["trigger_rule"] == "all_success", "a failed chunk must fail the run"


def test_promotion_is_scheduled_on_the_pooled_models_challengers(dagbag: dict[str, Any]) -> None:
    """A pooled challenger (``challenger/<family>/<group>``, ADR 0015) triggers promotion like a pair's:
    training announces both through the alias promotion is scheduled on."""
    training = next(d for d in dagbag["dags"] if d["dag_id"] == "training")
    promotion = next(d for d in dagbag["dags"] if d["dag_id"] == "promotion")
    publish = {t["task_id"]: t for t in training["tasks"]}["publish_challengers"]
    assert publish["outlets"] == [{"type": "AssetAlias", "uri": assets.CHALLENGERS_ALIAS}]
    assert promotion["asset_schedule"] == [assets.CHALLENGERS_ALIAS]


def test_promotion_approval_wiring(dagbag: dict[str, Any]) -> None:
    """decide -> approval_requests -> approve (one mapped Required Action per pair) -> apply_answer (champions)."""
    dag = next(d for d in dagbag["dags"] if d["dag_id"] == "promotion")
    tasks = {t["task_id"]: t for t in dag["tasks"]}
    assert tasks["approval_requests"]["upstream"] == ["decide"]  # it reads the chunks' pair outcomes
    assert tasks["approval_requests"]["trigger_rule"] == "all_done", "one failed pair must not hold back the others"
    assert tasks["approve"]["mapped"]
    assert tasks["approve"]["upstream"] == ["approval_requests"]
    assert tasks["approve"]["operator"] == "PairApprovalOperator"
    assert tasks["apply_answer"]["mapped"]
    assert tasks["apply_answer"]["upstream"] == ["approve"]
    assert tasks["apply_answer"]["outlets"] == [{"type": "AssetAlias", "uri": "modelyard-champions"}]
    # approval_requests runs whatever became of the chunks and the teardown does not count: the verdict does.
    assert tasks["every_pair_decided"]["upstream"] == ["decide"]
    assert tasks["every_pair_decided"]["trigger_rule"] == "all_success", "a failed chunk must fail the run"


def test_monitoring_wiring(dagbag: dict[str, Any]) -> None:
    dag = next((d for d in dagbag["dags"] if d["dag_id"] == "monitoring"), None)
    assert dag is not None, "dags/monitoring.py must define the monitoring DAG"
    assert "0 * * * *" in dag["schedule"], f"schedule should follow monitoring.schedule (@hourly): {dag['schedule']}"
    tasks = {t["task_id"]: t for t in dag["tasks"]}
    assert tasks["measure"]["mapped"], "measure must be mapped over chunks of pairs"
    assert tasks["measure"]["upstream"] == ["select_pairs"]
    assert tasks["publish_drifts"]["upstream"] == ["measure"]
    assert tasks["publish_drifts"]["outlets"] == [{"type": "AssetAlias", "uri": "modelyard-drift"}]
    assert {"families", "regions", "window_hours"} <= set(dag["params"])


def test_batch_scoring_wiring(dagbag: dict[str, Any]) -> None:
    """Chunked like the other stages, rescored when a champion moves, predictions announced at once."""
    dag = next((d for d in dagbag["dags"] if d["dag_id"] == "batch_scoring"), None)
    assert dag is not None, "dags/batch_scoring.py must define the batch_scoring DAG"
    assert dag["asset_schedule"] == [assets.CHAMPIONS_ALIAS]
    tasks = {t["task_id"]: t for t in dag["tasks"]}
    assert set(tasks) == {"select_pairs", "score", "publish_predictions"}, sorted(tasks)
    assert tasks["score"]["mapped"]
    assert tasks["score"]["upstream"] == ["select_pairs"]
    assert tasks["score"]["map_index_template"] == "{{ chunk_label }}"
    assert tasks["score"]["outlets"] == [], "events come from publish_predictions only, all at once"
    assert tasks["publish_predictions"]["is_teardown"]
    assert tasks["publish_predictions"]["outlets"] == [{"type": "AssetAlias", "uri": "modelyard-predictions"}]
    assert {"families", "regions", "input", "alias", "version"} <= set(dag["params"])


def test_housekeeping_wiring(dagbag: dict[str, Any]) -> None:
    """One task on retention.schedule, announcing nothing: pruning starts no stage."""
    dag = next((d for d in dagbag["dags"] if d["dag_id"] == "housekeeping"), None)
    assert dag is not None, "dags/housekeeping.py must define the housekeeping DAG"
    assert "0 0 * * *" in dag["schedule"], f"schedule should follow retention.schedule (@daily): {dag['schedule']}"
    assert [(t["task_id"], t["outlets"]) for t in dag["tasks"]] == [("prune", [])]
    form = {"families", "regions", "snapshots", "sample_days", "monitoring_days", "versions", "dry_run"}
    assert set(dag["params"]) == form
    assert dag["params"]["dry_run"]["value"] is False


def test_training_is_scheduled_on_drift_as_well_as_features(dagbag: dict[str, Any]) -> None:
    dag = next(d for d in dagbag["dags"] if d["dag_id"] == "training")
    assert sorted(dag["asset_schedule"]) == [assets.DRIFT_ALIAS, assets.FEATURES_ALIAS]
    publish = {t["task_id"]: t for d in dagbag["dags"] if d["dag_id"] == "monitoring" for t in d["tasks"]}
    assert publish["publish_drifts"]["outlets"] == [{"type": "AssetAlias", "uri": assets.DRIFT_ALIAS}]
