"""In-process cost of one request through the ASGI app: ``python -m tests.bench.request_path``. Not a test.

The serving bench (``tests/bench/serving.py``) measures the server over HTTP with ``wrk``; this
one takes HTTP away: it registers the same 200-tree xgboost model in a temporary sqlite registry,
starts ``ServingApp`` in this process on that plan, and times requests handed straight to the
ASGI callable (``GET /healthz``, one-row ``/v1/predict``, ``/invocations`` and v2 ``infer``, 1,000-row
``/v1/predict``), best of several rounds, in process CPU microseconds per request (so that
the figures hold on a busy machine). ``--profile PATH`` writes a cProfile of the one-row
``/v1/predict`` loop (``--profiled v2``: the v2 ``infer`` one; read it with ``python -m pstats``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.bench.serving import feature_names, register_xgboost, single_plan

ROUNDS = 5


def scope_of(method: str, path: str, body: bytes) -> dict[str, Any]:
    """An ASGI HTTP scope as uvicorn builds it."""
    headers = [(b"host", b"bench"), (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    return {"type": "http", "method": method, "path": path, "headers": headers, "query_string": b""}


async def call(app: Any, method: str, path: str, body: bytes) -> tuple[int, bytes]:
    """One request through the app; returns its status and body."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope_of(method, path, body), receive, send)
    return sent[0]["status"], sent[1]["body"]


async def per_request_us(app: Any, method: str, path: str, body: bytes, calls: int) -> float:
    """Best-of-``ROUNDS`` mean process CPU microseconds per request (a busy machine's waits not counted)."""
    status, answer = await call(app, method, path, body)
    if status != 200:
        raise RuntimeError(f"{method} {path} answered {status}: {answer[:300]!r}")
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(calls):
            await call(app, method, path, body)
        best = min(best, (time.process_time() - started) / calls)
    return best * 1e6


def bodies(n_features: int, rows: int) -> dict[str, bytes]:
    import numpy as np

    names = feature_names(n_features)
    matrix = np.random.default_rng(7).normal(size=(rows, n_features)).round(4).tolist()
    records = [dict(zip(names, row, strict=True)) for row in matrix]
    return {
        "one": json.dumps(records[0]).encode(),
        "many": json.dumps({"records": records}).encode(),
        "mlflow_one": json.dumps({"dataframe_split": {"columns": names, "data": matrix[:1]}}).encode(),
        "mlflow_many": json.dumps({"dataframe_split": {"columns": names, "data": matrix}}).encode(),
        # The Open Inference Protocol's form: one FP64 tensor of shape [1] per field.
        "v2_one": json.dumps(
            {"inputs": [{"name": n, "datatype": "FP64", "shape": [1], "data": [v]} for n, v in records[0].items()]}
        ).encode(),
    }


PROFILED = {"v1": ("/v1/predict/bench/local", "one"), "v2": ("/v2/models/bench-local/infer", "v2_one")}


async def measure(
    app: Any, payloads: dict[str, bytes], calls: int, profile: Path | None, profiled: str = "v1"
) -> dict[str, float]:
    """Start the app, wait for its plan, time every scenario."""
    from modelyard.deploy.serving.app import ServingApp

    assert isinstance(app, ServingApp)
    app.startup()
    try:
        if not await app._manager().settled(120):
            raise RuntimeError(f"plan not active: {app._manager().readiness()}")
        one = "/v1/predict/bench/local"
        results = {
            "healthz_us": await per_request_us(app, "GET", "/healthz", b"", calls),
            "predict_1_us": await per_request_us(app, "POST", one, payloads["one"], calls),
            "invocations_1_us": await per_request_us(
                app, "POST", "/invocations/bench/local", payloads["mlflow_one"], calls
            ),
            "v2_infer_1_us": await per_request_us(
                app, "POST", "/v2/models/bench-local/infer", payloads["v2_one"], calls
            ),
            "predict_1000_us": await per_request_us(app, "POST", one, payloads["many"], max(1, calls // 100)),
            "invocations_1000_us": await per_request_us(
                app, "POST", "/invocations/bench/local", payloads["mlflow_many"], max(1, calls // 100)
            ),
        }
        detail = next(iter(app._manager().active.models.values())).status.engine_detail or {}
        results["onnx_max_rows"] = float(detail.get("onnx_max_rows") or 0)  # 0: ONNX at every size measured
        if profile is not None:
            path, body = PROFILED[profiled]
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(calls):
                await call(app, "POST", path, payloads[body])
            profiler.disable()
            profiler.dump_stats(str(profile))
        return results
    finally:
        await app.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    import mlflow

    from modelyard.deploy.serving.app import ServingApp
    from modelyard.deploy.serving.settings import ServeSettings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="one-row requests per round")
    parser.add_argument("--profile", type=Path, default=None, help="write a cProfile of the one-row loop here")
    parser.add_argument("--profiled", choices=sorted(PROFILED), default="v1", help="the one-row loop to profile")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="modelyard-request-path-") as tmp:
        workdir = Path(tmp)
        # A local sqlite registry: no server process, the model loads exactly as from a server.
        tracking = f"sqlite:///{workdir / 'mlflow.db'}"
        os.environ["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_REGISTRY_URI"] = tracking
        mlflow.set_tracking_uri(tracking)
        artifacts = (workdir / "artifacts").as_uri()
        mlflow.set_experiment(experiment_id=mlflow.create_experiment("request-path", artifact_location=artifacts))
        uri = register_xgboost("bench-xgb", n_features=20, n_trees=200, seed=0)
        plan_path = workdir / "plan.json"
        plan_path.write_text(json.dumps(single_plan(uri)))
        app = ServingApp(ServeSettings(plan_path=plan_path, model_cache=workdir, log_dir=workdir / "logs"))
        results = asyncio.run(measure(app, bodies(20, 1000), options.calls, options.profile, options.profiled))
    results["rows_per_s_1000"] = 1000 / (results["predict_1000_us"] / 1e6)
    print(json.dumps({k: round(v, 1) for k, v in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
