"""The serving process under hostile input: real `modelyard serve` processes, real HTTP and sockets.

Every probe asserts the status code and that the answer names the problem. One server
runs with an admin token, a confined prediction-log folder, a model cache, a 1 s request
deadline and a concurrency limit; a second one runs with no token (the default: admin off).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.deploy.serving.plan import parse_plan
from tests.bench.serving import ServerProcess, feature_names, register_xgboost, single_plan, write_plan

TOKEN = "adversarial-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
NAMES = feature_names(4)
RECORD = dict.fromkeys(NAMES, 0.5)
MAX_RECORDS = 100
LIMIT_CONCURRENCY = 80
REQUEST_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def models(mlflow_server) -> dict[str, str]:
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.url)
    small = {"n_features": 4, "n_trees": 5, "rows": 200}
    return {
        "v1": register_xgboost("adversarial", seed=0, **small),
        "v2": register_xgboost("adversarial", seed=1, **small),
    }


def _plan(uri: str, **extra: Any) -> dict[str, Any]:
    return {**single_plan(uri), "max_records": MAX_RECORDS, **extra}


@pytest.fixture(scope="module")
def server(models, mlflow_server, tmp_path_factory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("adversarial")
    for folder in ("logs", "cache", "outside"):
        (workdir / folder).mkdir()
    write_plan(workdir / "plan.json", _plan(models["v1"], prediction_log={"path": "p", "sample_rate": 1.0}))
    env = {
        "MODELYARD_SERVE_ADMIN_TOKEN": TOKEN,
        "MODELYARD_SERVE_LOG_DIR": str(workdir / "logs"),
        "MODELYARD_SERVE_MODEL_CACHE": str(workdir / "cache"),
        "MODELYARD_SERVE_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT_S),
        "MODELYARD_SERVE_LIMIT_CONCURRENCY": str(LIMIT_CONCURRENCY),
    }
    with ServerProcess.start(workdir / "plan.json", mlflow_server.url, env=env) as process:
        process.wait_ready(timeout=180)
        yield process


@pytest.fixture(scope="module")
def open_server(models, mlflow_server, tmp_path_factory) -> Iterator[ServerProcess]:
    """No admin token configured: the default."""
    workdir = tmp_path_factory.mktemp("adversarial-open")
    write_plan(workdir / "plan.json", _plan(models["v1"]))
    env = {"MODELYARD_SERVE_ADMIN_TOKEN": "", "MODELYARD_SERVE_LOG_DIR": str(workdir / "logs")}
    with ServerProcess.start(workdir / "plan.json", mlflow_server.url, env=env) as process:
        process.wait_ready(timeout=180)
        yield process


def _active_digest(server: ServerProcess) -> str:
    return str(httpx.get(f"{server.url}/readyz", timeout=10).json()["plan"]["active_digest"])


def _workdir(server: ServerProcess) -> Path:
    return server.plan_path.parent


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert isinstance(body, dict), response.text
    assert "message" in body, response.text
    return body


def _put(server: ServerProcess, plan: dict[str, Any] | bytes, headers: dict[str, str] | None = ADMIN) -> httpx.Response:
    content = plan if isinstance(plan, bytes) else json.dumps(plan).encode()
    return httpx.put(f"{server.url}/admin/plan", params={"wait": "1"}, content=content, headers=headers, timeout=120)


# ---------------------------------------------------------------------------- prediction bodies

PREDICT = "/v1/predict/bench/local"
INVOKE = "/invocations/bench/local"
ROWS = MAX_RECORDS + 1

BAD_BODIES = [
    ("truncated json", PREDICT, b'{"f00": ', 400, "body", "not valid JSON"),
    ("empty body", PREDICT, b"", 400, "body", "empty"),
    ("json scalar", PREDICT, b"17", 400, "body", "got int"),
    ("array of numbers", PREDICT, b"[1, 2]", 422, "records[0]", "JSON object"),
    ("string feature", PREDICT, json.dumps({**RECORD, "f01": "x"}).encode(), 422, "records[0].f01", "JSON number"),
    ("missing feature", PREDICT, json.dumps({"f00": 1.0}).encode(), 422, "records[0].f01", "missing"),
    ("too many records", PREDICT, json.dumps([RECORD] * ROWS).encode(), 413, "records", f"at most {MAX_RECORDS}"),
    ("routing key object", PREDICT, json.dumps({**RECORD, "customer_id": [1]}).encode(), 422, "records[0].customer_id",
     "routing key"),
    ("split: list column name", INVOKE, json.dumps({"dataframe_split": {"columns": [["f00"]], "data": [[1]]}}).encode(),
     400, "dataframe_split.columns[0]", "column names must be strings"),
    ("split: object column name", INVOKE,
     json.dumps({"dataframe_split": {"columns": ["f00", {"a": 1}], "data": [[1, 2]]}}).encode(),
     400, "dataframe_split.columns[1]", "column names must be strings"),
    ("split: too many rows", INVOKE,
     json.dumps({"dataframe_split": {"columns": NAMES, "data": [[0] * 4] * ROWS}}).encode(),
     413, "dataframe_split.data", f"{ROWS} records"),
    ("split: short row", INVOKE, json.dumps({"dataframe_split": {"columns": NAMES, "data": [[1]]}}).encode(),
     400, "dataframe_split.data[0]", "one per column"),
    ("split: not an object", INVOKE, json.dumps({"dataframe_split": [1]}).encode(), 400, "dataframe_split", "columns"),
    ("columnar: too many rows", INVOKE, json.dumps({"inputs": {n: [0.0] * ROWS for n in NAMES}}).encode(),
     413, "inputs", f"{ROWS} records"),
    ("columnar: ragged", INVOKE, json.dumps({"inputs": {"f00": [1, 2], "f01": [1]}}).encode(),
     400, "inputs", "different lengths"),
    ("unknown mlflow format", INVOKE, json.dumps({"frames": []}).encode(), 400, "body", "unknown format"),
    ("dataframe_records not a list", INVOKE, json.dumps({"dataframe_records": {"a": 1}}).encode(),
     400, "dataframe_records", "array"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "path", "body", "status", "field", "names"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES]
)
def test_bad_prediction_bodies_get_a_4xx_naming_the_field(server, case, path, body, status, field, names):
    response = httpx.post(f"{server.url}{path}", content=body, timeout=30)
    error = _error(response)
    assert response.status_code == status, response.text
    assert error.get("field") == field, response.text
    assert names in error["message"], response.text


@pytest.mark.parametrize(
    ("method", "path", "status", "names"),
    [
        ("POST", "/v1/predict/nope/local", 404, "unknown family 'nope'"),
        ("POST", "/v1/predict/bench/mars", 404, "region 'mars' is not served"),
        ("GET", PREDICT, 405, "use POST"),
        ("GET", "/v2/anything", 404, "no v2 endpoint /v2/anything"),
        ("POST", "/v1/predict/a/b/c", 404, "no endpoint /v1/predict/a/b/c"),
        ("POST", "/v1/whatever", 404, "no endpoint /v1/whatever"),
        ("GET", "/invocations/a/b/c", 404, "no endpoint /invocations/a/b/c"),
        *[(m, p, 405, f"{m} not allowed on {p}; use GET or HEAD") for m in ("OPTIONS", "DELETE", "POST")
          for p in ("/healthz", "/readyz", "/metrics")],
    ],
)  # fmt: skip
def test_unknown_routes_and_methods(server, method, path, status, names):
    response = httpx.request(method, f"{server.url}{path}", json=RECORD, timeout=10)
    assert response.status_code == status
    body = response.json()  # /v2 answers in its protocol's shape, {"error": ...}
    assert names in (body["error"] if path.startswith("/v2/") else _error(response)["message"])
    if status == 405:
        assert response.headers["allow"] in ("POST", "GET, HEAD")


def test_probes_answer_head_and_refuse_trace(server):
    for probe in ("/healthz", "/readyz", "/metrics"):
        head = httpx.head(f"{server.url}{probe}", timeout=10)
        assert (head.status_code, head.content) == (200, b"")
    with socket.create_connection(_address(server), timeout=10) as sock:
        sock.sendall(b"TRACE /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, body = _read_response(sock)
    assert status == 405
    assert "TRACE not allowed on /healthz" in json.loads(body)["message"]


def test_a_declared_body_over_64_mb_is_refused_before_it_is_sent(server):
    with socket.create_connection(_address(server), timeout=10) as sock:
        sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: {65 * 2**20}\r\n\r\n".encode())
        status, body = _read_response(sock)
    assert status == 413
    assert "body larger than" in json.loads(body)["message"]


def test_an_8_mb_body_does_not_freeze_healthz(server):
    # 8 MB of dataframe_split, far over max_records: counted before any row is built, and parsed off
    # the event loop. orjson holds the GIL while it parses, so /healthz may wait about one parse
    # (measured here, on this machine's load), never the row building that used to follow it.
    from modelyard.deploy.serving.errors import RequestError
    from modelyard.deploy.serving.records import request_records

    rows = [[0.123456789] * 4] * 200_000
    body = json.dumps({"dataframe_split": {"columns": NAMES, "data": rows}}).encode()
    assert len(body) > 8 * 2**20
    started = time.perf_counter()
    with pytest.raises(RequestError):
        request_records(body, MAX_RECORDS, mlflow_format=True)
    one_parse = time.perf_counter() - started
    result: dict[str, httpx.Response] = {}
    sender = threading.Thread(
        target=lambda: result.setdefault("r", httpx.post(f"{server.url}{INVOKE}", content=body, timeout=60))
    )
    sender.start()
    worst = 0.0
    while sender.is_alive():
        started = time.perf_counter()
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
        worst = max(worst, time.perf_counter() - started)
    sender.join()
    assert result["r"].status_code == 413
    assert "200000 records" in _error(result["r"])["message"]
    assert worst < 2 * one_parse + 0.5, (
        f"/healthz waited {worst:.2f}s behind the large body (one parse: {one_parse:.2f}s)"
    )


# ---------------------------------------------------------------------------- admin API


@pytest.mark.parametrize(
    "headers",
    [
        None,
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ],
    ids=["no header", "wrong token", "token plus a char", "token prefix", "basic scheme", "no scheme"],
)
@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_admin_refuses_missing_or_wrong_tokens(server, models, method, headers):
    before = _active_digest(server)
    content = json.dumps(_plan(models["v2"])).encode() if method == "PUT" else None
    response = httpx.request(method, f"{server.url}/admin/plan", content=content, headers=headers, timeout=10)
    assert response.status_code == 401
    assert "Authorization: Bearer <token>" in _error(response)["message"]
    assert "plan" not in response.json()
    time.sleep(0.3)  # a PUT that slipped through would be loading now
    assert _active_digest(server) == before != parse_plan(_plan(models["v2"])).digest()


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_without_a_token_the_admin_api_is_off(open_server, models, method):
    content = json.dumps(_plan(models["v2"])).encode() if method == "PUT" else None
    for headers in (None, {"Authorization": "Bearer"}, {"Authorization": "Bearer anything"}):
        response = httpx.request(method, f"{open_server.url}/admin/plan", content=content, headers=headers)
        assert response.status_code == 403
        assert "admin API is off" in _error(response)["message"]
        assert "MODELYARD_SERVE_ADMIN_TOKEN" in _error(response)["message"]
    assert httpx.post(f"{open_server.url}{PREDICT}", json=RECORD).json()["version"] == "1"


def test_admin_with_the_token_reads_the_plan_and_refuses_other_methods(server):
    assert httpx.get(f"{server.url}/admin/plan", headers=ADMIN).json()["digest"].startswith("sha256:")
    response = httpx.delete(f"{server.url}/admin/plan", headers=ADMIN)
    assert response.status_code == 405
    assert "DELETE not allowed on /admin/plan; use GET or PUT" in _error(response)["message"]
    assert response.headers["allow"] == "GET, PUT"


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (b"services: [", "not valid YAML/JSON"),
        (b"- just\n- a list\n", "top level must be a mapping"),
        (b'{"services": []}', "services: must have at least 1 item"),
    ],
)
def test_invalid_plans_are_422_naming_the_problem(server, body, names):
    response = _put(server, body)
    assert response.status_code == 422
    assert names in _error(response)["message"]


@pytest.mark.parametrize("path", ["/etc/passwd", "/nonexistent/x.jsonl", "../escape.jsonl", "a/../../b.jsonl"])
def test_a_plan_cannot_write_outside_the_log_dir(server, models, path):
    response = _put(server, _plan(models["v1"], prediction_log={"path": path}))
    assert response.status_code == 422
    message = _error(response)["message"]
    assert "prediction_log.path" in message
    assert "must be a relative folder" in message
    assert "No such file" not in message
    assert "exists" not in message
    assert not (_workdir(server) / "escape.jsonl").exists()


def test_a_symlink_out_of_the_log_dir_is_refused(server, models):
    workdir = _workdir(server)
    (workdir / "logs" / "out").symlink_to(workdir / "outside")
    response = _put(server, _plan(models["v1"], prediction_log={"path": "out/stolen.jsonl"}))
    assert response.status_code == 422
    assert "inside the server's prediction-log directory" in _error(response)["message"]
    assert list((workdir / "outside").iterdir()) == []


def test_a_log_path_that_is_a_file_is_rejected_without_the_server_path(server, models):
    (_workdir(server) / "logs" / "afile").write_text("")
    response = _put(server, _plan(models["v2"], prediction_log={"path": "afile"}))
    assert response.status_code == 422
    message = _error(response)["message"]
    assert "prediction_log.path: 'afile' is a file" in message
    assert str(_workdir(server)) not in message
    assert httpx.post(f"{server.url}{PREDICT}", json=RECORD).json()["version"] == "1"  # old plan serves
    assert len(list((_workdir(server) / "cache").glob("modelyard-model-*"))) == 1  # v2 was never loaded


def test_an_unknown_model_is_rejected_with_a_one_line_typed_reason(server):
    response = _put(server, _plan("models:/adversarial/999"))
    assert response.status_code == 409
    assert "has no version 999" in response.json()["error"]
    failed = httpx.get(f"{server.url}/readyz").json()["models"]["models:/adversarial/999"]
    assert failed["state"] == "failed"
    assert failed["error_type"] == "ModelMissing"
    assert "\n" not in failed["last_error"]
    assert "Traceback" not in failed["last_error"]
    assert "Traceback (most recent call last)" in server.log_tail(400)  # the full trace is in the log only


def test_hundreds_of_unknown_models_do_not_grow_readyz_or_metrics(server):
    for i in range(60):
        assert _put(server, _plan(f"models:/nobody-{i}/1")).status_code == 409
    readyz = httpx.get(f"{server.url}/readyz").json()
    metrics = httpx.get(f"{server.url}/metrics").text
    failed = [uri for uri in readyz["models"] if uri.startswith("models:/nobody-")]
    assert 0 < len(failed) <= 32
    assert "models:/nobody-59/1" in failed
    assert "models:/nobody-0/1" not in failed
    series = [line for line in metrics.splitlines() if line.startswith("modelyard_model_load_failures_total{")]
    assert len(series) <= 33  # the 32 kept failures (+ at most one other model)
    assert 'model="models:/nobody-0/1"' not in metrics


def test_one_version_named_with_leading_zeros_is_one_model_and_swaps_clean_up(server, models):
    cache = _workdir(server) / "cache"
    base = _plan(models["v1"], prediction_log={"path": "p", "sample_rate": 1.0})
    uri = models["v1"]
    padded = uri.rsplit("/", 1)[0] + "/000" + uri.rsplit("/", 1)[1]
    response = _put(server, {**base, "services": [{**base["services"][0], "variants": [
        {"name": "champion", "model_uri": padded, "weight": 100}]}]})  # fmt: skip
    assert response.status_code == 200
    assert response.json().get("unchanged") is True  # same plan as the live one once normalised
    for plan_uri in (models["v2"], models["v1"], models["v2"]):
        assert _put(server, _plan(plan_uri)).json()["status"] == "active"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(list(cache.glob("modelyard-model-*"))) > 1:
        time.sleep(0.2)
    assert len(list(cache.glob("modelyard-model-*"))) == 1  # only the live model's download is left
    metrics = httpx.get(f"{server.url}/metrics").text
    assert len([line for line in metrics.splitlines() if line.startswith("modelyard_plan_active{")]) == 1


# ---------------------------------------------------------------------------- transport


def _address(server: ServerProcess) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split(b" ")[1]), body


def _slow_client(server: ServerProcess, results: list[tuple[float, int | None]], body: bool) -> None:
    started = time.monotonic()
    status = None
    with socket.create_connection(_address(server), timeout=15) as sock:
        try:
            if body:  # headers arrive whole, the body trickles
                sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n".encode())
            for piece in (b"POST /v1/pre", b"dict/bench/local", b" HTTP/1.1\r\n", b"X-A: 1\r\n", b"X-B: 2\r\n") * 4:
                sock.sendall(piece)
                time.sleep(0.5)
            sock.sendall(b"\r\n")
        except OSError:
            pass
        try:
            status, _ = _read_response(sock)
        except (OSError, ValueError, IndexError):
            status = None
    results.append((time.monotonic() - started, status))


@pytest.mark.parametrize("body", [False, True], ids=["slow headers", "slow body"])
def test_slowloris_connections_are_cut_at_the_read_deadline(server, body):
    results: list[tuple[float, int | None]] = []
    threads = [threading.Thread(target=_slow_client, args=(server, results, body)) for _ in range(40)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    assert httpx.post(f"{server.url}{PREDICT}", json=RECORD, timeout=5).status_code == 200  # others still served
    for thread in threads:
        thread.join(30)
    assert len(results) == 40
    assert max(seconds for seconds, _ in results) < 5, results  # would be ~10 s if held to the end
    assert {status for _, status in results} <= {408, None}
    assert 408 in {status for _, status in results}


def test_the_408_names_the_deadline(server):
    with socket.create_connection(_address(server), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        status, body = _read_response(sock)
    assert status == 408
    assert f"not received within {REQUEST_TIMEOUT_S:g}s" in json.loads(body)["message"]


def test_a_later_request_on_a_kept_alive_connection_gets_its_own_deadline(server):
    """One timer a connection: a request answered, then a stalled one is cut a deadline after its first byte."""
    with socket.create_connection(_address(server), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(sock)[0] == 200
        time.sleep(REQUEST_TIMEOUT_S * 0.6)  # the first request's timer is still pending
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # ...and the rest never comes
        status, body = _read_response(sock)
        waited = time.monotonic() - started
    assert status == 408
    assert f"not received within {REQUEST_TIMEOUT_S:g}s" in json.loads(body)["message"]
    # Not cut by the first request's timer (due 0.4 s after this one began): its own deadline counts.
    assert waited >= REQUEST_TIMEOUT_S * 0.9, waited


def test_oversized_headers_get_431(server):
    with socket.create_connection(_address(server), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        status, body = _read_response(sock)
    assert status == 431
    assert "headers exceed" in json.loads(body)["message"]


def test_requests_over_the_concurrency_limit_get_503_and_probes_still_answer(server):
    head = f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{".encode()
    in_flight = [socket.create_connection(_address(server), timeout=10) for _ in range(LIMIT_CONCURRENCY)]
    try:
        for sock in in_flight:  # each request waits for the rest of its body (cut at the 1 s deadline)
            sock.sendall(head)
        time.sleep(0.1)
        refused = httpx.post(f"{server.url}{PREDICT}", json=RECORD, timeout=10)
        probes = [httpx.get(f"{server.url}{p}", timeout=10).status_code for p in ("/healthz", "/metrics")]
    finally:
        for sock in in_flight:
            sock.close()
    assert refused.status_code == 503, refused.text
    assert f"more than {LIMIT_CONCURRENCY} requests in flight" in _error(refused)["message"]
    assert probes == [200, 200]  # a busy pod is not restarted by its liveness probe
    deadline = time.monotonic() + 5
    while httpx.post(f"{server.url}{PREDICT}", json=RECORD, timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the server did not recover after the requests ended"
        time.sleep(0.1)


# ---------------------------------------------------------------------------- model artifacts


def _register_folder(name: str, folder: Path) -> str:
    """Register ``folder`` as it is (anyone who can register a version can write any of its files)."""
    import mlflow

    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(folder), "model")
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    return f"models:/{name}/{version.version}"


def _sklearn_folder(tmp_path: Path, fmt: str = "skops", spec: dict[str, Any] | None = None) -> Path:
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    frame = pd.DataFrame(np.random.default_rng(0).normal(size=(20, 4)), columns=NAMES)
    extra = []
    if spec is not None:
        (tmp_path / "feature_spec.json").write_text(json.dumps(spec))
        extra = [str(tmp_path / "feature_spec.json")]
    folder = tmp_path / "model"
    mlflow.sklearn.save_model(
        LinearRegression().fit(frame, frame.sum(axis=1)), str(folder), input_example=frame.head(2),
        serialization_format=fmt, pip_requirements=[], extra_files=extra or None,
    )  # fmt: skip
    return folder


def _popen_spec() -> dict[str, Any]:
    from modelyard.core.featurespec import Calendar, FeatureDef, FeatureSpec

    columns = {"ts": "timestamp", **dict.fromkeys(NAMES, "float")}
    features = tuple(FeatureDef(n, "column") for n in NAMES[:3])
    features += (FeatureDef("f03", "function", function="math:fsum", inputs=("f00",)),)
    stored = FeatureSpec("bench", "ts", columns, features).fit({}, Calendar("X", "UTC", ())).to_dict()
    stored["features"][3]["function"] = "subprocess:Popen"  # its inputs would become the argv
    return stored


def _refused(server: ServerProcess, uri: str) -> tuple[httpx.Response, dict[str, Any]]:
    response = _put(server, _plan(uri))
    failed = httpx.get(f"{server.url}/readyz", timeout=10).json()["models"][uri]
    return response, failed


def test_a_spec_naming_subprocess_popen_fails_the_load_and_runs_nothing(server, tmp_path):
    spec = _popen_spec()
    uri = _register_folder("adversarial-popen", _sklearn_folder(tmp_path, spec=spec))
    before = _active_digest(server)
    response, failed = _refused(server, uri)
    assert response.status_code == 409, response.text
    assert failed["error_type"] == "FunctionNotAllowed"
    assert "'subprocess:Popen' is never run" in failed["last_error"]
    assert "MODELYARD_SERVE_ALLOWED_FUNCTION_MODULES" in failed["last_error"]
    assert _active_digest(server) == before  # the old plan serves


def test_a_pickled_model_is_not_loaded_by_default(server, tmp_path):
    uri = _register_folder("adversarial-pickle", _sklearn_folder(tmp_path, fmt="cloudpickle"))
    response, failed = _refused(server, uri)
    assert response.status_code == 409, response.text
    assert failed["error_type"] == "PickleNotAllowed"
    assert "MODELYARD_SERVE_ALLOW_PICKLE=1" in failed["last_error"]


@pytest.mark.parametrize("where", ["../../../../../../etc/passwd", "/etc/hostname"])
def test_a_model_file_outside_its_folder_is_refused_without_paths_or_content(server, tmp_path, where):
    import yaml

    folder = _sklearn_folder(tmp_path)
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    mlmodel["flavors"]["sklearn"]["pickled_model"] = where
    (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    uri = _register_folder("adversarial-path", folder)
    response, failed = _refused(server, uri)
    assert response.status_code == 409, response.text
    assert failed["error_type"] == "OutsideModelDir"
    assert f"'{where}' is not a file inside the model's folder" in failed["last_error"]
    readyz = httpx.get(f"{server.url}/readyz", timeout=10).text
    assert str(_workdir(server) / "cache") not in readyz  # the model cache (the plan file path is shown)
    assert "root:" not in readyz


# ---------------------------------------------------------------------------- the prediction log


def _dropped_samples(server: ServerProcess) -> float:
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    line = next(
        (x for x in metrics.splitlines() if x.startswith('modelyard_prediction_log_samples_total{outcome="dropped"}')),
        "",
    )
    return float(line.split()[-1]) if line else 0.0


def test_a_junk_field_is_trimmed_from_the_prediction_log_whose_files_are_0600(server):
    import os

    before = _dropped_samples(server)
    junk = {**RECORD, "junk": os.urandom(1_000_000).hex(), **{f"extra{i}": i for i in range(40)}}
    for _ in range(3):
        assert httpx.post(f"{server.url}{PREDICT}", json=junk, timeout=30).status_code == 200
    time.sleep(1.0)  # the writer thread writes off the request path
    files = [f for f in (_workdir(server) / "logs" / "p").rglob("*") if f.name.endswith((".jsonl.gz", ".part"))]
    assert files
    assert {oct(f.stat().st_mode & 0o777) for f in files} == {"0o600"}
    assert sum(f.stat().st_size for f in files) < 500_000  # not 3 x 2 MB of incompressible junk
    assert _dropped_samples(server) == before  # trimmed (kept, small), not dropped for its size
