"""Serving benchmark: ``python -m deploy.bench`` (``make bench``). Not a test.

One xgboost model (200 trees, 20 features) is registered on a temporary real MLflow
server, then served one worker each by ``modelyard serve`` and by ``mlflow models serve
--env-manager local``, both loaded by the same generator (``wrk``, installed from
Debian's packages if missing). Reported: single-row req/s and p50/p99 at concurrency 8
and the ratio to mlflow's, rows/s with 1,000-row requests, the time from writing a new
plan to serving it, and failed requests across 10 consecutive swaps under load.
Results go to ``docs/benchmarks.md`` and ``docs/benchmarks.json``.

The helpers (``register_xgboost``, ``ServerProcess``) are also used by the integration
tests, so the benchmark and the tests drive the very same server process.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from training.mlflow_server import free_port

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"ratio": 25.0, "p99_ms": 5.0, "rows_per_s": 150_000.0, "failed_across_swaps": 0}


# ---------------------------------------------------------------------------- models


def feature_names(n_features: int) -> list[str]:
    return [f"f{i:02d}" for i in range(n_features)]


def register_xgboost(
    name: str,
    *,
    n_features: int = 20,
    n_trees: int = 200,
    seed: int = 0,
    task: str = "classification",
    rows: int = 2000,
) -> str:
    """Train a small xgboost model on synthetic data and register it (uses the current tracking URI).

    Returns:
        The registered version's URI, ``models:/<name>/<version>``.
    """
    import mlflow
    import numpy as np
    import pandas as pd
    import xgboost as xgb
    from mlflow.models import infer_signature

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, n_features)), columns=feature_names(n_features))
    signal_ = frame.iloc[:, 0] + 0.5 * frame.iloc[:, 1] - 0.25 * frame.iloc[:, 2]
    common = {"n_estimators": n_trees, "max_depth": 6, "n_jobs": 1, "random_state": seed}
    if task == "classification":
        model: Any = xgb.XGBClassifier(**common).fit(frame, (signal_ + rng.normal(0, 0.5, rows) > 0).astype(int))
        output = model.predict_proba(frame.head(5))[:, 1]
    else:
        model = xgb.XGBRegressor(**common).fit(frame, 10 + 3 * signal_)
        output = model.predict(frame.head(5))
    signature = infer_signature(frame.head(5), output)
    with mlflow.start_run(run_name=f"bench-{name}"):
        info = mlflow.xgboost.log_model(
            model,
            name="model",
            registered_model_name=name,
            signature=signature,
            input_example=frame.head(3),
        )
    return f"models:/{name}/{info.registered_model_version}"


def single_plan(model_uri: str, *, family: str = "bench", region: str = "local", **batching: Any) -> dict[str, Any]:
    """A one-service, one-variant plan as a dict."""
    plan: dict[str, Any] = {
        "version": 1,
        "services": [
            {
                "family": family,
                "region": region,
                "timezone": "UTC",
                "variants": [{"name": "champion", "model_uri": model_uri, "weight": 100}],
            }
        ],
    }
    if batching:
        plan["batching"] = batching
    return plan


# ---------------------------------------------------------------------------- server process


@dataclasses.dataclass
class ServerProcess:
    """A ``modelyard serve`` process on a free port."""

    url: str
    plan_path: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(
        cls,
        plan_path: Path,
        tracking_uri: str,
        *,
        workers: int = 1,
        poll_seconds: float = 0.2,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> ServerProcess:
        """Start the server (does not wait: call ``wait_ready``)."""
        port = free_port()
        log_path = log_path or plan_path.with_suffix(".server.log")
        command = [
            str(Path(sys.executable).with_name("modelyard")), "serve", "--plan", str(plan_path),
            "--port", str(port), "--workers", str(workers), "--poll-seconds", str(poll_seconds),
        ]  # fmt: skip
        full_env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "OMP_NUM_THREADS": "1", **(env or {})}
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
            )
        return cls(f"http://127.0.0.1:{port}", plan_path, process, log_path)

    def wait_ready(self, timeout: float = 120, digest: str | None = None) -> dict[str, Any]:
        """Wait until ``/readyz`` is 200 (and, if given, ``digest`` is the active plan)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                response = httpx.get(f"{self.url}/readyz", timeout=5)
                last = response.json()
                if response.status_code == 200 and (digest is None or last["plan"]["active_digest"] == digest):
                    return dict(last)
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise TimeoutError(f"server not ready within {timeout}s; last /readyz: {last}\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 15) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
