"""Realistic snapshots for behavioural model tests: the data stage's own build on synthetic bookings."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from modelyard.core.config import Config, load_config
from modelyard.pipeline.build import build_all
from modelyard.pipeline.snapshots import latest_snapshot, load_frame

REPO = Path(__file__).resolve().parents[2]
MODEL_REGIONS = ["jakarta", "bangkok"]  # test_behaviour.py parametrizes over the same list


@pytest.fixture(scope="session")
def model_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """The demo config (its families, params and gates) with storage in a temporary folder."""
    root = tmp_path_factory.mktemp("model-tier")
    return load_config(
        REPO / "modelyard.yaml",
        environ={"MODELYARD_STORAGE__ROOT": str(root), "MODELYARD_DATA__SYNTHETIC__ROWS": "3000"},
    )


@pytest.fixture(scope="session")
def snapshot_frames(model_config: Config) -> dict[tuple[str, str], pd.DataFrame]:
    """Published snapshot frames of every family for :data:`MODEL_REGIONS`."""
    results = build_all(model_config, regions=MODEL_REGIONS)
    failed = [f"{r.family}/{r.region}: {r.reason}" for r in results if r.status not in ("published", "unchanged")]
    assert not failed, failed
    features_dir = model_config.storage.features_dir
    return {
        (f, r): load_frame(features_dir, latest_snapshot(features_dir, f, r))
        for f, r in model_config.pairs(regions=MODEL_REGIONS)
    }
