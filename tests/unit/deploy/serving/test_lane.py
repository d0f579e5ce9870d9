"""The lane (``ServingApp.answer_now``) answers as the ASGI path does, or hands the request back.

Each request goes through both on the same app and plan (in-memory models: ``test_v2_routes``'s
plan): the answer in the transport's callback must have the status, body and counts the ASGI
path gives, and a request that has to wait (online features to read, a queued batch, a large
body) must be handed back (None) before anything of it is counted.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from modelyard.deploy.serving.app import ServingApp
from modelyard.deploy.serving.predict import INLINE_PARSE_BYTES
from tests.unit.deploy.serving.test_v2_routes import V1, _infer, _run

ROW = {"distance_km": 3.0, "trips": 4, "customer_id": "c-17"}
HEADERS = {"x-request-id": "req-1"}


def _scope(path: str, headers: dict[str, str]) -> dict[str, Any]:
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    return {"type": "http", "method": "POST", "path": path, "headers": raw, "query_string": b""}


def _calibrated_cheap(app: ServingApp) -> None:
    """Every model as one calibrated at load to answer a row in microseconds (an ONNX copy): predicted at once."""
    for batcher in app.manager.active.batchers.values():
        batcher.idle_inline = True


def _ok_count(app: ServingApp, status: str = "ok") -> float:
    """Requests counted with ``status``, over every service and variant."""
    return sum(
        sample.value
        for metric in app.metrics.requests.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels["status"] == status
    )


CASES: list[tuple[str, Any, dict[str, str]]] = [
    ("/v1/predict/fare/jakarta", ROW, HEADERS),
    ("/v1/predict/fare/jakarta", {"records": [ROW, {**ROW, "customer_id": "c-2"}]}, {**HEADERS, "x-routing-key": "k"}),
    ("/invocations/fare/jakarta", {"dataframe_records": [ROW]}, HEADERS),
    ("/v2/models/fare-jakarta/infer", _infer([ROW], id="r-9", parameters={"routing_key": "c-17"}), {}),
    ("/v1/predict/fare/jakarta", {"distance_km": 3.0, "customer_id": "c-1"}, HEADERS),  # a missing field: 422
    ("/v1/predict/fare/bandung", ROW, HEADERS),  # an unknown region: 404 listing the served ones
    ("/v1/predict/fare/jakarta", b"{not json", HEADERS),
    ("/v2/models/fare-jakarta/infer", {"inputs": [{"name": "distance_km", "datatype": "FP64"}]}, {}),
    ("/v2/models/nobody/infer", _infer([ROW]), {}),
]
STATUSES = [200, 200, 200, 200, 422, 404, 400, 400, 404]


def test_the_lane_answers_each_request_as_the_asgi_path_does_and_counts_it_alike(tmp_path):
    async def body(client: httpx.AsyncClient, app: ServingApp) -> None:
        _calibrated_cheap(app)
        statuses = []
        for path, payload, headers in CASES:
            content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            before = (_ok_count(app), _ok_count(app, "bad_input"))
            asgi = await client.post(path, content=content, headers=headers)
            after_asgi = (_ok_count(app), _ok_count(app, "bad_input"))
            lane = app.answer_now(_scope(path, headers), content)
            after_lane = (_ok_count(app), _ok_count(app, "bad_input"))
            assert lane is not None, path
            assert (lane.status, lane.content_type) == (asgi.status_code, b"application/json"), (path, lane.body)
            assert json.loads(lane.body) == asgi.json(), path
            assert [a - b for a, b in zip(after_lane, after_asgi, strict=True)] == [
                a - b for a, b in zip(after_asgi, before, strict=True)
            ], path
            statuses.append(lane.status)
        assert statuses == STATUSES

    _run(tmp_path, body)


def test_requests_that_must_wait_are_handed_back_uncounted(tmp_path):
    async def body(client: httpx.AsyncClient, app: ServingApp) -> None:
        _calibrated_cheap(app)
        counted = _ok_count(app)
        # The raw-field service's family reads area_demand_index from the online store.
        raw = {"records": [{"pickup_area": 2.0, "event_time": "2026-05-13T00:50:59+07:00"}]}
        assert app.answer_now(_scope("/v1/predict/driver_acceptance/jakarta", {}), json.dumps(raw).encode()) is None
        large = json.dumps({"records": [ROW] * 4000}).encode()
        assert len(large) > INLINE_PARSE_BYTES
        assert app.answer_now(_scope("/v1/predict/fare/jakarta", {}), large) is None
        assert app.answer_now(_scope("/v1/models/fare/jakarta", {}), b"") is None  # not a prediction path
        batcher = app.manager.active.batchers[V1]
        batcher.idle_inline = False  # a model whose requests are batched
        assert app.answer_now(_scope("/v1/predict/fare/jakarta", {}), json.dumps(ROW).encode()) is None
        assert app.answer_now(_scope("/v2/models/fare-jakarta/infer", {}), json.dumps(_infer([ROW])).encode()) is None
        assert _ok_count(app) == counted
        batcher.idle_inline = True
        assert app.answer_now(_scope("/v1/predict/fare/jakarta", {}), json.dumps(ROW).encode()) is not None
        assert _ok_count(app) == counted + 1

    _run(tmp_path, body)


def test_the_lane_refuses_past_the_concurrency_limit(tmp_path):
    async def body(client: httpx.AsyncClient, app: ServingApp) -> None:
        _calibrated_cheap(app)
        app.in_flight.count = app.in_flight.limit
        answer = app.answer_now(_scope("/v1/predict/fare/jakarta", {}), json.dumps(ROW).encode())
        assert answer is not None
        assert answer.status == 503
        assert b"requests in flight" in answer.body
        app.in_flight.count = 0

    _run(tmp_path, body)
