"""The v2 endpoints, /openapi.json and /v1/models on the real ASGI app, against the protocol's documented objects.

The app runs in process (httpx's ASGI transport) on an active plan of in-memory models: two
versions of ``fare-jakarta`` split 70/30 with a festival rule, and a model with the demo's
fitted feature spec that takes raw fields (its event time as BYTES).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from modelyard.deploy.serving.active import build_active
from modelyard.deploy.serving.app import ServingApp
from modelyard.deploy.serving.background import BackgroundWorker
from modelyard.deploy.serving.features import RawFeatures
from modelyard.deploy.serving.manager import PlanManager
from modelyard.deploy.serving.plan import parse_plan
from modelyard.deploy.serving.runtime import ModelStatus, ServedModel
from modelyard.deploy.serving.schema import Feature, InputSchema
from modelyard.deploy.serving.settings import ServeSettings
from tests.bench.serving import demo_fitted_spec, raw_records
from tests.unit.deploy.serving.v2_conformance import (
    ERROR_RESPONSE,
    INFERENCE_RESPONSE,
    MODEL_METADATA,
    SERVER_METADATA,
    check,
    check_outputs_consistent,
)

V1, V2 = "models:/fare-jakarta/1", "models:/fare-jakarta/2"
RAW = "models:/acceptance-model/4"


def _model(uri: str, version: str, offset: float) -> ServedModel:
    status = ModelStatus(uri=uri, name=uri.split("/")[1], version=version, state="ready", task="classification")
    status.flavor = "xgboost"
    schema = InputSchema([Feature("distance_km", "double"), Feature("trips", "long")])
    predict = lambda m: (m[:, 0] * 0.1 + offset).astype(np.float32)  # noqa: E731
    return ServedModel(status, schema, predict, inline=True, example=[{"distance_km": 1.0, "trips": 2}], workdir=None)


def _raw_model() -> ServedModel:
    fitted = demo_fitted_spec()
    schema = InputSchema([Feature(name, "double") for name in fitted.names])
    status = ModelStatus(uri=RAW, name="acceptance-model", version="4", state="ready", task="regression")
    raw = RawFeatures(fitted, schema)
    example = raw_records(fitted, 1)
    return ServedModel(status, schema, lambda m: m.sum(axis=1), inline=True, example=example, workdir=None, raw=raw)


PLAN = {
    "version": 1,
    "max_records": 5,
    "routing_key": "customer_id",
    "services": [
        {
            "family": "fare",
            "region": "jakarta",
            "timezone": "Asia/Jakarta",
            "variants": [
                {"name": "champion", "model_uri": V1, "weight": 70},
                {"name": "challenger", "model_uri": V2, "weight": 30},
            ],
        },
        {
            "family": "driver_acceptance",
            "region": "jakarta",
            "variants": [{"name": "champion", "model_uri": RAW, "weight": 100}],
        },
    ],
}


def _run(tmp_path: Path, body: Callable[[httpx.AsyncClient, ServingApp], Awaitable[None]], plan: dict | None = None):
    async def main() -> None:
        app = ServingApp(ServeSettings(plan_path=tmp_path / "plan.json"))
        app.manager = PlanManager(app.settings, app.metrics)
        parsed = parse_plan(plan or PLAN)
        models = {V1: _model(V1, "1", 0.0), V2: _model(V2, "2", 10.0), RAW: _raw_model()}
        app.manager.active = build_active(
            parsed,
            parsed.digest(),
            models,
            old=None,
            shadow_pool=BackgroundWorker("shadows", maxsize=8),
            on_batch=lambda model, rows: None,
            prediction_log=None,
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await body(client, app)
        for batcher in app.manager.active.batchers.values():
            await batcher.close()

    asyncio.run(main())


def _infer(rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    inputs = [
        {"name": "distance_km", "datatype": "FP64", "shape": [len(rows)], "data": [r["distance_km"] for r in rows]},
        {"name": "trips", "datatype": "INT64", "shape": [len(rows)], "data": [r["trips"] for r in rows]},
    ]
    return {"inputs": inputs, **extra}


def test_server_metadata_and_health_are_the_documented_objects(tmp_path):
    async def body(client: httpx.AsyncClient, app: ServingApp) -> None:
        server = (await client.get("/v2")).json()
        check(SERVER_METADATA, server)
        assert server["name"] == "modelyard"
        assert (await client.get("/v2/health/live")).status_code == 200
        assert (await client.get("/v2/health/ready")).status_code == 200
        assert (await client.get("/v2/models/fare-jakarta/ready")).status_code == 200
        assert (await client.get("/v2/models/fare-jakarta/versions/2/ready")).status_code == 200
        app.manager.active.models[V2].status.state = "warming"
        assert (await client.get("/v2/models/fare-jakarta/versions/2/ready")).status_code == 400
        assert (await client.get("/v2/health/ready")).json() == {"ready": False}

    _run(tmp_path, body)


def test_model_metadata_lists_the_raw_fields_with_v2_datatypes(tmp_path):
    async def body(client: httpx.AsyncClient, app: ServingApp) -> None:
        meta = (await client.get("/v2/models/fare-jakarta")).json()
        check(MODEL_METADATA, meta)
        assert meta["versions"] == ["1", "2"]
        assert meta["inputs"] == [
            {"name": "distance_km", "datatype": "FP64", "shape": [-1]},
            {"name": "trips", "datatype": "INT64", "shape": [-1]},
        ]
        assert meta["outputs"] == [{"name": "probability", "datatype": "FP32", "shape": [-1]}]
        raw = (await client.get("/v2/models/driver_acceptance-jakarta/versions/4")).json()
        check(MODEL_METADATA, raw)
        types = {t["name"]: t["datatype"] for t in raw["inputs"]}
        assert types["event_time"] == "BYTES"
        assert types["driver_tenure_days"] == "INT64"
        assert types["area_demand_index"] == "FP64"
        assert raw["outputs"] == [{"name": "predict", "datatype": "FP32", "shape": [-1]}]  # the spec matrix is float32
        # the registered model name is a name of the service too
        assert (await client.get("/v2/models/acceptance-model")).json()["inputs"] == raw["inputs"]

    _run(tmp_path, body)


def test_an_online_feature_is_listed_as_optional_with_its_key_in_v2_and_v1_metadata(tmp_path):
    """ADR 0019: ``area_demand_index`` is looked up by ``pickup_area`` when a record does not carry it."""
    online = {"optional": True, "online": True, "key": "pickup_area", "default": 1.0}

    async def body(client: httpx.AsyncClient, app: ServingApp) -> None:
        meta = (await client.get("/v2/models/driver_acceptance-jakarta")).json()
        check(MODEL_METADATA, meta)
        parameters = {t["name"]: t.get("parameters") for t in meta["inputs"]}
        assert parameters["area_demand_index"] == online
        assert parameters["pickup_area"] is None  # the key itself is required
        assert [name for name, p in parameters.items() if p] == ["area_demand_index"]
        detail = (await client.get("/v1/models/driver_acceptance/jakarta")).json()
        by_name = {t["name"]: t for t in detail["inputs"]}
        assert by_name["area_demand_index"]["parameters"] == online
        assert "parameters" not in by_name["event_time"]
        version_inputs = {t["name"]: t for t in detail["variants"][0]["inputs"]}
        assert version_inputs["area_demand_index"]["parameters"] == online

    _run(tmp_path, body)


def test_infer_routes_through_the_plan_with_a_sticky_key(tmp_path):
    async def body(client: httpx.AsyncClient, app: ServingApp) -> None:
        rows = [{"distance_km": 2.0, "trips": 1}, {"distance_km": 4.0, "trips": 3}]
        seen = set()
        for key in range(40):
            request = _infer(rows, id=f"req-{key}", parameters={"routing_key": f"c{key}"})
            response = await client.post("/v2/models/fare-jakarta/infer", json=request)
            assert response.status_code == 200, response.text
            answer = response.json()
            check(INFERENCE_RESPONSE, answer)
            check_outputs_consistent(answer)
            assert answer["id"] == f"req-{key}"
            assert answer["model_name"] == "fare-jakarta"
            offset = 0.0 if answer["model_version"] == "1" else 10.0
            np.testing.assert_allclose(answer["outputs"][0]["data"], [0.2 + offset, 0.4 + offset], rtol=1e-6)
            assert answer["outputs"][0] | {"data": None} == {
                "name": "probability",
                "datatype": "FP32",
                "shape": [2],
                "data": None,
            }
            again = await client.post("/v2/models/fare-jakarta/infer", json=request)
            assert again.json()["model_version"] == answer["model_version"]  # sticky
            seen.add(answer["model_version"])
        assert seen == {"1", "2"}  # the 70/30 split
        header = await client.post("/v2/models/fare-jakarta/infer", json=_infer(rows), headers={"x-routing-key": "c7"})
        by_param = await client.post(
            "/v2/models/fare-jakarta/infer", json=_infer(rows, parameters={"routing_key": "c7"})
        )
        assert header.json()["model_version"] == by_param.json()["model_version"]
        assert header.json()["parameters"]["routed_by"] == "weight"

    _run(tmp_path, body)


def test_a_version_in_the_path_answers_with_that_version(tmp_path):
    async def body(client: httpx.AsyncClient, app: ServingApp) -> None:
        rows = [{"distance_km": 2.0, "trips": 1}]
        for version in ("1", "2"):
            answer = (await client.post(f"/v2/models/fare-jakarta/versions/{version}/infer", json=_infer(rows))).json()
            assert answer["model_version"] == version
            assert answer["parameters"]["routed_by"] == "version"
        missing = await client.post("/v2/models/fare-jakarta/versions/9/infer", json=_infer(rows))
        assert missing.status_code == 404
        assert missing.json() == {
            "error": "version '9' of model 'fare-jakarta' is not served (serving: 1, 2) (version)"
        }

    _run(tmp_path, body)


def test_a_2d_fp32_tensor_in_feature_order_is_accepted(tmp_path):
    async def body(client: httpx.AsyncClient, app: ServingApp) -> None:
        request = {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [2, 2], "data": [[2.0, 1], [4.0, 3]]}]}
        answer = (await client.post("/v2/models/fare-jakarta/versions/1/infer", json=request)).json()
        np.testing.assert_allclose(answer["outputs"][0]["data"], [0.2, 0.4], rtol=1e-6)

    _run(tmp_path, body)


def test_raw_fields_with_the_event_time_as_bytes_give_the_v1_predictions(tmp_path):
    records = raw_records(demo_fitted_spec(), 3)
    names = list(records[0])
    inputs = [
        {
            "name": name,
            "datatype": "BYTES" if name == "event_time" else "FP64",
            "shape": [3],
            "data": [r[name] for r in records],
        }
        for name in names
    ]

    async def body(client: httpx.AsyncClient, app: ServingApp) -> None:
        v2 = await client.post("/v2/models/driver_acceptance-jakarta/infer", json={"inputs": inputs})
        assert v2.status_code == 200, v2.text
        v1 = await client.post("/v1/predict/driver_acceptance/jakarta", json=records)
        assert v2.json()["outputs"][0]["data"] == v1.json()["predictions"]
        naive = [dict(i) for i in inputs]
        naive[names.index("event_time")] = {**naive[names.index("event_time")], "data": ["2026-03-20T18:30:00"] * 3}
        refused = await client.post("/v2/models/driver_acceptance-jakarta/infer", json={"inputs": naive})
        assert refused.status_code == 400
        check(ERROR_RESPONSE, refused.json())
        assert "event_time" in refused.json()["error"]

    _run(tmp_path, body)


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "message"),
    [
        (
            "POST",
            "/v2/models/nope/infer",
            {"inputs": []},
            404,
            "unknown model 'nope' (served: driver_acceptance-jakarta, fare-jakarta)",
        ),
        (
            "GET",
            "/v2/models/fare-jakarta/infer",
            None,
            405,
            "GET not allowed on /v2/models/fare-jakarta/infer; use POST",
        ),
        ("GET", "/v2/nothing/here", None, 404, "no v2 endpoint /v2/nothing/here"),
        (
            "POST",
            "/v2/models/fare-jakarta/infer",
            {"inputs": [{"name": "trips", "datatype": "INT64", "shape": [1], "data": [1]}]},
            400,
            "distance_km",
        ),
        (
            "POST",
            "/v2/models/fare-jakarta/infer",
            {
                "inputs": [
                    {"name": "distance_km", "datatype": "BYTES", "shape": [1], "data": ["far"]},
                    {"name": "trips", "datatype": "INT64", "shape": [1], "data": [1]},
                ]
            },
            400,
            "input 'distance_km', row 0",
        ),
        (
            "POST",
            "/v2/models/fare-jakarta/infer",
            _infer([{"distance_km": 1.0, "trips": 1}], outputs=[{"name": "output0"}]),
            400,
            "unknown output(s) ['output0']",
        ),
        (
            "POST",
            "/v2/models/fare-jakarta/infer",
            _infer([{"distance_km": 1.0, "trips": 1}] * 6),
            413,
            "at most 5 per request",
        ),
    ],
)
def test_errors_are_v2_error_objects(tmp_path, method, path, payload, status, message):
    async def body(client: httpx.AsyncClient, app: ServingApp) -> None:
        response = await client.request(method, path, json=payload)
        assert response.status_code == status, response.text
        check(ERROR_RESPONSE, response.json())
        assert list(response.json()) == ["error"]
        assert message in response.json()["error"]

    _run(tmp_path, body)


def test_v2_requests_are_counted_like_v1(tmp_path):
    async def body(client: httpx.AsyncClient, app: ServingApp) -> None:
        await client.post("/v2/models/fare-jakarta/versions/1/infer", json=_infer([{"distance_km": 1.0, "trips": 1}]))
        metrics = (await client.get("/metrics")).text
        ok = 'modelyard_requests_total{family="fare",region="jakarta",status="ok",variant="champion",version="1"} 1.0'
        assert ok in metrics

    _run(tmp_path, body)


def test_v1_model_detail_and_openapi_are_served(tmp_path):
    async def body(client: httpx.AsyncClient, app: ServingApp) -> None:
        detail = (await client.get("/v1/models/fare/jakarta")).json()
        assert detail["v2_name"] == "fare-jakarta"
        assert detail["routing_key"] == "customer_id"
        assert [(v["variant"], v["version"], v["weight"]) for v in detail["variants"]] == [
            ("champion", "1", 70),
            ("challenger", "2", 30),
        ]
        assert [i["name"] for i in detail["inputs"]] == ["distance_km", "trips"]
        raw = (await client.get("/v1/models/driver_acceptance/jakarta")).json()
        assert raw["variants"][0]["raw_fields"]["time_column"] == "event_time"
        unknown = await client.get("/v1/models/fare/bandung")
        assert unknown.status_code == 404
        assert "served: driver_acceptance/jakarta, fare/jakarta" in unknown.json()["message"]
        spec = (await client.get("/openapi.json")).json()
        assert "/v2/models/{model_name}/infer" in spec["paths"]

    _run(tmp_path, body)


def test_v1_errors_name_the_path_the_raw_field_and_no_library_text(tmp_path, caplog):
    """Issue 27: what a /v1 client reads when it gets a path, a field or a value wrong, or the model fails."""

    def failing(matrix: np.ndarray) -> np.ndarray:
        raise ValueError("could not convert: dtype('float64') vs np.float64(1.0)")

    async def body(client: httpx.AsyncClient, app: ServingApp) -> None:
        served = "(served: driver_acceptance/jakarta, fare/jakarta)"
        near = await client.post("/v1/predict/fare", json={})
        assert near.status_code == 404
        assert (
            near.json()["message"]
            == f"no endpoint /v1/predict/fare; predictions are POST /v1/predict/{{family}}/{{region}} {served}"
        )
        assert near.json()["path"] == "/v1/predict/fare"
        listing = await client.get("/v1/models")
        assert listing.status_code == 404
        assert listing.json()["message"].endswith(f"model detail is GET /v1/models/{{family}}/{{region}} {served}")
        record = raw_records(demo_fitted_spec(), 1)[0]
        del record["event_time"]
        no_time = await client.post("/v1/predict/driver_acceptance/jakarta", json=record)
        assert (no_time.status_code, no_time.json()["field"]) == (400, "records[0].event_time"), no_time.text
        assert "no field 'event_time'" in no_time.json()["message"]
        app.manager.active.models[V1]._predict_fn = failing
        app.manager.active.models[V2]._predict_fn = failing
        failed = await client.post("/v1/predict/fare/jakarta", json={"distance_km": 1.0, "trips": 2})
        assert failed.status_code == 500
        assert failed.json()["message"].endswith("failed on this input (ValueError); the server log has details")
        assert "dtype" not in failed.text
        assert "np.float64" not in failed.text
        assert any("dtype('float64')" in getattr(r, "error", "") for r in caplog.records)

    _run(tmp_path, body)


def test_a_region_served_by_its_groups_pooled_model_says_so(tmp_path):
    """Issue 25: the plan's ``fallback.<family>/<region>`` metadata shows in /v1/models and /readyz."""
    plan = {**PLAN, "metadata": {"fallback.fare/jakarta": "fare-indonesia v3 (group indonesia)"}}

    async def body(client: httpx.AsyncClient, app: ServingApp) -> None:
        assert (await client.get("/v1/models/fare/jakarta")).json()["fallback"] == "fare/indonesia"
        assert (await client.get("/v1/models/driver_acceptance/jakarta")).json()["fallback"] is None
        assert (await client.get("/readyz")).json()["fallbacks"] == {"fare/jakarta": "fare/indonesia"}

    _run(tmp_path, body, plan)
