"""Serving benchmark: ``python tests/bench/serving.py`` (``make bench``). Not a test.

One xgboost model (200 trees, 20 features) is registered on a temporary real MLflow
server (with its ONNX copy, as training stores it), then served one worker each by
``modelyard serve`` and by ``mlflow models serve --env-manager local``, both loaded by the
same generator (``wrk``, installed from Debian's packages if missing). Reported: the
server's own ``GET /healthz`` req/s (the HTTP floor) and single-row req/s beside it in the
same run, p50/p99 at concurrency 8 and the ratio to mlflow's, rows/s with 1,000-row
requests, the engine the server chose (from ``/readyz``), the time from writing a new
plan to serving it, and failed requests across 10 consecutive swaps under load. A second
model, trained on the demo's ``driver_acceptance`` feature spec (Jakarta's calendar) and
stored with it, is served by the same process: single-row requests with raw fields (the
event time with its offset, the raw columns) against the same rows as precomputed features.
Side by side in one run (``--mlserver``, ``--kserve``: their own environments, which ``make bench``
builds under ``.bench/``): modelyard over ``/v1`` and ``/v2``, MLServer's xgboost runtime, KServe's
Python model server (``tests/bench/kserve_model.py``) and a bare ASGI app as the floor, each on
single rows and small batches, after checking that each answers modelyard's predictions; and the floor
with the model: the bare app plus the same ONNX call on the row and nothing else (a reading, no goal).
Results go to ``docs/benchmarks.md`` and ``docs/benchmarks.json``.

The helpers (``register_xgboost``, ``ServerProcess``) are also used by the integration
tests, so the benchmark and the tests drive the very same server process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from modelyard.deploy.rollout.mlflow_server import free_port, start_mlflow_server, stop_process_group
from modelyard.training.onnx_export import write_serving_extras

REPO = Path(__file__).resolve().parents[2]
TARGETS = {
    "healthz_share": 0.6,  # single-row req/s over the same server's /healthz req/s
    "raw_share": 0.7,  # raw-field single-row req/s over precomputed-feature req/s, same model (issue 11)
    "ratio": 150.0,
    "p99_ms": 2.0,
    "rows_per_s": 150_000.0,
    "failed_across_swaps": 0,
    "v2_share": 0.85,  # /v2 infer req/s over /v1 predict req/s, same model and row (issue 27: within 15%)
    "floor_share": 0.4,  # single-row req/s over a bare ASGI app's on the same stack (issue 27)
    "mlserver_ratio": 10.0,  # single-row req/s over MLServer's (xgboost runtime, v2), same model (issue 27)
    "kserve_ratio": 10.0,  # single-row req/s over KServe's Python model server (v2), same model (issue 27)
}
BATCH_ROWS = 8  # the side-by-side small batch: rows a request


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
    onnx: bool = True,
) -> str:
    """Train a small xgboost model on synthetic data and register it (uses the current tracking URI).

    With ``onnx``, the model carries its ONNX copy and a parity sample, as training logs them.

    Returns:
        The registered version's URI, ``models:/<name>/<version>``.
    """
    import numpy as np
    import pandas as pd
    import xgboost as xgb

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
    holdout = pd.DataFrame(rng.normal(size=(256, n_features)), columns=feature_names(n_features))
    return log_registered(
        name,
        model,
        frame,
        output,
        lambda folder: write_serving_extras(model, "xgboost", holdout, folder) if onnx else [],
    )


def log_registered(name: str, model: Any, frame: Any, output: Any, extras: Any) -> str:
    """Log an xgboost ``model`` with its signature, input example and ``extras(folder)`` files; register it.

    Returns:
        The registered version's URI, ``models:/<name>/<version>``.
    """
    import mlflow
    from mlflow.models import infer_signature

    with mlflow.start_run(run_name=f"bench-{name}"), tempfile.TemporaryDirectory() as folder:
        info = mlflow.xgboost.log_model(
            model,
            name="model",
            registered_model_name=name,
            signature=infer_signature(frame.head(5), output),
            input_example=frame.head(3),
            extra_files=extras(Path(folder)) or None,
        )
    return f"models:/{name}/{info.registered_model_version}"


def demo_fitted_spec() -> Any:
    """The demo's ``driver_acceptance`` feature spec fitted for Jakarta (its festival calendar)."""
    from modelyard.core.config import load_config

    config = load_config(REPO / "modelyard.yaml", environ={})
    spec = config.feature_spec(config.family("driver_acceptance"))
    return spec.fit({}, config.region("jakarta").calendar())


def raw_records(fitted: Any, rows: int, seed: int = 3) -> list[dict[str, Any]]:
    """``rows`` raw records for ``fitted``: event times over 90 days at +07:00, raw numbers, requested aggregates."""
    import numpy as np

    rng = np.random.default_rng(seed)
    time_column = fitted.spec.time_column
    start = np.datetime64("2026-03-01T00:00:00")
    records = []
    for _ in range(rows):
        moment = (start + np.timedelta64(int(rng.integers(0, 90 * 86400)), "s")).astype(object)
        record: dict[str, Any] = {
            name: _raw_number(rng, fitted.spec.columns.get(name), fitted.spec.bounds.get(name))
            for name in fitted.raw_inputs
        }
        record[time_column] = moment.isoformat() + "+07:00"
        record.update({name: float(rng.uniform(0, 3)) for name in fitted.requested})
        records.append(record)
    return records


def _raw_number(rng: Any, column_type: str | None, bounds: Any = None) -> float | int:
    """A value of a declared column within its declared bounds: a whole number for int (0/1 for bool) columns."""
    if column_type == "bool":
        return int(rng.integers(0, 2))
    low, high, _ = bounds or (None, None, None)
    low = 0.0 if low is None else low
    high = low + 5.0 if high is None else min(high, low + 5.0)
    return int(rng.integers(int(low), int(high) + 1)) if column_type == "int" else float(rng.uniform(low, high))


