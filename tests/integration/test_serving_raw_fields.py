"""The demo family trained on small data, served by a real ``modelyard serve``: raw records as a client sends them.

Trains ``driver_acceptance/jakarta`` against the session's real ``mlflow server``, writes a plan
for it, and sends the snapshot's holdout rows (and festival-day rows) as raw fields (the event
time as ISO-8601 in Jakarta's offset, the raw columns, the demand index by name) and as the
precomputed features: both give the offline predictions of the snapshot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from modelyard.core.config import Config, load_config
from modelyard.core.featurespec import FittedSpec
from modelyard.pipeline import snapshots
from modelyard.pipeline.build import build_all
from modelyard.training.mlflow_log import raw_example
from modelyard.training.train import train_pair
from tests.bench.serving import ServerProcess

REPO = Path(__file__).resolve().parents[2]
FAMILY, REGION = "driver_acceptance", "jakarta"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = tmp_path_factory.mktemp("raw-serving")
    loaded = load_config(
        REPO / "modelyard.yaml",
        environ={
            "MODELYARD_STORAGE__ROOT": str(root),
            "MODELYARD_DATA__SYNTHETIC__ROWS": "3000",
            "MODELYARD_PROJECT": "it-raw",
            "MODELYARD_MLFLOW__MODEL_NAME_TEMPLATE": "it-raw-{family}-{region}",
        },
    )
    results = build_all(loaded, families=[FAMILY], regions=[REGION])
    assert [r.status for r in results] == ["published"], [r.reason for r in results]
    return loaded


def test_the_demo_model_answers_raw_records_like_the_snapshot(config: Config, mlflow_uri: str, tmp_path) -> None:
    result = train_pair(config, FAMILY, REGION, tracking_uri=mlflow_uri)
    assert result.status == "registered", result.reason
    uri = f"models:/{result.model_name}/{result.version}"
    meta = snapshots.latest_snapshot(config.storage.features_dir, FAMILY, REGION)
    frame = snapshots.load_frame(config.storage.features_dir, meta)
    fitted = FittedSpec.from_dict(meta.feature_spec or {})
    festival = frame[frame["is_festival"] == 1].head(100)
    assert len(festival) > 20
    rows = pd.concat([frame.tail(1000), festival])
    offline = mlflow.xgboost.load_model(uri).predict_proba(rows[fitted.names].astype("float64"))[:, 1]
    raw = raw_example(fitted, rows).to_dict("records")
    precomputed = rows[fitted.names].astype("float64").to_dict("records")

    variant = {"name": "champion", "model_uri": uri, "weight": 100}
    plan = {"version": 1, "services": [{"family": FAMILY, "region": REGION, "variants": [variant]}]}
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(plan))
    server = ServerProcess.start(plan_path, mlflow_uri)
    try:
        status = server.wait_ready(timeout=180)["models"][uri]
        assert status["inputs"]["raw_inputs"] == fitted.raw_inputs
        assert status["inputs"]["requested"] == ["area_demand_index"]
        for chunk in (len(raw), 50):
            served = _predict_all(server.url, raw, chunk)
            np.testing.assert_array_equal(served, _predict_all(server.url, precomputed, chunk))
            np.testing.assert_allclose(served, offline, atol=1e-6, rtol=0)
        naive = {**raw[0], "event_time": "2026-03-20T18:30:00"}
        refused = httpx.post(f"{server.url}/v1/predict/{FAMILY}/{REGION}", json=naive, timeout=10)
        assert refused.status_code == 400, refused.text
        assert "event_time" in refused.json()["message"]
        _probe_bad_raw_values(server.url, fitted, raw[0])
    finally:
        server.stop()


def _predict_all(url: str, records: list[dict[str, Any]], chunk: int) -> np.ndarray:
    out: list[float] = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for start in range(0, len(records), chunk):
            response = client.post(f"/v1/predict/{FAMILY}/{REGION}", json=records[start : start + chunk])
            assert response.status_code == 200, response.text
            out += response.json()["predictions"]
    return np.asarray(out)


def _probe_bad_raw_values(url: str, fitted: Any, good: dict[str, Any]) -> None:
    """Every value that does not fit its declared column is a 422 naming the record and field, never a 500."""
    columns = fitted.spec.columns
    floats = [n for n in fitted.raw_inputs if columns.get(n) == "float"]
    ints = [n for n in fitted.raw_inputs if columns.get(n) == "int"]
    time_column = fitted.spec.time_column
    probes: list[tuple[str, Any, str]] = [(time_column, "0001-01-01T00:00+14:00", "between the years")]
    for name in floats[:1]:
        probes += [(name, v, "send a JSON number") for v in ("Infinity", "nan", "12", True)]
        probes += [(name, 1e39, "float range"), (name, None, "not nullable"), (name, [1, 2], "send a JSON number")]
    for name in ints[:1]:
        probes += [(name, None, "not nullable"), (name, 1e30, "whole number within int64")]
    assert len(probes) >= 8, (floats, ints)
    for name, value, names in probes:
        body = [good, {**good, name: value}]
        response = httpx.post(f"{url}/v1/predict/{FAMILY}/{REGION}", json=body, timeout=10)
        assert response.status_code == 422, (name, value, response.text)
        error = response.json()
        assert error["field"] == f"records[1].{name}", response.text
        assert names in error["message"], response.text
        assert "inhomogeneous" not in error["message"]
