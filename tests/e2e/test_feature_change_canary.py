"""Day two through the CLI (issue 21's "done when"): the family's features change while v1 serves.

``modelyard data build``, ``train``, ``promote`` and ``deploy`` (the real commands, in process) on
the session's real MLflow server and a real local serving process: v1 is trained, promoted and
deployed; the family drops one feature and adds one; v2 is trained and judged by the gates (each
version on its own spec) and rolled out as a canary. Nothing moves an alias by hand, nothing
crashes, and the endpoint answers the config's new raw fields with v2 over real HTTP.

One family, one region, the e2e tier's few rows; the gates are loose (whether v2 is better on
1,500 rows is not the question here) so the chain's answer is a promotion, never a hand move.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_stack import write_e2e_config
from mlflow import MlflowClient
from typer.testing import CliRunner

from modelyard.core.config import Config, load_config
from modelyard.core.contracts.registry import CHAMPION_ALIAS, PREVIOUS_ALIAS
from modelyard.deploy.devstack.endpoint import serving_versions
from modelyard.deploy.rollout.local_target import LocalTarget
from modelyard.deploy.rollout.mlflow_server import free_port
from modelyard.promotion.aliases import aliases

pytestmark = pytest.mark.timeout(900)

FAMILY, REGION = "driver_acceptance", "jakarta"
KEY = f"{FAMILY}/{REGION}"
DROPPED = "is_weekend"
ADDED = {"name": "month", "kind": "month"}  # computed from event_time, which clients already send


def write_config(root: Path, mlflow_uri: str, port: int, models: str, changed: bool) -> Path:
    """The e2e tier's config narrowed to one pair, served locally on ``port``; ``changed``: the new features."""
    path = write_e2e_config(root / ("v2.yaml" if changed else "v1.yaml"), root / "data")
    raw = yaml.safe_load(path.read_text())
    raw["regions"] = [r for r in raw["regions"] if r["name"] == REGION]
    raw["families"] = [f for f in raw["families"] if f["name"] == FAMILY]
    family = raw["families"][0]
    family["params"] = {**family["params"], "n_estimators": 60, "learning_rate": 0.15}
    if changed:
        family["features"] = [f for f in family["features"] if f != {"name": DROPPED, "kind": DROPPED}] + [ADDED]
    raw["mlflow"] = {"tracking_uri": mlflow_uri, "model_name_template": models}
    raw["deploy"]["kubernetes"]["releases"] = {}
    raw["deploy"]["local"] = {"host": "127.0.0.1", "port": port}
    raw["deploy"]["rollout"].update({"strategy": "canary", "canary_steps": [50, 100], "analysis_seconds": 2})
    gates = raw["gates"]["defaults"]
    gates["classification"]["versus_champion"] = [{"metric": "holdout_auc", "direction": "higher", "max_regression": 1}]
    gates.update({"max_psi": 100, "max_slice_regression": 1, "max_p99_latency_ms": 10_000})
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run(*args: str | Path) -> str:
    """``modelyard <args>`` in process; its output (a non-zero exit fails the test with it)."""
    from modelyard.deploy.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, f"modelyard {' '.join(map(str, args))} exited {result.exit_code}:\n{result.output}"
    return result.output


def chain(path: Path) -> dict[str, str]:
    """Build, train, judge and deploy the pair with the config at ``path``; the outputs by command."""
    outputs = {}
    for command in ("data build", "train", "promote", "deploy"):
        outputs[command] = run(*command.split(), "--config", path)
    return outputs


def champion(client: MlflowClient, config: Config) -> dict[str, Any]:
    return aliases(client, config.mlflow.model_name(FAMILY, REGION))


def test_a_feature_change_is_trained_judged_promoted_and_canaried_without_a_hand_moved_alias(
    tmp_path: Path, mlflow_uri: str
) -> None:
    port, models = free_port(), f"fcc{uuid.uuid4().hex[:6]}-{{family}}-{{region}}"
    v1_path = write_config(tmp_path, mlflow_uri, port, models, changed=False)
    v2_path = write_config(tmp_path, mlflow_uri, port, models, changed=True)
    v1_config, v2_config = load_config(v1_path, environ={}), load_config(v2_path, environ={})
    client = MlflowClient(mlflow_uri)
    target = LocalTarget.from_config(v1_config, mlflow_uri, port=port)
    try:
        first = chain(v1_path)
        v1 = champion(client, v1_config)[CHAMPION_ALIAS]
        assert "promoted" in first["promote"], first["promote"]
        assert serving_versions(v1_config, target.url) == {KEY: v1}

        second = chain(v2_path)

        registry = champion(client, v2_config)
        v2 = registry[CHAMPION_ALIAS]
        assert int(v2) > int(v1), (registry, second["promote"])
        assert registry[PREVIOUS_ALIAS] == v1, (registry, second["promote"])
        assert "promoted" in second["promote"], second["promote"]
        # The rollout was a canary (two steps), and the endpoint takes v2's raw fields and answers with v2.
        for expected in ("canary 50%", "deployed"):
            assert expected in second["deploy"], second["deploy"]
        assert serving_versions(v2_config, target.url) == {KEY: v2}
        assert DROPPED not in v2_config.feature_spec(v2_config.family(FAMILY)).names
    finally:
        target.stop()