def register_raw_xgboost(name: str, *, n_trees: int = 200, seed: int = 0) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Register an xgboost classifier on the demo's fitted feature spec, stored with it as training stores it.

    Returns:
        The version's URI, one raw record and the same record as precomputed features.
    """
    import numpy as np
    import pandas as pd
    import xgboost as xgb

    from modelyard.deploy.serving.artifacts import SPEC_FILE
    from modelyard.deploy.serving.features import RawFeatures
    from modelyard.deploy.serving.schema import Feature, InputSchema

    fitted = demo_fitted_spec()
    records = raw_records(fitted, 2000, seed=seed + 3)
    prepared = RawFeatures(fitted, InputSchema([Feature(n, "double") for n in fitted.names])).prepare(records)
    frame = pd.DataFrame(prepared.matrix.astype("float64"), columns=fitted.names)
    rng = np.random.default_rng(seed)
    label = (frame.sum(axis=1) + rng.normal(0, 1.0, len(frame)) > frame.sum(axis=1).median()).astype(int)
    model = xgb.XGBClassifier(n_estimators=n_trees, max_depth=6, n_jobs=1, random_state=seed).fit(frame, label)

    def extras(folder: Path) -> list[str]:
        spec_path = folder / SPEC_FILE
        spec_path.write_text(json.dumps(fitted.to_dict()))
        return [*write_serving_extras(model, "xgboost", frame.tail(256), folder), str(spec_path)]

    uri = log_registered(name, model, frame, model.predict_proba(frame.head(5))[:, 1], extras)
    precomputed = {column: float(value) for column, value in frame.iloc[0].items()}
    return uri, records[0], precomputed


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
        full_env = {
            **os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": tracking_uri,
            "OMP_NUM_THREADS": "1", **(env or {}),
        }  # fmt: skip
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
        stop_process_group(self.process, timeout)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------- load generator

WRK_GET_SCRIPT = """
wrk.method = "GET"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_RESULT %d %d %d %d %d %d %d %.1f %.1f %.1f\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_RESULT %d %d %d %d %d %d %d %.1f %.1f %.1f\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


@dataclasses.dataclass
class LoadResult:
    """One wrk run: throughput, latency, every kind of failed request and, if read, the server's CPU a request."""

    requests: int
    seconds: float
    failed: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_us: float | None = None  # the server's process group: user + system CPU microseconds per request

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def group_cpu_seconds(group: int) -> float:
    """User + system CPU seconds of every live process in process group ``group`` (a server and its workers)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        if int(fields[2]) == group:  # pgrp; utime and stime follow at 11 and 12
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def ensure_wrk() -> str:
    """The ``wrk`` binary, installed from Debian's packages when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: apt-get install -y wrk", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    install = subprocess.run([*sudo, "apt-get", "install", "-y", "wrk"], capture_output=True, text=True)
    if install.returncode != 0:
        subprocess.run([*sudo, "apt-get", "update"], capture_output=True, check=False)
        subprocess.run([*sudo, "apt-get", "install", "-y", "wrk"], capture_output=True, check=True)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk could not be installed; install it with `apt-get install -y wrk`")
    return found


def start_wrk(
    wrk: str, url: str, body_path: Path, script: Path, *, connections: int, seconds: float
) -> subprocess.Popen[str]:
    """Start wrk in the background (collect with ``finish_wrk``)."""
    command = [
        wrk, "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{seconds:.0f}s",
        "--timeout", "5s", "-s", str(script), url,
    ]  # fmt: skip
    env = {**os.environ, "BENCH_BODY": str(body_path)}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def finish_wrk(process: subprocess.Popen[str]) -> LoadResult:
    output, _ = process.communicate()
    match = re.search(r"WRK_RESULT (.+)", output)
    if not match:
        raise RuntimeError(f"wrk gave no result:\n{output}")
    requests, duration_us, connect, read, write, status, timeout, p50, p99, top = match[1].split()
    return LoadResult(
        requests=int(requests),
        seconds=int(duration_us) / 1e6,
        failed=sum(int(x) for x in (connect, read, write, status, timeout)),
        p50_ms=float(p50) / 1000,
        p99_ms=float(p99) / 1000,
        max_ms=float(top) / 1000,
    )


def run_wrk(wrk: str, url: str, body_path: Path, script: Path, *, connections: int, seconds: float) -> LoadResult:
    result = finish_wrk(start_wrk(wrk, url, body_path, script, connections=connections, seconds=seconds))
    print(
        f"  {url} {body_path.name} c={connections}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
        f"p99 {result.p99_ms:.2f} ms, failed {result.failed}",
        flush=True,
    )
    return result


# ---------------------------------------------------------------------------- mlflow models serve


