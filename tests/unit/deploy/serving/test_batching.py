"""Micro-batching: concurrent requests share one model call, bounded in rows."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from modelyard.deploy.serving.batching import Batcher
from modelyard.deploy.serving.errors import InferenceFailed
from modelyard.deploy.serving.runtime import ModelStatus, ServedModel
from modelyard.deploy.serving.schema import Feature, InputSchema


class Recorder:
    def __init__(self, fail: bool = False, delay: float = 0.0):
        self.calls: list[int] = []
        self.fail = fail
        self.delay = delay

    def __call__(self, matrix):
        self.calls.append(len(matrix))
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise ValueError("boom")
        return matrix[:, 0] * 2


def _model(recorder, inline=True):
    status = ModelStatus(uri="models:/m/1", name="m", version="1", state="ready")
    schema = InputSchema([Feature("x", "double")])
    return ServedModel(status, schema, recorder, inline=inline, example=[{"x": 1.0}], workdir=None)


def _rows(*values):
    return np.array([[v] for v in values], dtype=np.float32)


async def _submit_all(batcher, matrices):
    return await asyncio.gather(*(batcher.submit(m) for m in matrices))


@pytest.mark.parametrize("inline", [True, False])
def test_concurrent_requests_share_one_call_and_get_their_own_rows(inline):
    recorder = Recorder()

    async def scenario():
        batcher = Batcher(_model(recorder, inline), max_batch_size=64, max_wait_ms=2)
        batcher.start()
        results = await _submit_all(batcher, [_rows(i, i + 0.5) for i in range(10)])
        await batcher.close()
        return results

    results = asyncio.run(scenario())
    assert [r.tolist() for r in results] == [[2 * i, 2 * i + 1] for i in range(10)]
    assert recorder.calls == [20]


def test_batches_never_exceed_max_rows_and_never_split_a_request():
    recorder = Recorder()

    async def scenario():
        batcher = Batcher(_model(recorder), max_batch_size=5, max_wait_ms=2)
        batcher.start()
        await _submit_all(batcher, [_rows(1, 2), _rows(3, 4), _rows(5, 6), _rows(*range(9))])
        await batcher.close()

    asyncio.run(scenario())
    assert sum(recorder.calls) == 15
    assert all(c <= 5 for c in recorder.calls if c != 9)
    assert 9 in recorder.calls


def test_a_lone_request_does_not_wait_for_max_wait():
    async def scenario():
        batcher = Batcher(_model(Recorder()), max_batch_size=64, max_wait_ms=50)
        batcher.start()
        await batcher.submit(_rows(1))  # first call: loop warm-up
        started = time.perf_counter()
        await batcher.submit(_rows(1))
        elapsed = time.perf_counter() - started
        await batcher.close()
        return elapsed

    assert asyncio.run(scenario()) < 0.02


def test_a_failing_model_fails_every_request_of_the_batch_with_inference_failed():
    async def scenario():
        batcher = Batcher(_model(Recorder(fail=True)), max_batch_size=64, max_wait_ms=2)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(_rows(i)) for i in range(3)), return_exceptions=True)
        await batcher.close()
        return results

    results = asyncio.run(scenario())
    assert all(isinstance(r, InferenceFailed) for r in results)
    # The library's text goes to the log (detail), never to the client (message).
    assert all("boom" in (r.detail or "") and "boom" not in r.message for r in results)


def test_a_closed_batcher_still_answers_late_requests():
    recorder = Recorder()

    async def scenario():
        batcher = Batcher(_model(recorder), max_batch_size=64, max_wait_ms=1)
        batcher.start()
        await batcher.close()
        return await batcher.submit(_rows(4))

    assert asyncio.run(scenario()).tolist() == [8]


def _calibrated(recorder, one_row_us, engine="onnx"):
    model = _model(recorder)
    model.status.engine = engine
    model.status.engine_detail = {"calibration_us": {engine: {"1": one_row_us, "8": one_row_us * 2}}}
    return model


def test_a_cheap_model_answers_an_idle_request_at_once_without_the_queue():
    recorder, seen = Recorder(), []

    async def scenario():
        batcher = Batcher(
            _calibrated(recorder, 15.0), max_batch_size=64, max_wait_ms=2, on_batch=lambda m, n: seen.append(n)
        )
        batcher.start()
        coroutine = batcher.submit(_rows(3))
        try:
            coroutine.send(None)  # runs to completion without suspending: no queue, no collector
        except StopIteration as done:
            result = done.value
        else:
            raise AssertionError("the idle request waited for the collector")
        await batcher.close()
        return result

    assert asyncio.run(scenario()).tolist() == [6.0]
    assert recorder.calls == [1]
    assert seen == [1]


def test_a_model_whose_call_is_slow_keeps_batching_concurrent_requests():
    recorder = Recorder()

    async def scenario():
        batcher = Batcher(_calibrated(recorder, 300.0, engine="native"), max_batch_size=64, max_wait_ms=2)
        batcher.start()
        assert not batcher.idle_inline
        await _submit_all(batcher, [_rows(i) for i in range(6)])
        await batcher.close()

    asyncio.run(scenario())
    assert recorder.calls == [6]


def test_an_idle_inline_failure_is_an_inference_failure():
    async def scenario():
        batcher = Batcher(_calibrated(Recorder(fail=True), 15.0), max_batch_size=64, max_wait_ms=2)
        batcher.start()
        try:
            await batcher.submit(_rows(1))
        finally:
            await batcher.close()

    with pytest.raises(InferenceFailed, match="the server log has details") as raised:
        asyncio.run(scenario())
    assert "boom" in (raised.value.detail or "")
