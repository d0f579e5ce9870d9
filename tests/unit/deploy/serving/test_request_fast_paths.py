"""The one-row request's shortcuts answer exactly what the general paths answer (issue 27)."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge

from modelyard.deploy.serving import engines, sampling
from modelyard.deploy.serving.batching import Batcher
from modelyard.deploy.serving.errors import BadInput
from modelyard.deploy.serving.plan import Service
from modelyard.deploy.serving.router import Route, ServiceRouter
from modelyard.deploy.serving.runtime import ModelStatus, ServedModel
from modelyard.deploy.serving.sampling import PredictionLogWriter, Sample, SamplingSettings
from modelyard.deploy.serving.schema import Feature, InputSchema
from modelyard.training import onnx_export

pytestmark = pytest.mark.unit

SCHEMA = InputSchema([Feature("a", "double"), Feature("b", "double", required=False)])


# -- validation: one dot product stands in for the per-value check until it is not finite


def test_values_whose_squares_overflow_are_still_served_exactly():
    matrix = SCHEMA.to_matrix([{"a": 3e38, "b": -1e20}])
    assert matrix.tolist() == [[np.float32(3e38), np.float32(-1e20)]]


def test_a_null_is_missing_and_an_out_of_range_value_names_its_field():
    assert np.isnan(SCHEMA.to_matrix([{"a": 1.0, "b": None}])[0, 1])
    with pytest.raises(BadInput, match="field 'b' is 1e\\+39: out of the model's float range") as raised:
        SCHEMA.to_matrix([{"a": 1.0, "b": None}, {"a": 2.0, "b": 1e39}])
    assert raised.value.field == "records[1].b"


# -- routing: the routes are built once, with the same variant and reason


def test_routes_are_the_same_for_a_key_and_name_their_reason():
    service = Service.model_validate(
        {
            "family": "driver_acceptance",
            "region": "bangkok",
            "timezone": "Asia/Bangkok",
            "variants": [
                {"name": "a", "model_uri": "models:/m/1", "weight": 50},
                {"name": "b", "model_uri": "models:/m/2", "weight": 50},
            ],
        }
    )
    router = ServiceRouter(service)
    keyed = {router.route(f"c{i}") for i in range(200)}
    assert keyed == {Route("a", "weight"), Route("b", "weight")}
    assert router.route("c7") == router.route("c7")
    assert {router.route(None) for _ in range(200)} == {Route("a", "random"), Route("b", "random")}


# -- batching: an idle request on a cheap model is answered in its handler


def _cheap_model(calls: list[int]) -> ServedModel:
    def predict(matrix: np.ndarray) -> np.ndarray:
        calls.append(len(matrix))
        return matrix[:, 0] * 2

    status = ModelStatus(uri="models:/m/1", name="m", version="1", state="ready", engine="onnx")
    status.engine_detail = {"calibration_us": {"onnx": {"1": 15.0}}}
    schema = InputSchema([Feature("x", "double")])
    return ServedModel(status, schema, predict, inline=True, example=[{"x": 1.0}], workdir=None)


def test_an_idle_cheap_model_answers_now_and_counts_the_call_as_a_batch():
    calls: list[int] = []
    seen: list[int] = []

    async def scenario() -> tuple[bool, list[float], bool]:
        batcher = Batcher(_cheap_model(calls), max_batch_size=64, max_wait_ms=2, on_batch=lambda m, n: seen.append(n))
        before_start = batcher.answers_now()
        batcher.start()
        assert batcher.answers_now()
        output = batcher.predict_now(np.array([[1.5], [2.0]], dtype=np.float32)).tolist()
        await batcher.close()
        return before_start, output, batcher.answers_now()

    before_start, output, after_close = asyncio.run(scenario())
    assert (before_start, output, after_close) == (False, [3.0, 4.0], False)  # no collector: submit() decides
    assert calls == [2]
    assert seen == [2]


# -- ONNX: the compiled run answers what the public one does


def test_the_compiled_onnx_run_answers_like_the_public_one(tmp_path: Path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    model = Ridge().fit(x, x[:, 0] - 2 * x[:, 1])
    holdout = pd.DataFrame(x, columns=["a", "b", "c"])
    onnx_export.write_serving_extras(model, "sklearn", holdout, tmp_path / engines.EXTRA_FILES_DIR)
    session = engines.load_onnx(tmp_path)
    like = model.predict(x[:2])
    predict = engines.onnx_predictor(session, like)
    public = session.run(None, {engines.INPUT_NAME: x})[0].reshape(len(x))
    np.testing.assert_array_equal(predict(x), public.astype(like.dtype))


def test_a_session_without_the_compiled_binding_uses_its_public_run():
    class StandIn:
        def run(self, names, feed, options=None):
            return [feed[engines.INPUT_NAME][:, 0]]

        def get_outputs(self):
            return [type("Output", (), {"name": "variable"})()]

    like = np.zeros(1, dtype=np.float64)
    predict = engines.onnx_predictor(StandIn(), like)
    assert predict(np.array([[1.0, 9.0], [2.0, 9.0]], dtype=np.float32)).tolist() == [1.0, 2.0]


# -- the prediction log: the writer rests between drains, and flush and close end the rest


def _sample(request_id: str) -> Sample:
    labels = ("driver_acceptance", "jakarta", "main", "3")
    features = np.array([[1.5]], dtype=np.float32)
    return Sample("prediction", request_id, labels, "plan1", [{"x": 1}], features, np.array([0.25]), 1.8e9)


def _ids(folder: Path) -> list[str]:
    out = []
    for path in sorted(folder.rglob("*.jsonl.gz")):
        with gzip.open(path, "rt") as handle:
            out.extend(json.loads(line).get("request_id") for line in handle)
    return [i for i in out if i]


def test_samples_offered_while_the_writer_rests_are_all_written_and_flush_does_not_wait_the_rest(tmp_path, monkeypatch):
    monkeypatch.setattr(sampling, "_DRAIN_PAUSE_SECONDS", 30.0)  # a rest no test could sit out
    writer = PredictionLogWriter(tmp_path, SamplingSettings(1.0))
    try:
        assert writer.offer(_sample("first"))
        deadline = time.monotonic() + 10
        while writer._queue.qsize() and time.monotonic() < deadline:  # the writer took it and now rests
            time.sleep(0.01)
        for i in range(50):
            assert writer.offer(_sample(f"r{i}"))
        started = time.monotonic()
        writer.flush()
        assert time.monotonic() - started < 10
    finally:
        writer.close(wait=10)
    assert _ids(tmp_path) == ["first", *(f"r{i}" for i in range(50))]
    assert not writer._thread.is_alive()