def start_mlflow_scoring(model_uri: str, tracking_uri: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``mlflow models serve --env-manager local`` with one worker; returns (process, url)."""
    port = free_port()
    log_path = workdir / "mlflow-models-serve.log"
    command = [
        sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
        "-p", str(port), "-h", "127.0.0.1", "-w", "1",
    ]  # fmt: skip
    # mlflow execs `uvicorn` by name: the venv's bin must be on PATH.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {
        **os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": tracking_uri,
        "OMP_NUM_THREADS": "1", "PATH": path,
    }  # fmt: skip
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow models serve exited: {log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    _kill_group(process)
    raise TimeoutError("mlflow models serve did not answer /ping within 180s")


def _kill_group(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(15)


# ---------------------------------------------------------------------------- the floor and MLServer

# The machine's ceiling on this stack: uvicorn + httptools + uvloop, one worker, an ASGI app that reads
# the body and answers a fixed JSON (no routing, no parsing, no model).
BARE_ASGI_APP = """
BODY = b'{"predictions":[0.5]}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]


async def app(scope, receive, send):
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
"""


def start_bare_asgi(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The bare ASGI app under uvicorn, the way ``modelyard serve`` runs (uvloop, httptools, one worker)."""
    return _start_bare_app(workdir, "bare_asgi", BARE_ASGI_APP, dict(os.environ))


def _start_bare_app(
    workdir: Path, module: str, source: str, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str]:
    """``source`` written to ``workdir/<module>.py`` and served under uvicorn as ``modelyard serve`` runs."""
    (workdir / f"{module}.py").write_text(source)
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", f"{module}:app", "--app-dir", str(workdir), "--host", "127.0.0.1",
        "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--workers", "1", "--no-access-log",
        "--log-level", "warning", "--lifespan", "off",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / f"{module.replace('_', '-')}.log"
    return _start_until_ready(command, f"{url}/", log_path, env, post=True), url


# The floor with the model: the same stack and the same ONNX call modelyard makes on one row, and nothing
# else (no validation, routing, batching, metrics, request id or sampling): what any Python server
# answering this model on this stack can reach. Not a peer users would pick; a measure of the app's own cost.
BARE_MODEL_APP = """
import operator

import numpy as np
import onnxruntime as ort
import orjson

options = ort.SessionOptions()
options.intra_op_num_threads = options.inter_op_num_threads = 1
options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
SESSION = ort.InferenceSession({onnx!r}, options, providers=["CPUExecutionProvider"])
RUN = SESSION._sess.run
INPUT = SESSION.get_inputs()[0].name
VALUES = operator.itemgetter(*{names!r})
HEADERS = [(b"content-type", b"application/json")]


async def app(scope, receive, send):
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    record = orjson.loads(body or b"{{}}")
    if record:
        matrix = np.array([VALUES(record)], dtype=np.float32)
        answer = {{"predictions": RUN(["probabilities"], {{INPUT: matrix}}, None)[0][:, 1]}}
    else:  # the readiness probe
        answer = {{"predictions": []}}
    out = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
    headers = [*HEADERS, (b"content-length", b"%d" % len(out))]
    await send({{"type": "http.response.start", "status": 200, "headers": headers}})
    await send({{"type": "http.response.body", "body": out}})
"""


def start_bare_model(model_uri: str, n_features: int, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The floor with the model (``BARE_MODEL_APP``) on the version's own ONNX copy, under uvicorn as the floor."""
    import mlflow

    from modelyard.deploy.serving.engines import EXTRA_FILES_DIR, ONNX_FILE

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(workdir / "bare-model")))
    source = BARE_MODEL_APP.format(onnx=str(local / EXTRA_FILES_DIR / ONNX_FILE), names=feature_names(n_features))
    return _start_bare_app(workdir, "bare_model", source, {**os.environ, "OMP_NUM_THREADS": "1"})


def start_mlserver(mlserver: str, model_uri: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """MLServer's xgboost runtime (v2) on the same model, as its booster, from its own environment.

    ``mlserver`` is the executable of an environment holding ``mlserver`` and ``mlserver-xgboost``
    (e.g. ``python -m venv /tmp/mlserver && /tmp/mlserver/bin/pip install mlserver==1.7.1
    mlserver-xgboost==1.7.1 'uvloop<0.22'``). Its defaults otherwise (one parallel inference worker).
    """
    folder = workdir / "mlserver"
    model_dir = folder / "bench-xgb"
    model_dir.mkdir(parents=True)
    save_booster(model_uri, model_dir / "model.json")
    settings = {"name": "bench-xgb", "implementation": "mlserver_xgboost.XGBoostModel"}
    settings["parameters"] = {"uri": "./model.json", "version": "1"}  # type: ignore[assignment]
    (model_dir / "model-settings.json").write_text(json.dumps(settings))
    port = free_port()
    server = {"host": "127.0.0.1", "http_port": port, "grpc_port": free_port(), "metrics_port": free_port()}
    (folder / "settings.json").write_text(json.dumps(server))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(mlserver).parent}{os.pathsep}{os.environ['PATH']}"}
    url = f"http://127.0.0.1:{port}"
    command = [mlserver, "start", str(folder)]
    return _start_until_ready(command, f"{url}/v2/models/bench-xgb/ready", workdir / "mlserver.log", env), url


