"""The ONNX fast path through a real `modelyard serve` and a real `mlflow server`.

The same xgboost model is registered twice: with its ONNX copy (as training logs it) and
without. One server serves both; the first must say engine=onnx in /readyz and the
metric, the second native with the reason, and both must answer the same predictions.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import yaml

from modelyard.deploy.serving import engines
from tests.bench.serving import ServerProcess, feature_names, register_xgboost

N_FEATURES = 6
NAMES = feature_names(N_FEATURES)


@pytest.fixture(scope="module")
def uris(mlflow_server) -> dict[str, str]:
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.url)
    small = {"n_features": N_FEATURES, "n_trees": 40, "rows": 600, "seed": 4}
    return {
        "onnx": register_xgboost("onnx-acceptance", onnx=True, **small),
        "native": register_xgboost("onnx-acceptance-native", onnx=False, **small),
    }


@pytest.fixture(scope="module")
def server(uris, mlflow_server, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("serving-onnx")
    plan = {
        "version": 1,
        "services": [
            {
                "family": "driver_acceptance",
                "region": region,
                "timezone": "UTC",
                "variants": [{"name": "champion", "model_uri": uris[key], "weight": 100}],
            }
            for region, key in (("jakarta", "onnx"), ("surabaya", "native"))
        ],
    }
    plan_path = workdir / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(plan))
    with ServerProcess.start(plan_path, mlflow_server.url) as process:
        process.wait_ready(timeout=180)
        yield process


def test_readyz_names_the_engine_of_each_model_and_why(server, uris):
    models = httpx.get(f"{server.url}/readyz").json()["models"]
    fast, native = models[uris["onnx"]], models[uris["native"]]
    assert fast["engine"] == "onnx", fast["engine_detail"]
    assert fast["engine_detail"]["parity_rows"] >= 256
    assert "ONNX for" in fast["engine_detail"]["reason"]
    assert native["engine"] == "native"
    assert "no ONNX copy stored with this version" in native["engine_detail"]["reason"]
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'modelyard_model_engine{engine="onnx",model="onnx-acceptance",version="1"} 1.0' in metrics
    assert 'modelyard_model_engine{engine="native",model="onnx-acceptance-native",version="1"} 1.0' in metrics


@pytest.mark.parametrize("rows", [1, 8, 300])
def test_onnx_and_native_answer_the_same_predictions(server, rows):
    rng = np.random.default_rng(rows)
    records = [dict(zip(NAMES, row, strict=True)) for row in rng.normal(size=(rows, N_FEATURES)).round(4).tolist()]
    answers = {}
    for region in ("jakarta", "surabaya"):
        response = httpx.post(f"{server.url}/v1/predict/driver_acceptance/{region}", json={"records": records})
        assert response.status_code == 200, response.text
        answers[region] = np.asarray(response.json()["predictions"])
    assert engines.parity_diff(answers["surabaya"], answers["jakarta"]) == 0.0
