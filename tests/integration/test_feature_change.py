"""Day two: a family's features change while its champion serves (issue 21).

Built with the real data stage, trained and registered on the session's real MLflow server, then
judged, promoted by hand and rolled back across the change: every version is featurised with its
own ``feature_spec.json``, never with today's config. (A canary of the changed version under
Airflow is the deploy tier's test, not this one.)
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient

from modelyard.core.config import Config, load_config
from modelyard.core.contracts.registry import CHAMPION_ALIAS, PREVIOUS_ALIAS
from modelyard.deploy.rollout.apply import deploy_local
from modelyard.deploy.rollout.local_target import LocalTarget
from modelyard.deploy.rollout.mlflow_server import free_port
from modelyard.deploy.rollout.request import DeployChoices, DeployRequest
from modelyard.deploy.rollout.strategies import DeployError
from modelyard.pipeline.build import build_all
from modelyard.promotion.aliases import aliases, open_client
from modelyard.promotion.decide import evaluate_pair, promote_version, rollback
from modelyard.promotion.decision import Decision
from modelyard.training.train import train_pair

REPO = Path(__file__).resolve().parents[2]
FAMILY = "driver_acceptance"
REGION = "jakarta"
ADDED = [
    {"name": "month", "kind": "month"},
    {"name": "long_trip", "kind": "compare", "column": "pickup_distance_km", "op": ">", "value": 5},
]


def write_config(
    folder: Path, mlflow_url: str, model_names: str, change: dict[str, Any] | None = None, port: int | None = None
) -> Config:
    """The demo config: one family, one region, few rows, small models; ``change`` drops and adds features.

    With ``port``, a local serving process there rolls canaries out in two short steps.
    """
    raw = yaml.safe_load((REPO / "modelyard.yaml").read_text())
    raw["regions"] = [r for r in raw["regions"] if r["name"] == REGION]
    raw.pop("deploy", None)
    if port is not None:
        rollout = {"canary_steps": [50, 100], "analysis_seconds": 1}
        raw["deploy"] = {"target": "local", "local": {"host": "127.0.0.1", "port": port}, "rollout": rollout}
    raw["storage"] = {"root": str(folder / "data")}
    raw["data"]["synthetic"]["rows"] = 2500
    raw["mlflow"] = {"tracking_uri": mlflow_url, "model_name_template": model_names}
    raw["families"] = [f for f in raw["families"] if f["name"] == FAMILY]
    family = raw["families"][0]
    family["params"] = {**family["params"], "n_estimators": 60, "learning_rate": 0.15}
    if change:
        kept = [f for f in family["features"] if _name(f) not in change["drop"]]
        family["features"] = kept + change.get("add", [])
        constraints = family["params"].get("monotone_constraints", {})
        family["params"]["monotone_constraints"] = {k: v for k, v in constraints.items() if k not in change["drop"]}
    # The latency gate measures a shared CI machine; this test is about features, not speed.
    raw["gates"]["defaults"]["max_p99_latency_ms"] = 10_000
    path = folder / f"modelyard-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(path, environ={})


def _name(feature: str | dict[str, Any]) -> str:
    return feature if isinstance(feature, str) else str(feature["name"])


def build_and_train(config: Config) -> str:
    results = build_all(config, families=[FAMILY], regions=[REGION])
    assert [r.status for r in results] == ["published"], [(r.family, r.region, r.reason) for r in results]
    trained = train_pair(config, FAMILY, REGION, tracking_uri=config.mlflow.tracking_uri)
    assert trained.status == "registered", trained.reason
    assert trained.version is not None
    return trained.version


def champion_of(client: MlflowClient, config: Config) -> str | None:
    return aliases(client, config.mlflow.model_name(FAMILY, REGION)).get(CHAMPION_ALIAS)


def gate_values(decision: Decision) -> dict[str, float | None]:
    return {g.name: g.value for g in decision.gates}


@pytest.fixture
def names() -> str:
    return f"{{family}}-{{region}}-fc{uuid.uuid4().hex[:8]}"


def test_promotion_and_rollback_work_across_a_feature_change(tmp_path: Path, mlflow_uri: str, names: str) -> None:
    v1_config = write_config(tmp_path, mlflow_uri, names)
    client = open_client(v1_config)
    v1 = build_and_train(v1_config)
    first = evaluate_pair(client, v1_config, FAMILY, REGION, decided_by="user:test")
    assert first.outcome == "promoted", first.summary

    # Drop a feature, add two; the champion v1 still reads is_weekend, v2 reads month and long_trip.
    v2_config = write_config(tmp_path, mlflow_uri, names, {"drop": ["is_weekend"], "add": ADDED})
    v2 = build_and_train(v2_config)
    judged = evaluate_pair(client, v2_config, FAMILY, REGION, decided_by="user:test")

    assert judged.outcome in ("promoted", "rejected"), judged.summary
    assert judged.summary
    # Both versions were scored on the same rows, each with its own spec: the comparison has a value.
    assert gate_values(judged)["versus_champion:holdout_auc"] is not None, judged.summary
    assert gate_values(judged)["prediction_psi"] is not None, judged.summary
    if judged.outcome == "rejected":
        promote_version(client, v2_config, FAMILY, REGION, v2, "accept the new features", "user:test")
    assert champion_of(client, v2_config) == v2

    # Back to v1 by hand under today's (v2) config: the gates still run, v1 through v1's spec.
    back = promote_version(client, v2_config, FAMILY, REGION, v1, "v1 again", "user:test")
    assert back.outcome == "promoted", back.summary
    assert "gates not evaluated" not in back.summary, back.summary
    assert gate_values(back)["versus_champion:holdout_auc"] is not None, back.summary
    assert champion_of(client, v2_config) == v1

    rolled = rollback(client, v2_config, FAMILY, REGION, decided_by="user:test", reason="v2 after all")
    assert rolled.outcome == "rolled-back", rolled.summary
    assert champion_of(client, v2_config) == v2


def test_a_champion_reading_a_dropped_raw_field_is_rejected_with_the_reason(
    tmp_path: Path, mlflow_uri: str, names: str
) -> None:
    v1_config = write_config(tmp_path, mlflow_uri, names)
    client = open_client(v1_config)
    build_and_train(v1_config)
    assert evaluate_pair(client, v1_config, FAMILY, REGION, decided_by="user:test").outcome == "promoted"

    # driver_rating is a raw field only v1 reads: v2's snapshot no longer carries it.
    v2_config = write_config(tmp_path, mlflow_uri, names, {"drop": ["driver_rating"], "add": ADDED[:1]})
    v2 = build_and_train(v2_config)
    judged = evaluate_pair(client, v2_config, FAMILY, REGION, decided_by="user:test")

    assert judged.outcome == "rejected", judged.summary
    assert "driver_rating" in judged.summary, judged.summary
    assert "cannot be scored" in judged.summary, judged.summary
    forced = promote_version(client, v2_config, FAMILY, REGION, v2, "the new features are wanted", "user:test")
    assert forced.outcome == "promoted", forced.summary
    assert aliases(client, v2_config.mlflow.model_name(FAMILY, REGION)).get(PREVIOUS_ALIAS) is not None


def test_a_rollout_needing_a_raw_field_clients_do_not_send_is_refused_then_forced(
    tmp_path: Path, mlflow_uri: str, names: str
) -> None:
    port = free_port()
    # v1 does not read surge_multiplier: its clients do not send it. v2 reads it again (and drops is_weekend).
    v1_config = write_config(tmp_path, mlflow_uri, names, {"drop": ["surge_multiplier"]}, port=port)
    client = open_client(v1_config)
    v1 = build_and_train(v1_config)
    assert evaluate_pair(client, v1_config, FAMILY, REGION, decided_by="user:test").outcome == "promoted"
    target = LocalTarget.from_config(v1_config, mlflow_uri, port=port)
    try:
        first = deploy_local(v1_config, DeployRequest.resolve(v1_config, DeployChoices(target="local")), mlflow_uri)
        assert first.ok, first.reason
        assert first.versions[f"{FAMILY}/{REGION}"]["primary"] == v1

        v2_config = write_config(tmp_path, mlflow_uri, names, {"drop": ["is_weekend"]}, port=port)
        v2 = build_and_train(v2_config)
        promote_version(client, v2_config, FAMILY, REGION, v2, "the new features are wanted", "user:test")
        canary = DeployChoices(target="local", strategy="canary")

        # The default rolling deploy would swap every client to v2 at once: refused the same way.
        with pytest.raises(DeployError, match="surge_multiplier"):
            deploy_local(v2_config, DeployRequest.resolve(v2_config, DeployChoices(target="local")), mlflow_uri)
        with pytest.raises(DeployError) as refused:
            deploy_local(v2_config, DeployRequest.resolve(v2_config, canary), mlflow_uri)
        message = str(refused.value)
        for expected in (f"{FAMILY}/{REGION}", "surge_multiplier", f"v{v2}", "--force", "default"):
            assert expected in message, message
        live = target.live()
        assert live is not None
        assert live.digest() == first.plan_digest  # nothing moved

        forced = DeployRequest.resolve(v2_config, canary.model_copy(update={"force": True}))
        result = deploy_local(v2_config, forced, mlflow_uri)
        assert result.outcome == "deployed", (result.reason, result.steps)
        assert result.versions[f"{FAMILY}/{REGION}"]["primary"] == v2
        note = result.raw_fields[f"{FAMILY}/{REGION}"]
        assert "new: surge_multiplier" in note, note
    finally:
        target.stop()
