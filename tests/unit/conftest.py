"""Small synthetic snapshot frames for the training unit tests (no generator, no MLflow)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelyard.core.config import Config, load_config

FEATURES = ["x1", "x2", "is_new_driver"]

CONFIG_YAML = """
seed: 7
storage: {root: %(root)s}
data: {min_rows: 100}
training: {holdout_days: 10, validation_days: 10, early_stopping_rounds: 5}
regions:
  - {name: alpha, country: ID, timezone: Asia/Jakarta}
  - {name: beta, country: VN, timezone: Asia/Ho_Chi_Minh}
families:
  - name: acceptance
    task: classification
    target: accepted
    features: [x1, x2, is_new_driver]
    params: {n_estimators: 30, max_depth: 3}
    baseline: sklearn_logistic
  - name: eta
    task: regression
    target: eta_min
    features: [x1, x2, is_new_driver]
    params: {n_estimators: 30, max_depth: 3}
    baseline: sklearn_ridge
    region_overrides:
      beta: {algorithm: sklearn_random_forest, params: {n_estimators: 20}}
"""


def make_frame(rows: int = 600, days: int = 60, seed: int = 0, task: str = "classification") -> pd.DataFrame:
    """A snapshot-shaped frame: event_time, hour, is_new_driver, x1, x2 and a learnable target."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-01-01", tz="UTC")
    times = start + pd.to_timedelta(np.sort(rng.uniform(0, days * 86400, rows)), unit="s")
    x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
    frame = pd.DataFrame(
        {
            "event_time": times,
            "hour": times.hour.astype("int64"),
            "is_new_driver": rng.integers(0, 2, rows).astype("int64"),
            "x1": x1,
            "x2": x2,
        }
    )
    if task == "classification":
        frame["accepted"] = (x1 + 0.5 * x2 + rng.normal(scale=0.5, size=rows) > 0).astype("int64")
    else:
        frame["eta_min"] = 10 + 3 * x1 - x2 + rng.normal(scale=0.5, size=rows)
    return frame


@pytest.fixture
def frame_factory() -> Callable[..., pd.DataFrame]:
    return make_frame


@pytest.fixture
def small_config(tmp_path: Path) -> Config:
    path = tmp_path / "modelyard.yaml"
    path.write_text(CONFIG_YAML % {"root": tmp_path / "store"})
    return load_config(path, environ={})
