"""What a /v1 client reads when it gets something wrong, from a real ``modelyard serve`` over HTTP (issue 27).

Two real models from a real ``mlflow server``: one on its signature's features, one with the
demo's feature spec (raw fields). Every 4xx names the path or the raw field the client sent and
what to do, with no library text (msgspec's, numpy's, pydantic's) in it.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import yaml

from tests.bench.serving import ServerProcess, feature_names, register_raw_xgboost, register_xgboost

NAMES = feature_names(4)
FARE = dict.fromkeys(NAMES, 0.5)
LIBRARY_WORDS = ("Expected `", "Expected '", "dtype(", "np.float64", "Input should", "Field required", "inhomogeneous")


@pytest.fixture(scope="module")
def served(mlflow_server, tmp_path_factory) -> Any:
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.set_registry_uri(mlflow_server.url)
    fare = register_xgboost("errit-fare", n_features=4, n_trees=10, rows=300, onnx=False)
    raw_uri, raw_record, _ = register_raw_xgboost("errit-acceptance", n_trees=10)
    plan = {
        "version": 1,
        "services": [
            {"family": "fare", "region": "jakarta", "variants": [{"name": "c", "model_uri": fare, "weight": 100}]},
            {
                "family": "driver_acceptance",
                "region": "jakarta",
                "variants": [{"name": "c", "model_uri": raw_uri, "weight": 100}],
            },
        ],
    }
    plan_path = tmp_path_factory.mktemp("serving-errors") / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(plan))
    server = ServerProcess.start(plan_path, mlflow_server.url, env={"MODELYARD_SERVE_ADMIN_TOKEN": "t0ken"})
    try:
        server.wait_ready(timeout=180)
        yield server.url, raw_record
    finally:
        server.stop()


def _answer(response: httpx.Response) -> dict[str, Any]:
    text = response.text
    assert not any(word in text for word in LIBRARY_WORDS), text
    return dict(response.json())


def test_unknown_paths_and_methods_name_the_path_and_what_exists(served) -> None:
    url, _ = served
    near = _answer(httpx.post(f"{url}/v1/predict/fare", json=FARE))
    assert near["path"] == "/v1/predict/fare"
    assert near["message"] == (
        "no endpoint /v1/predict/fare; predictions are POST /v1/predict/{family}/{region} "
        "(served: driver_acceptance/jakarta, fare/jakarta)"
    )
    models = httpx.get(f"{url}/v1/models")
    assert models.status_code == 404
    assert "model detail is GET /v1/models/{family}/{region}" in _answer(models)["message"]
    unknown = httpx.get(f"{url}/v1/nothing")
    assert unknown.status_code == 404
    assert "POST /v1/predict/{family}/{region}" in _answer(unknown)["endpoints"]
    for method, path, allow in (
        ("GET", "/v1/predict/fare/jakarta", "POST"),
        ("POST", "/v1/models/fare/jakarta", "GET"),
        ("POST", "/openapi.json", "GET"),
        ("DELETE", "/admin/plan", "GET, PUT"),
        ("GET", "/v2/models/fare-jakarta/infer", "POST"),
    ):
        response = httpx.request(method, f"{url}{path}")
        assert (response.status_code, response.headers.get("allow")) == (405, allow), (method, path, response.text)
        assert f"{method} not allowed on {path}" in response.text


@pytest.mark.parametrize(
    ("change", "status", "field", "message"),
    [
        ({"drop": "event_time"}, 400, "records[0].event_time", "a row has no field 'event_time' (send: "),
        ({"event_time": "[2026-03-20]"}, 422, "records[0].event_time", 'is "[2026-03-20]": not an ISO-8601 time'),
        ({"event_time": "2026-03-20T18:30:00"}, 400, "records[0].event_time", "send 2026-03-20T18:30:00+07:00"),
        (
            {"driver_rating": [1]},
            422,
            "records[0].driver_rating",
            "field 'driver_rating' is a list: send a JSON number",
        ),
    ],
)
def test_a_raw_record_gets_its_own_field_named(served, change, status, field, message) -> None:
    url, raw_record = served
    record = {**raw_record, **{k: v for k, v in change.items() if k != "drop"}}
    record.pop(change.get("drop", ""), None)
    response = httpx.post(f"{url}/v1/predict/driver_acceptance/jakarta", json=record)
    answer = _answer(response)
    assert (response.status_code, answer["field"]) == (status, field), response.text
    assert message in answer["message"]
    assert "is_new_driver" not in answer["message"]  # a derived feature the client never sends
    assert "hour_sin" not in answer["message"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({**FARE, "f01": [1]}, "records[0].f01", "field 'f01' is a list: send a JSON number"),
        ({**FARE, "f01": "[1]"}, "records[0].f01", "field 'f01' is \"[1]\": send a JSON number"),
        ({k: v for k, v in FARE.items() if k != "f02"}, "records[0].f02", "field 'f02' is missing; this model takes"),
        ([FARE, [1]], "records[1]", "record 1 is a list: each record must be a JSON object"),
    ],
)
def test_a_feature_record_gets_the_field_and_what_to_send(served, body, field, message) -> None:
    url, _ = served
    response = httpx.post(f"{url}/v1/predict/fare/jakarta", content=json.dumps(body))
    answer = _answer(response)
    assert (response.status_code, answer["field"]) == (422, field), response.text
    assert message in answer["message"]


def test_an_invalid_plan_is_told_in_our_words(served) -> None:
    url, _ = served
    plan = {"version": 1, "services": [{"family": "f", "region": "r", "variants": [{"name": "c", "weight": "x"}]}]}
    response = httpx.put(f"{url}/admin/plan", json=plan, headers={"Authorization": "Bearer t0ken"})
    assert response.status_code == 422
    message = _answer(response)["message"]
    assert 'services[0].variants[0].weight: must be a valid integer (got "x")' in message
    assert "services[0].variants[0].model_uri: is required" in message
