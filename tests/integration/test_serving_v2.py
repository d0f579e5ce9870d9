"""The Open Inference Protocol (v2) end to end: a real ``modelyard serve``, real models from a real ``mlflow server``.

A v2 client library (``tritonclient.http``, in its default binary-tensor mode and in JSON) calls
the server: health, metadata, infer by name and by version. The same plan answers ``/v1``; a
request with the same routing key gets the same version and the same predictions on both, the
shadow runs and the prediction log samples v2 requests like ``/v1`` ones.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
import yaml
from tritonclient.utils import InferenceServerException

from tests.bench.serving import ServerProcess, feature_names, register_raw_xgboost, register_xgboost

N_FEATURES = 4
NAMES = feature_names(N_FEATURES)
ROWS = np.random.default_rng(5).normal(size=(3, N_FEATURES))


@pytest.fixture(scope="module")
def served(mlflow_server, tmp_path_factory) -> dict[str, Any]:
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.set_registry_uri(mlflow_server.url)
    small = {"n_features": N_FEATURES, "n_trees": 10, "rows": 300, "onnx": False}
    one = register_xgboost("v2it-fare", seed=0, **small)
    two = register_xgboost("v2it-fare", seed=1, **small)
    raw_uri, raw_record, _ = register_raw_xgboost("v2it-acceptance", n_trees=10)
    workdir = tmp_path_factory.mktemp("serving-v2")
    plan = {
        "version": 1,
        "prediction_log": {"sample_rate": 1.0, "rotate_seconds": 1},
        "services": [
            {
                "family": "fare",
                "region": "jakarta",
                "variants": [
                    {"name": "champion", "model_uri": one, "weight": 50},
                    {"name": "challenger", "model_uri": two, "weight": 50},
                ],
                "shadows": [{"name": "next", "model_uri": two}],
            },
            {
                "family": "driver_acceptance",
                "region": "jakarta",
                "variants": [{"name": "champion", "model_uri": raw_uri, "weight": 100}],
            },
        ],
    }
    plan_path = workdir / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(plan))
    log_dir = workdir / "predictions"
    server = ServerProcess.start(plan_path, mlflow_server.url, env={"MODELYARD_SERVE_LOG_DIR": str(log_dir)})
    try:
        server.wait_ready(timeout=180)
        yield {"url": server.url, "raw_record": raw_record, "log_dir": log_dir, "server": server}
    finally:
        server.stop()


def _client(url: str) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=30)


def _fare_inputs(binary: bool) -> list[triton.InferInput]:
    inputs = []
    for index, name in enumerate(NAMES):
        tensor = triton.InferInput(name, [len(ROWS)], "FP64")
        tensor.set_data_from_numpy(ROWS[:, index].astype(np.float64), binary_data=binary)
        inputs.append(tensor)
    return inputs


def test_tritonclient_sees_a_live_ready_server_and_its_models(served):
    client = _client(served["url"])
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("fare-jakarta")
    assert client.is_model_ready("v2it-fare")
    assert not client.is_model_ready("fare-bandung")
    assert client.get_server_metadata()["name"] == "modelyard"
    meta = client.get_model_metadata("fare-jakarta")
    assert meta["versions"] == ["1", "2"]
    assert meta["inputs"] == [{"name": n, "datatype": "FP64", "shape": [-1]} for n in NAMES]  # the signature's doubles
    assert meta["outputs"] == [{"name": "probability", "datatype": "FP32", "shape": [-1]}]
    raw = client.get_model_metadata("driver_acceptance-jakarta", model_version="1")
    types = {t["name"]: t["datatype"] for t in raw["inputs"]}
    assert types["event_time"] == "BYTES"
    assert types["area_demand_index"] == "FP64"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_infer_gives_the_v1_answer_for_the_same_routing_key(served, binary):
    client = _client(served["url"])
    for key in ("rider-1", "rider-2", "rider-3", "rider-4"):
        result = client.infer(
            "fare-jakarta",
            _fare_inputs(binary),
            request_id=f"id-{key}",
            parameters={"routing_key": key},
            outputs=[triton.InferRequestedOutput("probability", binary_data=False)],
        )
        answer = result.get_response()
        assert answer["id"] == f"id-{key}"
        records = [dict(zip(NAMES, row.tolist(), strict=True)) for row in ROWS]
        v1 = httpx.post(
            f"{served['url']}/v1/predict/fare/jakarta", json=records, headers={"x-routing-key": key}, timeout=10
        ).json()
        assert answer["model_version"] == v1["version"]
        np.testing.assert_allclose(result.as_numpy("probability"), v1["predictions"], rtol=1e-6)


def test_tritonclient_infer_by_version_and_with_raw_fields(served):
    client = _client(served["url"])
    for version in ("1", "2"):
        result = client.infer("fare-jakarta", _fare_inputs(True), model_version=version)
        assert result.get_response()["model_version"] == version
        assert result.as_numpy("probability").shape == (len(ROWS),)
    record = served["raw_record"]
    inputs = []
    for name, value in record.items():
        is_time = name == "event_time"
        tensor = triton.InferInput(name, [1], "BYTES" if is_time else "FP64")
        tensor.set_data_from_numpy(np.asarray([value], dtype=np.object_ if is_time else np.float64))
        inputs.append(tensor)
    raw = client.infer("driver_acceptance-jakarta", inputs).as_numpy("probability")
    v1 = httpx.post(f"{served['url']}/v1/predict/driver_acceptance/jakarta", json=record, timeout=10).json()
    np.testing.assert_allclose(raw, v1["predictions"], rtol=1e-6)


def test_tritonclient_reports_the_servers_v2_errors(served):
    client = _client(served["url"])
    with pytest.raises(InferenceServerException, match="unknown model 'fare-bandung'"):
        client.infer("fare-bandung", _fare_inputs(False))
    short = _fare_inputs(False)[1:]
    with pytest.raises(InferenceServerException, match="f00"):
        client.infer("fare-jakarta", short)


def test_v2_requests_are_metered_shadowed_and_sampled(served):
    client = _client(served["url"])
    client.infer("fare-jakarta", _fare_inputs(True), model_version="1")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        metrics = httpx.get(f"{served['url']}/metrics", timeout=5).text
        shadowed = 'modelyard_shadow_predictions_total{family="fare",region="jakarta",shadow="next",status="ok"}'
        samples = list(Path(served["log_dir"]).rglob("*.jsonl.gz"))
        if shadowed in metrics and samples:
            break
        time.sleep(0.5)
    assert 'status="ok",variant="champion",version="1"' in metrics
    assert shadowed in metrics, metrics
    assert samples, "no prediction-log file was published"
    openapi = httpx.get(f"{served['url']}/openapi.json", timeout=5).json()
    assert "/v2/models/{model_name}/infer" in openapi["paths"]
    detail = httpx.get(f"{served['url']}/v1/models/fare/jakarta", timeout=5).json()
    assert [v["version"] for v in detail["variants"]] == ["1", "2"]
