"""The local serving process's prediction-log settings, on a local root and on an object-store root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelyard.core.config import load_config
from modelyard.deploy.rollout.local_target import sampling_env

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[4]


def test_a_local_root_is_written_in_place(tmp_path: Path) -> None:
    config = load_config(REPO / "modelyard.yaml", environ={"MODELYARD_STORAGE__ROOT": str(tmp_path)})
    env = sampling_env(config)
    assert env["MODELYARD_SERVE_LOG_DIR"] == str(tmp_path.resolve() / "monitoring" / "samples")
    assert "MODELYARD_SERVE_LOG_URL" not in env
    assert float(env["MODELYARD_SERVE_SAMPLE_RATE"]) == config.monitoring.sample_rate


def test_an_object_store_root_spools_locally_and_ships_to_its_samples_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_S3_ENDPOINT", "http://127.0.0.1:9")  # expanded when the path is made
    environ = {
        "MODELYARD_STORAGE__ROOT": "s3://ml-platform/modelyard",
        "MODELYARD_STORAGE__LOCK_URL": "postgresql://postgres@127.0.0.1/unused",
        "MODELYARD_STORAGE__LOCAL": str(tmp_path),
        "MODELYARD_STORAGE__OPTIONS": json.dumps({"endpoint_url": "${MY_S3_ENDPOINT}"}),
    }
    config = load_config(REPO / "modelyard.yaml", environ=environ)
    env = sampling_env(config)
    assert env["MODELYARD_SERVE_LOG_DIR"] == str(tmp_path / "prediction-spool")
    assert env["MODELYARD_SERVE_LOG_URL"] == "s3://ml-platform/modelyard/monitoring/samples"
    # The options travel unexpanded: the server reads ${MY_S3_ENDPOINT} from its own environment.
    assert json.loads(env["MODELYARD_SERVE_LOG_OPTIONS"]) == {"endpoint_url": "${MY_S3_ENDPOINT}"}
