"""Per-model micro-batching of concurrent requests on the event loop.

A request's validated matrix goes into its model's ``Batcher`` queue and awaits a
future. One collector task per model takes the first queued request, then keeps
collecting while more requests keep arriving, i.e. while the event loop still has
requests in flight that reach the queue, and stops at whichever comes first: the batch
holds ``max_batch_size`` rows, ``max_wait_ms`` passed since the first one, or one loop
pass brought nothing new. So a lone request waits only a few microseconds, while a
burst is served by one model call. A request is never split (a 1,000-row request is one
batch of its own). Fast-path models (xgboost, scikit-learn) run on the loop thread: at
sub-millisecond cost a thread hand-off would cost more than it saves; the generic pyfunc
path runs in a dedicated thread.

A model whose one-row call was measured at load (``engines.calibrate``) to cost at most
``IDLE_INLINE_MAX_US`` (ONNX answers a row in ~15 µs) skips the queue when nothing is queued:
the request is predicted at once, in its own handler. Collecting companions for it (a future,
a wake-up of the collector task, idle loop passes) would cost more than the calls it saves;
slower models (native xgboost, ~300 µs a call) keep batching.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from modelyard.deploy.serving.errors import InferenceFailed
from modelyard.deploy.serving.runtime import ServedModel

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("modelyard.serving.batching")

BatchObserver = Callable[[ServedModel, int], None]
IDLE_INLINE_MAX_US = 100.0


def runs_idle_inline(model: ServedModel) -> bool:
    """Whether a request that finds the queue empty is predicted at once (cheap, loop-thread models)."""
    if not model.inline:
        return False
    detail = model.status.engine_detail or {}
    one_row = detail.get("calibration_us", {}).get(model.status.engine, {}).get("1")
    return isinstance(one_row, int | float) and one_row <= IDLE_INLINE_MAX_US


class _Pending:
    __slots__ = ("future", "matrix")

    def __init__(self, matrix: np.ndarray, future: asyncio.Future[np.ndarray]) -> None:
        self.matrix = matrix
        self.future = future


class Batcher:
    """Collects concurrent requests for one model into bounded batches."""

    def __init__(
        self,
        model: ServedModel,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        on_batch: BatchObserver | None = None,
    ) -> None:
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self._on_batch = on_batch
        self._queue: collections.deque[_Pending] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.idle_inline = runs_idle_inline(model)

    def start(self) -> None:
        """Start the collector task on the running loop."""
        self._wake = asyncio.Event()
        if not self.model.inline:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"infer-{self.model.name}")
        self._task = asyncio.get_running_loop().create_task(self._collect(), name=f"batcher:{self.model.uri}")

    async def submit(self, matrix: np.ndarray) -> np.ndarray:
        """Queue a validated matrix and return its predictions (raises ``InferenceFailed``)."""
        if self._task is None or self._task.done():
            # A request that picked up a retired plan still gets its answer.
            return await self._predict(matrix)
        if self.answers_now():
            return self.predict_now(matrix)
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(matrix, future))
        assert self._wake is not None
        self._wake.set()
        return await future

    def answers_now(self) -> bool:
        """Whether a request is predicted at once, in its handler: a cheap loop-thread model, nothing queued."""
        return self.idle_inline and not self._queue and self._task is not None and not self._task.done()

    def predict_now(self, matrix: np.ndarray) -> np.ndarray:
        """Predict ``matrix`` in the caller, counted as a batch of its own (when :meth:`answers_now`)."""
        output = self.model.predict(matrix)
        if self._on_batch is not None:
            self._on_batch(self.model, len(matrix))
        return output

    async def close(self) -> None:
        """Finish every queued request, then stop the collector."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    async def _collect(self) -> None:
        assert self._wake is not None
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._gather()
            await self._run(self._take())

    async def _gather(self) -> None:
        """Wait (bounded) while companions keep arriving."""
        if self.max_wait <= 0:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        seen = len(self._queue)
        idle_passes = 0
        while self._rows() < self.max_batch_size and loop.time() < deadline:
            await asyncio.sleep(0)
            if len(self._queue) == seen:
                idle_passes += 1
                # A request needs a few loop passes from socket to queue; two idle passes = no more coming.
                if idle_passes >= 3:
                    return
            else:
                seen, idle_passes = len(self._queue), 0

    def _rows(self) -> int:
        return sum(len(p.matrix) for p in self._queue)

    def _take(self) -> list[_Pending]:
        batch = [self._queue.popleft()]
        rows = len(batch[0].matrix)
        while self._queue and rows + len(self._queue[0].matrix) <= self.max_batch_size:
            item = self._queue.popleft()
            rows += len(item.matrix)
            batch.append(item)
        return batch

    async def _run(self, batch: list[_Pending]) -> None:
        import numpy as np

        matrix = batch[0].matrix if len(batch) == 1 else np.concatenate([p.matrix for p in batch])
        try:
            output = await self._predict(matrix)
        except Exception as exc:
            if not isinstance(exc, InferenceFailed):
                exc = InferenceFailed(
                    f"batch of {len(matrix)} rows on {self.model.uri} failed ({type(exc).__name__}); "
                    "the server log has details",
                    detail=repr(exc),
                )
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        if self._on_batch is not None:
            self._on_batch(self.model, len(matrix))
        start = 0
        for pending in batch:
            end = start + len(pending.matrix)
            if not pending.future.done():
                pending.future.set_result(output[start:end])
            start = end

    async def _predict(self, matrix: np.ndarray) -> np.ndarray:
        if self.model.inline:
            return self.model.predict(matrix)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.model.predict, matrix)