def start_kserve(python: str, model_uri: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """KServe's Python model server (``tests/bench/kserve_model.py``) on the same booster, from its own environment.

    ``python`` is the interpreter of an environment holding ``kserve==0.21.*`` and xgboost (``make bench``
    builds ``.bench/kserve``). One worker, gRPC off, KServe's defaults otherwise.
    """
    model_file = workdir / "kserve-model.json"
    save_booster(model_uri, model_file)
    port = free_port()
    command = [
        python, str(REPO / "tests" / "bench" / "kserve_model.py"), "--model-file", str(model_file),
        "--name", "bench-xgb", "--port", str(port),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    url = f"http://127.0.0.1:{port}"
    return _start_until_ready(command, f"{url}/v2/models/bench-xgb/ready", workdir / "kserve.log", env), url


def save_booster(model_uri: str, path: Path) -> None:
    """The registered xgboost model's booster as JSON, the file the peers' xgboost runtimes load."""
    import mlflow

    mlflow.xgboost.load_model(model_uri).get_booster().save_model(path)


def _start_until_ready(
    command: list[str], probe: str, log_path: Path, env: dict[str, str], *, post: bool = False
) -> subprocess.Popen[bytes]:
    """Start ``command`` (its own process group) and wait until ``probe`` answers 200."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited: {log_path.read_text()[-3000:]}")
        try:
            answer = httpx.post(probe, content=b"{}", timeout=2) if post else httpx.get(probe, timeout=2)
            if answer.status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    _kill_group(process)
    raise TimeoutError(f"{' '.join(command[:3])} did not answer {probe} within 180s")


# ---------------------------------------------------------------------------- scenarios


def write_bodies(workdir: Path, n_features: int, rows: int) -> dict[str, Path]:
    """Request bodies: one row and ``rows`` rows, in our format and MLflow's."""
    import numpy as np

    rng = np.random.default_rng(7)
    names = feature_names(n_features)
    matrix = rng.normal(size=(rows, n_features)).round(4).tolist()
    records = [dict(zip(names, row, strict=True)) for row in matrix]
    bodies = {
        "ours_1": records[0],
        "ours_n": {"records": records},
        "mlflow_1": {"dataframe_split": {"columns": names, "data": matrix[:1]}},
        "mlflow_n": {"dataframe_split": {"columns": names, "data": matrix}},
        # The same row as v2 tensors: one per input, as the model's v2 metadata lists them (tritonclient's way).
        "v2_1": {"inputs": [{"name": n, "datatype": "FP64", "shape": [1], "data": [v]} for n, v in records[0].items()]},
        # ... and as one [1, k] tensor, the form MLServer's xgboost runtime takes.
        "v2_matrix_1": {
            "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, n_features], "data": matrix[0]}]
        },
        # The side-by-side small batch, in each form.
        "ours_batch": {"records": records[:BATCH_ROWS]},
        "v2_batch": {
            "inputs": [
                {"name": n, "datatype": "FP64", "shape": [BATCH_ROWS], "data": [r[n] for r in records[:BATCH_ROWS]]}
                for n in names
            ]
        },
        "v2_matrix_batch": {
            "inputs": [
                {
                    "name": "input-0",
                    "datatype": "FP64",
                    "shape": [BATCH_ROWS, n_features],
                    "data": [v for row in matrix[:BATCH_ROWS] for v in row],
                }
            ]
        },
    }
    paths = {}
    for key, body in bodies.items():
        paths[key] = workdir / f"{key}.json"
        paths[key].write_text(json.dumps(body))
    return paths


def write_plan(path: Path, plan: dict[str, Any]) -> str:
    """Write a plan file atomically; return its digest."""
    from modelyard.core.storage import write_bytes_atomic
    from modelyard.deploy.serving.plan import parse_plan

    write_bytes_atomic(path, json.dumps(plan).encode())
    return parse_plan(plan).digest()


def time_to_serve(server: ServerProcess, plan: dict[str, Any], version: str, body_path: Path) -> float:
    """Seconds from writing ``plan`` to the first response served by model ``version``."""
    body = json.loads(body_path.read_text())
    started = time.perf_counter()
    write_plan(server.plan_path, plan)
    while time.perf_counter() - started < 120:
        response = httpx.post(f"{server.url}/v1/predict/bench/local", json=body, timeout=5)
        if response.status_code == 200 and response.json()["version"] == version:
            return time.perf_counter() - started
        time.sleep(0.005)
    raise TimeoutError(f"version {version} not served within 120s:\n{server.log_tail()}")


def swaps_under_load(
    server: ServerProcess, wrk: str, script: Path, plans: Sequence[tuple[dict[str, Any], str]], body: Path
) -> tuple[LoadResult, list[float]]:
    """Swap through ``plans`` (plan, version) while wrk keeps c=8 single-row load on the server."""
    load = start_wrk(
        wrk, f"{server.url}/v1/predict/bench/local", body, script, connections=8, seconds=4 + 2.5 * len(plans)
    )
    time.sleep(1.0)
    times = []
    try:
        for plan, version in plans:
            times.append(time_to_serve(server, plan, version, body))
            time.sleep(0.5)
    finally:
        result = finish_wrk(load)
    return result, times


# ---------------------------------------------------------------------------- main


@dataclasses.dataclass(frozen=True)
class BenchOptions:
    seconds: float = 10.0
    connections: int = 8
    trees: int = 200
    features: int = 20
    rows: int = 1000
    swaps: int = 10
    out: Path = REPO / "docs"
    rounds: int = 3  # interleaved rounds of the side-by-side servers
    mlserver: str | None = None  # the mlserver executable of its own environment; None: not measured
    kserve: str | None = None  # the python of an environment with kserve and xgboost; None: not measured


def run_benchmark(options: BenchOptions, workdir: Path) -> dict[str, Any]:
    """Run every scenario against a fresh MLflow server under ``workdir``; return the results."""
    import mlflow

    wrk = ensure_wrk()
    registry = start_mlflow_server(workdir / "mlflow")
    try:
        mlflow.set_tracking_uri(registry.url)
        uris = [
            register_xgboost("bench-xgb", n_features=options.features, n_trees=options.trees, seed=s) for s in (0, 1)
        ]
        raw_uri, raw_record, precomputed_record = register_raw_xgboost("bench-raw", n_trees=options.trees)
        bodies = write_bodies(workdir, options.features, options.rows)
        for key, body in {"raw_1": raw_record, "pre_1": precomputed_record}.items():
            bodies[key] = workdir / f"{key}.json"
            bodies[key].write_text(json.dumps(body))
        script = workdir / "post.lua"
        script.write_text(WRK_SCRIPT)
        (workdir / "get.lua").write_text(WRK_GET_SCRIPT)
        ours = _bench_ours(options, workdir, registry.url, uris, raw_uri, bodies, wrk, script)
        theirs = _bench_mlflow(options, workdir, registry.url, uris[0], bodies, wrk, script)
        peers = _bench_side_by_side(options, workdir, registry.url, uris[0], bodies, wrk, script)
    finally:
        registry.stop()
    return _summarize(options, ours, theirs, peers)


def _bench_side_by_side(
    options: BenchOptions,
    workdir: Path,
    tracking_uri: str,
    uri: str,
    bodies: dict[str, Path],
    wrk: str,
    script: Path,
) -> dict[str, LoadResult]:
    """The same single row (and ``BATCH_ROWS`` rows) on every server at once, in interleaved rounds.

    All servers run together and take turns under the same wrk load (``options.rounds`` rounds of
    ``options.seconds / 2``), so a neighbour's burst on a shared machine hits every server alike
    instead of whichever ran at that moment; the median round of each. Servers: modelyard over
    ``/v1`` and ``/v2`` (one process), the bare ASGI floor and, when their environments are given,
    MLServer and KServe's Python model server. Each model server's answers are checked against
    modelyard's before any timing. Keys: ``<server>`` single row, ``<server>_batch`` the small batch.
    """
    plan_path = workdir / "side-by-side.json"
    write_plan(plan_path, single_plan(uri))
    ours = ServerProcess.start(plan_path, tracking_uri, log_path=workdir / "side-by-side.log")
    processes: list[subprocess.Popen[bytes]] = [ours.process]
    groups: dict[str, int] = {}  # each server runs in its own process group (start_new_session)
    try:
        ours.wait_ready()
        targets = {
            "modelyard_v1": (f"{ours.url}/v1/predict/bench/local", bodies["ours_1"]),
            "modelyard_v2": (f"{ours.url}/v2/models/bench-local/infer", bodies["v2_1"]),
        }
        groups["modelyard_v1"] = groups["modelyard_v2"] = ours.process.pid
        process, url = start_bare_asgi(workdir)
        processes.append(process)
        targets["bare_asgi"] = (f"{url}/", bodies["ours_1"])
        groups["bare_asgi"] = process.pid
        process, url = start_bare_model(uri, options.features, workdir)
        processes.append(process)
        targets["bare_model"] = (f"{url}/", bodies["ours_1"])
        groups["bare_model"] = process.pid
        if options.mlserver:
            process, url = start_mlserver(options.mlserver, uri, workdir)
            processes.append(process)
            targets["mlserver"] = (f"{url}/v2/models/bench-xgb/infer", bodies["v2_matrix_1"])
            groups["mlserver"] = process.pid  # with its inference worker process
        if options.kserve:
            process, url = start_kserve(options.kserve, uri, workdir)
            processes.append(process)
            targets["kserve"] = (f"{url}/v2/models/bench-xgb/infer", bodies["v2_matrix_1"])
            groups["kserve"] = process.pid
        batch_bodies = {"ours_1": "ours_batch", "v2_1": "v2_batch", "v2_matrix_1": "v2_matrix_batch"}
        for name, (url, body) in list(targets.items()):
            if not name.startswith("bare_"):
                targets[f"{name}_batch"] = (url, bodies[batch_bodies[body.stem]])
        check_answers(targets)
        return _rounds(options, targets, wrk, script, groups)
    finally:
        for process in processes:
            _kill_group(process)


def check_answers(targets: dict[str, tuple[str, Path]]) -> None:
    """Every model server gives modelyard /v1's predictions for the same rows, or the bench stops."""
    import numpy as np

    reference = {"": _predictions(*targets["modelyard_v1"]), "_batch": _predictions(*targets["modelyard_v1_batch"])}
    for name, (url, body) in targets.items():
        if name == "bare_asgi":
            continue
        expected = reference["_batch" if name.endswith("_batch") else ""]
        got = _predictions(url, body)
        if not np.allclose(got, expected, rtol=1e-4, atol=1e-5):
            raise RuntimeError(f"{name} answers {got.tolist()} where modelyard /v1 answers {expected.tolist()}")
        print(f"  {name}: same predictions as modelyard /v1 ({len(got)} rows)", flush=True)


def _predictions(url: str, body: Path) -> Any:
    """The class-1 probabilities a server answers: ``predictions`` (v1) or the first output tensor (v2)."""
    import numpy as np

    answer = httpx.post(url, content=body.read_bytes(), headers={"Content-Type": "application/json"}, timeout=30)
    if answer.status_code != 200:
        raise RuntimeError(f"{url} answers {answer.status_code}: {answer.text[:500]}")
    data = answer.json()
    values = np.asarray(data["predictions"] if "predictions" in data else data["outputs"][0]["data"], dtype="float64")
    shape = data.get("outputs", [{}])[0].get("shape", [])
    return values.reshape(shape)[:, 1] if len(shape) == 2 and shape[1] == 2 else values.ravel()


def _rounds(
    options: BenchOptions,
    targets: dict[str, tuple[str, Path]],
    wrk: str,
    script: Path,
    groups: dict[str, int] | None = None,
) -> dict[str, LoadResult]:
    """Each target under wrk in turn, ``options.rounds`` times; the median round (by req/s) of each.

    ``groups`` maps a target to its server's process group: its CPU time is read before and after
    each of its runs (``LoadResult.cpu_us``): the server's own cost a request, apart from how much of
    the two cores it got beside wrk (a server answering from two processes gets more of them).
    """
    for url, body in targets.values():  # warm every path
        run_wrk(wrk, url, body, script, connections=options.connections, seconds=2)
    runs: dict[str, list[LoadResult]] = {name: [] for name in targets}
    for _ in range(options.rounds):
        for name, (url, body) in targets.items():
            seconds = max(2.0, options.seconds / 2)
            group = (groups or {}).get(name)
            before = group_cpu_seconds(group) if group is not None else 0.0
            result = run_wrk(wrk, url, body, script, connections=options.connections, seconds=seconds)
            if group is not None and result.requests:
                cpu_us = (group_cpu_seconds(group) - before) * 1e6 / result.requests
                result = dataclasses.replace(result, cpu_us=cpu_us)
            runs[name].append(result)
    return {name: sorted(results, key=lambda r: r.rps)[len(results) // 2] for name, results in runs.items()}


def _bench_ours(
    options: BenchOptions,
    workdir: Path,
    tracking_uri: str,
    uris: list[str],
    raw_uri: str,
    bodies: dict[str, Path],
    wrk: str,
    script: Path,
) -> dict[str, Any]:
    plan_path = workdir / "plan.json"
    first = single_plan(uris[0])
    first["services"] += single_plan(raw_uri, region="raw")["services"]  # the feature-spec model, same process
    write_plan(plan_path, first)
    sampling = {
        "MODELYARD_SERVE_SAMPLE_RATE": "0.05",
        "MODELYARD_SERVE_LOG_DIR": str(workdir / "samples"),
    }  # as deployed
    server = ServerProcess.start(
        plan_path, tracking_uri, poll_seconds=0.05, log_path=workdir / "serve.log", env=sampling
    )
    try:
        ready = server.wait_ready()
        url = f"{server.url}/v1/predict/bench/local"
        run_wrk(wrk, url, bodies["ours_1"], script, connections=options.connections, seconds=2)  # warm the path
        healthz = run_wrk(
            wrk, f"{server.url}/healthz", bodies["ours_1"], workdir / "get.lua",
            connections=options.connections, seconds=options.seconds,
        )  # fmt: skip
        single = run_wrk(wrk, url, bodies["ours_1"], script, connections=options.connections, seconds=options.seconds)
        batch = run_wrk(wrk, url, bodies["ours_n"], script, connections=options.connections, seconds=options.seconds)
        raw_url = f"{server.url}/v1/predict/bench/raw"
        run_wrk(wrk, raw_url, bodies["raw_1"], script, connections=options.connections, seconds=2)  # warm the path
        raw = {
            kind: run_wrk(
                wrk, raw_url, bodies[f"{kind}_1"], script, connections=options.connections, seconds=options.seconds
            )
            for kind in ("pre", "raw")
        }
        new_model = time_to_serve(server, single_plan(uris[1]), "2", bodies["ours_1"])
        plans = [(single_plan(uris[i % 2]), str(i % 2 + 1)) for i in range(options.swaps)]
        swap_load, swap_times = swaps_under_load(server, wrk, script, plans, bodies["ours_1"])
    finally:
        server.stop()
    return {
        "engine": ready["models"][uris[0]].get("engine_detail"),
        "raw_inputs": ready["models"][raw_uri].get("inputs"),
        "healthz": healthz,
        "precomputed_1": raw["pre"],
        "raw_1": raw["raw"],
        "single": single,
        "batch": batch,
        "new_model_s": new_model,
        "swap_load": swap_load,
        "swap_times": swap_times,
    }


def _bench_mlflow(
    options: BenchOptions, workdir: Path, tracking_uri: str, uri: str, bodies: dict[str, Path], wrk: str, script: Path
) -> dict[str, LoadResult]:
    process, url = start_mlflow_scoring(uri, tracking_uri, workdir)
    try:
        run_wrk(wrk, f"{url}/invocations", bodies["mlflow_1"], script, connections=options.connections, seconds=2)
        single = run_wrk(
            wrk,
            f"{url}/invocations",
            bodies["mlflow_1"],
            script,
            connections=options.connections,
            seconds=options.seconds,
        )
        batch = run_wrk(
            wrk,
            f"{url}/invocations",
            bodies["mlflow_n"],
            script,
            connections=options.connections,
            seconds=options.seconds,
        )
    finally:
        _kill_group(process)
    return {"single": single, "batch": batch}


def _share(ours: LoadResult, theirs: LoadResult | None, digits: int = 3) -> float | None:
    return round(ours.rps / theirs.rps, digits) if theirs is not None and theirs.rps else None


def _cpu_ratio(theirs: LoadResult | None, ours: LoadResult) -> float | None:
    """How many times modelyard's server CPU a request ``theirs`` spends (None: not read)."""
    if theirs is None or theirs.cpu_us is None or not ours.cpu_us:
        return None
    return round(theirs.cpu_us / ours.cpu_us, 1)


def _summarize(
    options: BenchOptions, ours: dict[str, Any], theirs: dict[str, LoadResult], peers: dict[str, LoadResult]
) -> dict[str, Any]:
    single, batch, swap_load = ours["single"], ours["batch"], ours["swap_load"]
    ratio = single.rps / theirs["single"].rps if theirs["single"].rps else float("inf")
    measured = {
        "healthz_share": round(single.rps / ours["healthz"].rps, 3) if ours["healthz"].rps else 0.0,
        "ratio": round(ratio, 1),
        "p99_ms": round(single.p99_ms, 2),
        "rows_per_s": round(batch.rps * options.rows),
        "failed_across_swaps": swap_load.failed,
        "raw_share": round(ours["raw_1"].rps / ours["precomputed_1"].rps, 3) if ours["precomputed_1"].rps else 0.0,
        "v2_share": _share(peers["modelyard_v2"], peers["modelyard_v1"]),
        "floor_share": _share(peers["modelyard_v1"], peers["bare_asgi"]),
        "model_floor_share": _share(peers["modelyard_v1"], peers.get("bare_model")),  # no goal: a reading
        "mlserver_ratio": _share(peers["modelyard_v1"], peers.get("mlserver"), 1),
        "kserve_ratio": _share(peers["modelyard_v1"], peers.get("kserve"), 1),
        # Readings, no goals: a peer's server CPU a single-row request over modelyard's (/v1), same rounds.
        "mlserver_cpu_ratio": _cpu_ratio(peers.get("mlserver"), peers["modelyard_v1"]),
        "kserve_cpu_ratio": _cpu_ratio(peers.get("kserve"), peers["modelyard_v1"]),
    }
    met = {
        "healthz_share": measured["healthz_share"] >= TARGETS["healthz_share"],
        "ratio": measured["ratio"] >= TARGETS["ratio"],
        "p99_ms": measured["p99_ms"] <= TARGETS["p99_ms"],
        "rows_per_s": measured["rows_per_s"] >= TARGETS["rows_per_s"],
        "failed_across_swaps": measured["failed_across_swaps"] == 0,
        "raw_share": measured["raw_share"] >= TARGETS["raw_share"],
        **{
            key: _at_least(measured[key], TARGETS[key])
            for key in ("v2_share", "floor_share", "mlserver_ratio", "kserve_ratio")
        },
    }
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "setup": dataclasses.asdict(options) | {"out": str(options.out)},
        "modelyard": {
            "engine": ours["engine"],
            "healthz": _load_dict(ours["healthz"]),
            "single_row": _load_dict(single),
            f"rows_{options.rows}": _load_dict(batch) | {"rows_per_s": measured["rows_per_s"]},
            "new_plan_to_serving_s": round(ours["new_model_s"], 3),
            "swap_to_serving_s": [round(t, 3) for t in ours["swap_times"]],
            "swaps_under_load": _load_dict(swap_load) | {"swaps": len(ours["swap_times"])},
            "feature_spec_model": {
                "inputs": ours["raw_inputs"],
                "precomputed_single_row": _load_dict(ours["precomputed_1"]),
                "raw_single_row": _load_dict(ours["raw_1"]),
            },
        },
        "mlflow_models_serve": {
            "single_row": _load_dict(theirs["single"]),
            f"rows_{options.rows}": _load_dict(theirs["batch"])
            | {"rows_per_s": round(theirs["batch"].rps * options.rows)},
        },
        "peers": {name: _load_dict(result) for name, result in peers.items()},
        "measured": measured,
        "targets": TARGETS,
        "met": met,
    }


def _at_least(measured: float | None, goal: float) -> bool | None:
    """Whether ``measured`` reaches ``goal`` (None: not measured in this run)."""
    return None if measured is None else measured >= goal


def _load_dict(result: LoadResult) -> dict[str, Any]:
    load = {
        "requests": result.requests,
        "req_per_s": round(result.rps, 1),
        "p50_ms": round(result.p50_ms, 2),
        "p99_ms": round(result.p99_ms, 2),
        "max_ms": round(result.max_ms, 2),
        "failed": result.failed,
    }
    if result.cpu_us is not None:
        load["server_cpu_us"] = round(result.cpu_us, 1)
    return load


def render_markdown(results: dict[str, Any]) -> str:
    """The side-by-side table of ``docs/benchmarks.md``."""
    options, ours, theirs = results["setup"], results["modelyard"], results["mlflow_models_serve"]
    rows_key = f"rows_{options['rows']}"
    measured, met = results["measured"], results["met"]
    swaps = ours["swap_to_serving_s"]

    def mark(key: str) -> str:
        return "not run" if met.get(key) is None else "met" if met[key] else "MISSED"

    lines = [
        "# Serving benchmark",
        "",
        f"`make bench` (`python tests/bench/serving.py`), {results['when']}, "
        f"{results['machine']['cpus']} CPUs shared with "
        f"the load generator (load average at the end: {results['machine']['loadavg_at_end']}).",
        f"One xgboost model ({options['trees']} trees, {options['features']} features) from a real MLflow registry; "
        f"one worker per server; `wrk` at {options['connections']} connections, {options['seconds']:.0f} s per run.",
        "",
        "| scenario | modelyard serve | mlflow models serve | ratio |",
        "|---|---|---|---|",
        f"| GET /healthz (the HTTP floor): req/s | {ours['healthz']['req_per_s']:,.0f} | | |",
        _row("single row: req/s", ours["single_row"]["req_per_s"], theirs["single_row"]["req_per_s"]),
        f"| single row: p50 / p99 ms | {ours['single_row']['p50_ms']} / {ours['single_row']['p99_ms']} "
        f"| {theirs['single_row']['p50_ms']} / {theirs['single_row']['p99_ms']} | |",
        _row(f"{options['rows']}-row requests: rows/s", ours[rows_key]["rows_per_s"], theirs[rows_key]["rows_per_s"]),
        f"| {options['rows']}-row requests: p50 / p99 ms | {ours[rows_key]['p50_ms']} / {ours[rows_key]['p99_ms']} "
        f"| {theirs[rows_key]['p50_ms']} / {theirs[rows_key]['p99_ms']} | |",
        "",
        "| target | measured | goal | |",
        "|---|---|---|---|",
        f"| single-row req/s vs the same server's /healthz | {measured['healthz_share']:.0%} "
        f"| >= {TARGETS['healthz_share']:.0%} | {mark('healthz_share')} |",
        f"| single-row throughput vs mlflow | {measured['ratio']}x | >= {TARGETS['ratio']:.0f}x | {mark('ratio')} |",
        f"| single-row p99 at c={options['connections']} | {measured['p99_ms']} ms | <= {TARGETS['p99_ms']} ms "
        f"| {mark('p99_ms')} |",
        f"| rows/s, {options['rows']}-row requests | {measured['rows_per_s']:,} | >= {TARGETS['rows_per_s']:,.0f} "
        f"| {mark('rows_per_s')} |",
        f"| failed requests across {len(swaps)} swaps under load | {measured['failed_across_swaps']} "
        f"(of {ours['swaps_under_load']['requests']:,}) | 0 | {mark('failed_across_swaps')} |",
        f"| raw-field single rows vs precomputed features (same model) | {measured['raw_share']:.0%} "
        f"| >= {TARGETS['raw_share']:.0%} | {mark('raw_share')} |",
        f"| /v2 infer vs /v1 predict, single row (same model) | {_percent(measured.get('v2_share'))} "
        f"| >= {TARGETS['v2_share']:.0%} | {mark('v2_share')} |",
        f"| single row vs the bare ASGI floor | {_percent(measured.get('floor_share'))} "
        f"| >= {TARGETS['floor_share']:.0%} | {mark('floor_share')} |",
        f"| single row vs the floor with the model (bare app + the same ONNX call) "
        f"| {_percent(measured.get('model_floor_share'))} | (a reading) | |",
        f"| single row vs MLServer | {_times(measured.get('mlserver_ratio'))} "
        f"| >= {TARGETS['mlserver_ratio']:.0f}x | {mark('mlserver_ratio')} |",
        f"| single row vs KServe's Python model server | {_times(measured.get('kserve_ratio'))} "
        f"| >= {TARGETS['kserve_ratio']:.0f}x | {mark('kserve_ratio')} |",
        f"| server CPU a single-row request: MLServer's / KServe's over modelyard's "
        f"| {_times(measured.get('mlserver_cpu_ratio'))} / {_times(measured.get('kserve_cpu_ratio'))} "
        "| (a reading) | |",
        "",
        *_peer_lines(results),
        "",
        _raw_line(ours["feature_spec_model"]),
        "",
        _engine_line(ours["engine"]),
        "",
        f"New plan (a model version not yet loaded) to serving it: {ours['new_plan_to_serving_s']} s "
        f"(write the plan file, the server polls it, downloads, loads and warms the model, switches).",
        f"Swaps under load, plan written to first response by the new version: "
        f"median {sorted(swaps)[len(swaps) // 2]} s, max {max(swaps)} s.",
        "",
    ]
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "not run" if value is None else f"{value:.0%}"


def _times(value: float | None) -> str:
    return "not run" if value is None else f"{value}x"


def _peer_lines(results: dict[str, Any]) -> list[str]:
    """The same single row on every server, one worker each, the same wrk load, in interleaved rounds."""
    side = results["peers"]
    ours = side["modelyard_v1"]
    peers = {
        "bare ASGI app (uvicorn + httptools + uvloop, fixed JSON): the floor": "bare_asgi",
        "the same bare app + the same ONNX call on the row, nothing else: the floor with the model": "bare_model",
        "modelyard serve, POST /v1/predict": "modelyard_v1",
        "modelyard serve, POST /v2/models/{name}/infer (one tensor per field)": "modelyard_v2",
        "MLServer 1.7 (xgboost runtime, v2, one [n, k] tensor)": "mlserver",
        "KServe 0.21 Python model server (kserve.Model on the booster, v2, one [n, k] tensor)": "kserve",
    }
    rounds = results["setup"]["rounds"]
    lines = [
        f"Side by side: every server up at once, each in turn under the same load, {rounds} rounds; the median round. "
        f"Every model server's answers were checked against modelyard's before timing.",
        "",
        "| same model | single row: req/s | p50 / p99 ms | modelyard /v1 over it | server CPU µs a request "
        f"| {BATCH_ROWS} rows a request: rows/s | modelyard /v1 over it |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, key in peers.items():
        lines.append(_peer_row(label, side.get(key), ours, side.get(f"{key}_batch"), side.get("modelyard_v1_batch")))
    mlflow = results["mlflow_models_serve"]["single_row"]
    lines.append(_peer_row("mlflow models serve (/invocations; its own run, not in the rounds)", mlflow, ours))
    return lines


def _peer_row(
    label: str, load: dict[str, Any] | None, ours: dict[str, Any], batch: Any = None, ours_batch: Any = None
) -> str:
    """One server's row: single-row req/s and latency, then rows/s with the small batch (if measured)."""
    if load is None:
        return f"| {label} | not run | | | | | |"
    ratio = f"{ours['req_per_s'] / load['req_per_s']:.2f}x" if load["req_per_s"] else "n/a"
    cpu = f" {load['server_cpu_us']:,.0f} |" if "server_cpu_us" in load else " |"
    cells = f"| {label} | {load['req_per_s']:,.0f} | {load['p50_ms']} / {load['p99_ms']} | {ratio} |{cpu}"
    if batch is None or ours_batch is None:
        return cells + " | |"
    batch_ratio = f"{ours_batch['req_per_s'] / batch['req_per_s']:.2f}x" if batch["req_per_s"] else "n/a"
    return cells + f" {batch['req_per_s'] * BATCH_ROWS:,.0f} | {batch_ratio} |"


def _raw_line(model: dict[str, Any]) -> str:
    inputs = model.get("inputs") or {}
    pre, raw = model["precomputed_single_row"], model["raw_single_row"]
    return (
        f"Feature-spec model (the demo's `driver_acceptance` spec, Jakarta's calendar, stored with the version): "
        f"single rows with raw fields ({', '.join(inputs.get('raw_inputs', []))}; requested by name: "
        f"{', '.join(inputs.get('requested', [])) or 'none'}) {raw['req_per_s']:,.0f} req/s, p99 {raw['p99_ms']} ms; "
        f"the same rows as precomputed features {pre['req_per_s']:,.0f} req/s, p99 {pre['p99_ms']} ms."
    )


def _engine_line(engine: dict[str, Any] | None) -> str:
    if not engine:
        return "Engine: not reported by /readyz."
    calibration = engine.get("calibration_us") or {}
    sizes = [s for s in ("1", "8", "64", "1024") if s in calibration.get("onnx", {})]
    timed = ", ".join(f"{s} rows {calibration['native'][s]:.0f} / {calibration['onnx'][s]:.0f} us" for s in sizes)
    return (
        f"Engine (from /readyz): **{engine['engine']}** ({engine['reason']}); parity max |diff| "
        f"{engine.get('parity_max_abs_diff')} on {engine.get('parity_rows')} rows; load-time calibration, "
        f"native / ONNX per call: {timed or 'n/a'}."
    )


def _row(label: str, ours: float, theirs: float) -> str:
    ratio = f"{ours / theirs:.1f}x" if theirs else "n/a"
    return f"| {label} | {ours:,.0f} | {theirs:,.0f} | {ratio} |"


def _parse_args(argv: Sequence[str] | None) -> BenchOptions:
    parser = argparse.ArgumentParser(prog="python tests/bench/serving.py", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each wrk run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--rows", type=int, default=1000, help="rows per request in the batch scenario")
    parser.add_argument("--swaps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="where benchmarks.md/.json go")
    parser.add_argument(
        "--mlserver",
        default=None,
        help="the mlserver executable of an environment with mlserver-xgboost (else skipped)",
    )
    parser.add_argument(
        "--kserve",
        default=None,
        help="the python of an environment with kserve==0.21.* and xgboost (make bench: .bench/kserve; else skipped)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the side-by-side servers")
    args = parser.parse_args(argv)
    return BenchOptions(
        seconds=args.seconds, connections=args.connections, trees=args.trees, features=args.features,
        rows=args.rows, swaps=args.swaps, out=args.out, rounds=args.rounds, mlserver=args.mlserver,
        kserve=args.kserve,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, write ``benchmarks.md``/``.json`` and print the table."""
    options = _parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as tmp:
        results = run_benchmark(options, Path(tmp))
    options.out.mkdir(parents=True, exist_ok=True)
    write_json(options.out / "benchmarks.json", results)
    markdown = render_markdown(results)
    path = options.out / "benchmarks.md"
    path.write_text(replace_generated(path.read_text() if path.exists() else "", markdown))
    print(markdown)
    return 0


def write_json(document: Path, results: dict[str, Any]) -> None:
    """Replace this bench's keys of ``document`` with ``results``; the other benches' keys stay as they are.

    scale.py keeps its runs' history (``scale_runs``) in the same file. Keeping a fixed list of the
    other benches' keys, instead of every key this run does not write, once lost that history.
    """
    kept = json.loads(document.read_text()) if document.exists() else {}
    document.write_text(json.dumps({**kept, **results}, indent=2) + "\n")


GENERATED_START, GENERATED_END = "<!-- make bench: start -->", "<!-- make bench: end -->"


def replace_generated(document: str, generated: str) -> str:
    """``document`` with its generated part replaced by ``generated``; hand-written sections are kept.

    The generated part sits between two markers; a document without them is taken to be generated
    up to its first ``## `` section (the layout before the markers existed).
    """
    block = f"{GENERATED_START}\n{generated.rstrip()}\n{GENERATED_END}\n"
    if GENERATED_START in document and GENERATED_END in document:
        head, _, rest = document.partition(GENERATED_START)
        tail = rest.partition(GENERATED_END)[2].lstrip("\n")
        return head + block + (f"\n{tail}" if tail else "")
    index = document.find("\n## ")
    return block if index < 0 else block + document[index:]


if __name__ == "__main__":
    raise SystemExit(main())
