"""A serving process with many models: concurrent loading, progress on /readyz, a one-model swap loads one.

Thirty registered models on the session's real `mlflow server` (one tiny xgboost model logged
once and registered under thirty names, so the set-up costs one `log_model`), served by a real
`modelyard serve` process. Loads are counted through its `/metrics`
(`modelyard_model_loads_total`), never by patching.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.bench.serving import ServerProcess, feature_names, register_xgboost, write_plan

MODELS = 30
N_FEATURES = 3
RECORD = dict.fromkeys(feature_names(N_FEATURES), 0.5)

pytestmark = pytest.mark.timeout(600)


def _register_many(prefix: str) -> list[str]:
    """``MODELS`` registered models sharing one logged model; their version-1 URIs."""
    import mlflow

    first = register_xgboost(f"{prefix}-0", n_features=N_FEATURES, n_trees=5, rows=200, onnx=False)
    source = mlflow.MlflowClient().get_model_version(f"{prefix}-0", "1").source
    uris = [first]
    for i in range(1, MODELS):
        version = mlflow.register_model(source, f"{prefix}-{i}")
        uris.append(f"models:/{prefix}-{i}/{version.version}")
    return uris


def _plan(uris: list[str]) -> dict[str, Any]:
    services = [
        {
            "family": "many",
            "region": f"r{i:02d}",
            "timezone": "UTC",
            "variants": [{"name": "champion", "model_uri": uri, "weight": 100}],
        }
        for i, uri in enumerate(uris)
    ]
    return {"version": 1, "services": services}


def _metric(server: ServerProcess, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match[1])


def _watch_progress(server: ServerProcess, timeout: float = 180) -> list[dict[str, Any]]:
    """Every /readyz answer until the first 200."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{server.url}/readyz", timeout=5)
        except httpx.HTTPError:
            time.sleep(0.02)
            continue
        seen.append({"status": response.status_code, **response.json()})
        if response.status_code == 200:
            return seen
        time.sleep(0.02)
    raise TimeoutError(f"not ready within {timeout}s; last /readyz {seen[-1:]}\n{server.log_tail()}")


def test_many_models_load_concurrently_report_progress_and_a_swap_loads_one(mlflow_uri: str, tmp_path: Path):
    import mlflow

    uris = _register_many("many")
    plan_path = tmp_path / "plan.json"
    write_plan(plan_path, _plan(uris))
    env = {"MODELYARD_SERVE_LOAD_THREADS": "4", "MODELYARD_SERVE_MODEL_CACHE": str(tmp_path / "cache")}
    with ServerProcess.start(plan_path, mlflow_uri, env=env) as server:
        seen = _watch_progress(server)
        loading = [s for s in seen if s["plan"]["loading"] is not None]
        assert loading, f"/readyz never showed the load in progress: {seen}"
        for answer in loading:
            counts = answer["plan"]["loading"]
            assert answer["status"] == 503
            assert counts["total"] == MODELS
            assert 0 <= counts["done"] <= MODELS
            assert answer["progress"] == f"loading {counts['done']}/{MODELS}"
            assert counts["in_flight"] <= 4
        ready = seen[-1]
        assert ready["progress"] == f"ready {MODELS}/{MODELS}"
        assert {m["state"] for m in ready["models"].values()} == {"ready"}
        assert ready["plan"]["last_load"]["loaded"] == MODELS
        assert ready["plan"]["last_load"]["rss_per_loaded_model_bytes"] > 0
        assert _metric(server, "modelyard_model_loads_total") == MODELS
        for i in range(MODELS):
            answer = httpx.post(f"{server.url}/v1/predict/many/r{i:02d}", json=RECORD, timeout=10)
            assert answer.status_code == 200, answer.text

        # One model of thirty moves to a new version: only that one is downloaded, loaded and warmed.
        source = mlflow.MlflowClient().get_model_version("many-7", "1").source
        version = mlflow.register_model(source, "many-7").version
        changed = [*uris[:7], f"models:/many-7/{version}", *uris[8:]]
        digest = write_plan(plan_path, _plan(changed))
        after = server.wait_ready(timeout=120, digest=digest)
        assert _metric(server, "modelyard_model_loads_total") == MODELS + 1
        assert _metric(server, "modelyard_models_reused_total") == MODELS - 1
        assert after["plan"]["last_load"]["loaded"] == 1
        assert after["plan"]["last_load"]["reused"] == MODELS - 1
        answer = httpx.post(f"{server.url}/v1/predict/many/r07", json=RECORD, timeout=10).json()
        assert str(answer["version"]) == str(version)
        log = server.log_path.read_text()
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    warmed = [e["model"]["uri"] for e in entries if e.get("event") == "model_ready"]
    assert len(warmed) == MODELS + 1, "each model version is loaded and warmed exactly once"
    assert sorted(set(warmed)) == sorted(warmed)
