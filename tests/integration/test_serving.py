"""The serving runtime end to end: `modelyard serve` processes, real HTTP, a real MLflow server.

Models are registered on the session's `mlflow server`: xgboost classifiers (several
versions), a scikit-learn regressor, and pyfunc models (from code) that sleep, raise on
demand, or always raise (a model that cannot warm up).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from modelyard.deploy.serving.plan import parse_plan
from tests.bench.serving import ServerProcess, feature_names, register_xgboost

ADMIN_TOKEN = "serving-test-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
N_FEATURES = 5
NAMES = feature_names(N_FEATURES)
RECORD = {name: 0.25 * i for i, name in enumerate(NAMES)}

SLEEPY = """
import time
import mlflow


class Sleepy(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        time.sleep(0.3)
        return [0.5] * len(model_input)


mlflow.models.set_model(Sleepy())
"""

RAISES_ON_DEMAND = """
import mlflow


class RaisesOnDemand(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        if (model_input["f00"] > 100).any():
            raise RuntimeError("shadow exploded on purpose")
        return [0.1] * len(model_input)


mlflow.models.set_model(RaisesOnDemand())
"""

ALWAYS_RAISES = """
import mlflow


class Broken(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        raise ValueError("this model is broken")


mlflow.models.set_model(Broken())
"""


def _register_pyfunc(name: str, code: str, workdir: Path) -> str:
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature

    path = workdir / f"{name}.py"
    path.write_text(code)
    frame = pd.DataFrame(np.random.default_rng(0).normal(size=(3, N_FEATURES)), columns=NAMES)
    with mlflow.start_run(run_name=name):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(path),
            registered_model_name=name,
            signature=infer_signature(frame, np.zeros(3)),
            input_example=frame,
        )
    return f"models:/{name}/{info.registered_model_version}"


def _register_sklearn_regressor(name: str) -> str:
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(300, N_FEATURES)), columns=NAMES)
    model = Ridge().fit(frame, 12 + 2 * frame["f00"])
    with mlflow.start_run(run_name=name):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=name,
            signature=infer_signature(frame, model.predict(frame)),
            input_example=frame.head(3),
            serialization_format="skops",  # the server loads no pickles by default
        )
    return f"models:/{name}/{info.registered_model_version}"


@pytest.fixture(scope="module")
def models(mlflow_server, tmp_path_factory) -> dict[str, str]:
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.url)
    workdir = tmp_path_factory.mktemp("serving-models")
    small = {"n_features": N_FEATURES, "n_trees": 20, "rows": 400}
    return {
        "v1": register_xgboost("serving-acceptance", seed=0, **small),
        "v2": register_xgboost("serving-acceptance", seed=1, **small),
        "v3": register_xgboost("serving-acceptance", seed=2, **small),
        "eta": _register_sklearn_regressor("serving-eta"),
        "sleepy": _register_pyfunc("serving-sleepy", SLEEPY, workdir),
        "raises": _register_pyfunc("serving-raises", RAISES_ON_DEMAND, workdir),
        "broken": _register_pyfunc("serving-broken", ALWAYS_RAISES, workdir),
    }


def _variants(*entries):
    return [{"name": n, "model_uri": u, "weight": w} for n, u, w in entries]


def _main_plan(models: dict[str, str], log_path: str) -> dict:
    return {
        "version": 1,
        "max_records": 50,
        "batching": {"max_batch_size": 32, "max_wait_ms": 1},
        "prediction_log": {"path": str(log_path), "sample_rate": 1.0, "rotate_seconds": 1},
        # Tuesday 2026-04-14 18:30 in Bangkok (11:30 UTC): Songkran, and a weekday evening.
        "clock_override": "2026-04-14T11:30:00+00:00",
        "services": [
            {
                "family": "driver_acceptance",
                "region": "surabaya",
                "timezone": "Asia/Jakarta",
                "variants": _variants(("champion", models["v1"], 70), ("challenger", models["v2"], 30)),
            },
            {
                "family": "driver_acceptance",
                "region": "jakarta",
                "timezone": "Asia/Jakarta",
                "variants": _variants(("champion", models["v1"], 100)),
                "shadows": [
                    {"name": "sleepy", "model_uri": models["sleepy"]},
                    {"name": "raises", "model_uri": models["raises"]},
                ],
            },
            {
                "family": "driver_acceptance",
                "region": "bangkok",
                "timezone": "Asia/Bangkok",
                "variants": _variants(
                    ("champion", models["v1"], 100), ("festival", models["v3"], 0), ("peak", models["v2"], 0)
                ),
                "rules": [
                    {
                        "name": "songkran",
                        "variant": "festival",
                        "dates": [{"start": "2026-04-12", "end": "2026-04-16"}],
                    },
                    {
                        "name": "weekday_evening",
                        "variant": "peak",
                        "weekdays": ["mon", "tue", "wed", "thu", "fri"],
                        "hours": {"start": 17, "end": 21},
                    },
                ],
            },
            {
                "family": "pickup_eta",
                "region": "jakarta",
                "timezone": "Asia/Jakarta",
                "variants": _variants(("champion", models["eta"], 100)),
            },
        ],
    }


@pytest.fixture(scope="module")
def main_server(models, mlflow_server, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("serving-main")
    plan_path = workdir / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(_main_plan(models, "predictions")))
    server = ServerProcess.start(plan_path, mlflow_server.url, env={"MODELYARD_SERVE_LOG_DIR": str(workdir / "logs")})
    try:
        server.wait_ready(timeout=180)
        yield server
    finally:
        server.stop()


def _predict(server, path, body, **kwargs):
    return httpx.post(f"{server.url}{path}", json=body, timeout=10, **kwargs)


def test_readyz_details_every_warm_model_and_the_plan_digest(main_server, models):
    response = httpx.get(f"{main_server.url}/readyz")
    assert response.status_code == 200
    detail = response.json()
    assert detail["plan"]["active_digest"] == parse_plan(yaml.safe_load(main_server.plan_path.read_text())).digest()
    assert set(detail["models"]) == {models[k] for k in ("v1", "v2", "v3", "eta", "sleepy", "raises")}
    flavors = {m["uri"]: m["flavor"] for m in detail["models"].values()}
    assert flavors[models["v1"]] == "xgboost"
    assert flavors[models["eta"]] == "sklearn"
    assert flavors[models["sleepy"]] == "pyfunc"
    for model in detail["models"].values():
        assert model["state"] == "ready"
        assert model["load_seconds"] > 0
        assert model["warmup_seconds"] >= 0
    assert httpx.get(f"{main_server.url}/healthz").json()["status"] == "alive"


def test_predictions_carry_model_version_and_variant(main_server, models):
    classifier = _predict(main_server, "/v1/predict/driver_acceptance/surabaya", {"records": [RECORD, RECORD]}).json()
    assert classifier["model"] == "serving-acceptance"
    assert classifier["variant"] in {"champion", "challenger"}
    assert classifier["version"] == {"champion": "1", "challenger": "2"}[classifier["variant"]]
    assert len(classifier["predictions"]) == 2
    assert all(0 <= p <= 1 for p in classifier["predictions"])
    eta = _predict(main_server, "/v1/predict/pickup_eta/jakarta", RECORD).json()
    assert eta["model"] == "serving-eta"
    assert 5 < eta["predictions"][0] < 20  # a regressor's value, not a probability
    mlflow_style = _predict(
        main_server,
        "/invocations/pickup_eta/jakarta",
        {"dataframe_split": {"columns": NAMES, "data": [list(RECORD.values())]}},
    ).json()
    assert mlflow_style == {"predictions": eta["predictions"]}


async def _post_many(url: str, bodies: list[bytes], connections: int = 16) -> list[tuple[int, bytes]]:
    """POST every body over ``connections`` keep-alive connections (a minimal HTTP/1.1 client:
    httpx costs ~5 ms of client CPU per request, which would make this test take minutes)."""
    parsed = httpx.URL(url)
    results: list[tuple[int, bytes]] = [(0, b"")] * len(bodies)
    indices = iter(range(len(bodies)))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
        try:
            for i in indices:
                head = f"POST {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.host}\r\n"
                head += f"Content-Type: application/json\r\nContent-Length: {len(bodies[i])}\r\n\r\n"
                writer.write(head.encode() + bodies[i])
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                results[i] = (int(status_line.split()[1]), await reader.readexactly(length))
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return results


def test_weighted_split_over_10000_requests_is_within_2_percent_and_sticky(main_server):
    url = f"{main_server.url}/v1/predict/driver_acceptance/surabaya"
    bodies = [json.dumps({**RECORD, "customer_id": f"customer-{i}"}).encode() for i in range(10_000)]
    results = asyncio.run(_post_many(url, bodies))
    assert {status for status, _ in results} == {200}
    variants = [json.loads(body)["variant"] for _, body in results]
    challenger_share = variants.count("challenger") / len(variants) * 100
    assert abs(challenger_share - 30) <= 2, challenger_share
    again = [_predict(main_server, "/v1/predict/driver_acceptance/surabaya", json.loads(bodies[i])) for i in range(20)]
    assert [r.json()["variant"] for r in again] == variants[:20]
    by_header = _predict(
        main_server, "/v1/predict/driver_acceptance/surabaya", RECORD, headers={"x-routing-key": "customer-3"}
    )
    assert by_header.json()["variant"] == variants[3]


def test_time_window_rules_use_the_fixed_clock_in_the_region_time_zone(main_server):
    # The plan's clock is Tuesday 18:30 in Bangkok during Songkran: the festival rule comes first.
    response = _predict(main_server, "/v1/predict/driver_acceptance/bangkok", {**RECORD, "customer_id": "c1"}).json()
    assert (response["variant"], response["version"], response["routed_by"]) == ("festival", "3", "rule:songkran")


def test_shadows_that_sleep_or_raise_never_delay_or_fail_the_response(main_server, models):
    exploding = {**RECORD, "f00": 500.0}
    latencies = []
    for _ in range(20):
        started = time.perf_counter()
        response = _predict(main_server, "/v1/predict/driver_acceptance/jakarta", exploding)
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
        assert response.json()["variant"] == "champion"
    assert max(latencies) < 0.25, latencies  # the sleepy shadow takes 0.3 s per request
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        metrics = httpx.get(f"{main_server.url}/metrics").text
        errors = _sample(metrics, "modelyard_shadow_predictions_total", shadow="raises", status="error")
        sleepy_ok = _sample(metrics, "modelyard_shadow_predictions_total", shadow="sleepy", status="ok")
        if errors >= 20 and sleepy_ok >= 3:
            break
        time.sleep(0.3)
    assert errors >= 20
    assert sleepy_ok >= 3
    deadline = time.monotonic() + 30  # the writer publishes a file once it is a second old
    while time.monotonic() < deadline:
        log_lines = _log_lines(Path(_log_path(main_server)))
        shadow_entries = [e for e in log_lines if e["kind"] == "shadow" and e["shadow"] == "sleepy"]
        if shadow_entries and any(e["kind"] == "prediction" for e in log_lines):
            break
        time.sleep(0.5)
    assert shadow_entries
    assert shadow_entries[0]["shadow_predictions"] == [0.5]
    assert shadow_entries[0]["predictions"]
    assert any(e["kind"] == "prediction" and e["region"] == "jakarta" for e in log_lines)
    v1_name = models["v1"].split("/")[1]  # a line names the registered model that answered (a pooled one too)
    jakarta = ("prediction", "driver_acceptance", "jakarta")
    answered = {e.get("model") for e in log_lines if (e["kind"], e["family"], e["region"]) == jakarta}
    assert answered == {v1_name}


def test_a_probe_is_answered_and_counted_but_never_logged_or_shadowed(main_server):
    # A deploy's smoke test sends a row of zeros: it must not reach drift, live quality or the shadows' diffs.
    probe = {"X-Modelyard-Probe": "smoke", "X-Request-Id": "probe-1"}
    path = "/v1/predict/driver_acceptance/jakarta"  # a service with shadows
    before = _sample(httpx.get(f"{main_server.url}/metrics").text, "modelyard_requests_total", region="jakarta")
    answered = _predict(main_server, path, RECORD, headers=probe)
    client = _predict(main_server, path, RECORD, headers={"X-Request-Id": "client-1"})

    assert answered.status_code == client.status_code == 200
    assert answered.json()["predictions"] == client.json()["predictions"]
    after = _sample(httpx.get(f"{main_server.url}/metrics").text, "modelyard_requests_total", region="jakarta")
    assert after - before == 2  # the server's own metrics count it
    deadline = time.monotonic() + 30  # the writer publishes a file once it is a second old
    while time.monotonic() < deadline:
        ids = {e.get("request_id") for e in _log_lines(Path(_log_path(main_server)))}
        if "client-1" in ids:
            break
        time.sleep(0.5)
    assert "client-1" in ids
    time.sleep(1.5)  # the shadows run off the request path: give a wrongly queued one time to land
    assert "probe-1" not in {e.get("request_id") for e in _log_lines(Path(_log_path(main_server)))}


MALFORMED = [
    ("not json", b'{"f00": ', 400, "body"),
    ("empty body", b"", 400, "body"),
    ("json string", b'"hello"', 400, "body"),
    ("json number", b"42", 400, "body"),
    ("NaN literal", b'{"f00": NaN}', 400, "body"),
    ("number out of double range", b'{"f00": 1e400}', 400, "body"),
    ("empty list", b"[]", 422, "records"),
    ("empty records", b'{"records": []}', 422, "records"),
    ("records not a list", b'{"records": {"f00": 1}}', 400, "records"),
    ("record not an object", b"[1, 2]", 422, "records[0]"),
    ("missing feature", json.dumps({k: v for k, v in RECORD.items() if k != "f02"}).encode(), 422, "records[0].f02"),
    ("string value", json.dumps({**RECORD, "f01": "1.5"}).encode(), 422, "records[0].f01"),
    ("NaN string", json.dumps({**RECORD, "f01": "NaN"}).encode(), 422, "records[0].f01"),
    ("inf string", json.dumps({**RECORD, "f03": "Infinity"}).encode(), 422, "records[0].f03"),
    ("boolean value", json.dumps({**RECORD, "f00": True}).encode(), 422, "records[0].f00"),
    ("null value", json.dumps({**RECORD, "f04": None}).encode(), 422, "records[0].f04"),
    ("nested object", json.dumps({**RECORD, "f00": {"value": 1}}).encode(), 422, "records[0].f00"),
    ("list value", json.dumps({**RECORD, "f00": [1, 2]}).encode(), 422, "records[0].f00"),
    ("float32 overflow", json.dumps({**RECORD, "f00": 1e39}).encode(), 422, "records[0].f00"),
    ("second record bad", json.dumps([RECORD, {**RECORD, "f02": "x"}]).encode(), 422, "records[1].f02"),
    ("too many records", json.dumps([RECORD] * 51).encode(), 413, "records"),
    ("routing key object", json.dumps({**RECORD, "customer_id": {"id": 1}}).encode(), 422, "records[0].customer_id"),
]


@pytest.mark.parametrize(("case", "body", "status", "field"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_bodies_get_a_4xx_naming_the_cause(main_server, case, body, status, field):
    response = httpx.post(f"{main_server.url}/v1/predict/driver_acceptance/surabaya", content=body, timeout=10)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["field"] == field
    assert error["message"]
    assert httpx.get(f"{main_server.url}/healthz").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("POST", "/v1/predict/no_such_family/jakarta", RECORD, 404, "family"),
        ("POST", "/v1/predict/driver_acceptance/atlantis", RECORD, 404, "region"),
        ("POST", "/invocations/pickup_eta/jakarta", {"dataframe": RECORD}, 400, "body"),
        ("POST", "/invocations/pickup_eta/jakarta", {"dataframe_split": {"columns": ["f00"], "data": [[1, 2]]}}, 400,
         "dataframe_split.data[0]"),
        ("POST", "/invocations/pickup_eta/jakarta", {"inputs": {"f00": [1.0]}}, 422, "records[0].f01"),
    ],
)  # fmt: skip
def test_unknown_services_and_bad_mlflow_bodies_are_4xx(main_server, method, path, body, status, field):
    response = httpx.request(method, f"{main_server.url}{path}", json=body, timeout=10)
    assert response.status_code == status, response.text
    assert response.json()["field"] == field


def test_bad_requests_are_counted_and_the_server_stays_up(main_server):
    assert httpx.get(f"{main_server.url}/v1/predict/driver_acceptance/surabaya").status_code == 405
    metrics = httpx.get(f"{main_server.url}/metrics").text
    assert _sample(metrics, "modelyard_requests_total", region="surabaya", status="bad_input") >= 1
    assert _sample(metrics, "modelyard_requests_total", region="surabaya", status="ok") >= 10_000
    assert "modelyard_batch_rows_bucket" in metrics
    assert "modelyard_model_load_seconds" in metrics
    assert _predict(main_server, "/v1/predict/driver_acceptance/surabaya", RECORD).status_code == 200


# ---------------------------------------------------------------------------- swaps


@pytest.fixture(scope="module")
def swap_server(models, mlflow_server, tmp_path_factory):
    plan_path = tmp_path_factory.mktemp("serving-swaps") / "plan.json"
    plan_path.write_text(json.dumps(_swap_plan(models["v1"], models["v2"], 90)))
    server = ServerProcess.start(
        plan_path, mlflow_server.url, poll_seconds=0.1, env={"MODELYARD_SERVE_ADMIN_TOKEN": ADMIN_TOKEN}
    )
    try:
        server.wait_ready(timeout=180)
        yield server
    finally:
        server.stop()


def _swap_plan(champion: str, canary: str, champion_weight: int, **extra) -> dict:
    return {
        "version": 1,
        "services": [
            {
                "family": "driver_acceptance",
                "region": "surabaya",
                "timezone": "Asia/Jakarta",
                "variants": _variants(
                    ("champion", champion, champion_weight), ("canary", canary, 100 - champion_weight)
                ),
            }
        ],
        **extra,
    }


class Load:
    """Client threads hammering one endpoint, recording every failure."""

    def __init__(self, url: str, threads: int = 6) -> None:
        self.url = url
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.versions: list[str] = []
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                try:
                    response = client.post(self.url, json=RECORD)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if response.status_code == 200:
                    self.ok += 1
                    self.versions.append(response.json()["version"])
                else:
                    self.failures.append(f"{response.status_code} {response.text}")

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(15)


def _put_plan(server, plan: dict, wait: bool = True) -> httpx.Response:
    return httpx.put(
        f"{server.url}/admin/plan",
        params={"wait": "1"} if wait else None,
        content=json.dumps(plan),
        headers=ADMIN,
        timeout=120,
    )


def _start_from(server, plan: dict) -> str:
    """Put the module's swap server on a known plan (tests share the server process)."""
    response = _put_plan(server, plan)
    assert response.json()["status"] == "active", response.text
    return str(response.json()["digest"])


def test_hot_swaps_under_concurrent_load_fail_no_request(swap_server, models):
    url = f"{swap_server.url}/v1/predict/driver_acceptance/surabaya"
    _start_from(swap_server, _swap_plan(models["v1"], models["v2"], 90))
    applied_before = httpx.get(f"{swap_server.url}/readyz").json()["plan"]["swaps"]["applied"]
    plans = [
        _swap_plan(models["v1"], models["v2"], 50),  # weight change: both models reused, instant
        _swap_plan(models["v3"], models["v2"], 100),  # a model that is not loaded yet
        _swap_plan(models["v1"], models["v3"], 90),  # and back (v1 was released, loads again)
    ]
    with Load(url) as load:
        time.sleep(0.5)
        for plan in plans:
            response = _put_plan(swap_server, plan)
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "active"
            time.sleep(0.7)
    assert load.failures == []
    assert load.ok > 100
    assert {"1", "2", "3"} <= set(load.versions)
    active = httpx.get(f"{swap_server.url}/admin/plan", headers=ADMIN).json()
    assert active["digest"] == parse_plan(plans[-1]).digest()
    assert active["plan"]["services"][0]["variants"][1]["model_uri"] == models["v3"]
    readyz = httpx.get(f"{swap_server.url}/readyz").json()
    assert set(readyz["models"]) == {models["v1"], models["v3"]}  # v2 released
    assert readyz["plan"]["swaps"]["applied"] == applied_before + 3


def test_a_plan_with_a_broken_model_is_rejected_and_the_old_plan_keeps_serving(swap_server, models):
    url = f"{swap_server.url}/v1/predict/driver_acceptance/surabaya"
    good_digest = _start_from(swap_server, _swap_plan(models["v1"], models["v2"], 90))
    rejected_before = _sample(
        httpx.get(f"{swap_server.url}/metrics").text, "modelyard_plan_swaps_total", result="rejected"
    )
    broken = _swap_plan(models["v1"], models["broken"], 90)
    with Load(url, threads=3) as load:
        response = _put_plan(swap_server, broken)
        missing = _put_plan(swap_server, _swap_plan(models["v1"], "models:/serving-acceptance/999", 90))  # fmt: skip
    assert response.status_code == 409
    assert response.json()["status"] == "rejected"
    assert "this model is broken" in response.json()["error"]
    assert missing.status_code == 409
    assert "has no version 999" in missing.json()["error"]
    assert load.failures == []
    readyz = httpx.get(f"{swap_server.url}/readyz")
    assert readyz.status_code == 200
    detail = readyz.json()
    assert detail["plan"]["active_digest"] == good_digest
    missing_plan = _swap_plan(models["v1"], "models:/serving-acceptance/999", 90)
    assert detail["plan"]["last_rejected"]["digest"] == parse_plan(missing_plan).digest()
    assert detail["models"][models["broken"]]["state"] == "failed"
    assert "warm-up failed" in detail["models"][models["broken"]]["last_error"]
    metrics = httpx.get(f"{swap_server.url}/metrics").text
    assert _sample(metrics, "modelyard_plan_swaps_total", result="rejected") == rejected_before + 2
    assert _sample(metrics, "modelyard_model_load_failures_total", model=models["broken"]) == 1
    assert "plan rejected" in swap_server.log_tail(200)
    assert _predict(swap_server, "/v1/predict/driver_acceptance/surabaya", RECORD).json()["version"] in {"1", "2"}


def test_a_plan_file_change_is_picked_up_and_invalid_ones_are_refused(swap_server, models):
    from modelyard.core.storage import write_bytes_atomic

    # Wednesday 18:30 in Jakarta (11:30 UTC): the weekday-evening rule sends traffic to v3.
    evening = _swap_plan(models["v1"], models["v2"], 100, clock_override="2026-05-06T11:30:00+00:00")
    evening["services"][0]["variants"].append({"name": "peak", "model_uri": models["v3"], "weight": 0})
    evening["services"][0]["rules"] = [
        {
            "name": "evening",
            "variant": "peak",
            "weekdays": ["mon", "tue", "wed", "thu", "fri"],
            "hours": {"start": 17, "end": 21},
        }
    ]
    write_bytes_atomic(swap_server.plan_path, yaml.safe_dump(evening).encode())
    swap_server.wait_ready(timeout=60, digest=parse_plan(evening).digest())
    routed = _predict(swap_server, "/v1/predict/driver_acceptance/surabaya", RECORD).json()
    assert (routed["variant"], routed["version"], routed["routed_by"]) == ("peak", "3", "rule:evening")

    write_bytes_atomic(swap_server.plan_path, b"services: [{family: x}]\n")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rejected = httpx.get(f"{swap_server.url}/readyz").json()["plan"]["last_rejected"]
        if rejected and "services[0]" in rejected["error"]:
            break
        time.sleep(0.1)
    assert "services[0].region: is required" in rejected["error"]
    assert _predict(swap_server, "/v1/predict/driver_acceptance/surabaya", RECORD).json()["version"] == "3"
    invalid = httpx.put(f"{swap_server.url}/admin/plan", content=b'{"services": []}', headers=ADMIN, timeout=10)
    assert invalid.status_code == 422
    assert "services: must have at least 1 item" in invalid.json()["message"]


# ---------------------------------------------------------------------------- helpers


def _log_path(server) -> str:
    relative = yaml.safe_load(server.plan_path.read_text())["prediction_log"]["path"]
    return str(server.plan_path.parent / "logs" / relative)  # MODELYARD_SERVE_LOG_DIR of main_server


def _log_lines(folder: Path) -> list[dict]:
    """Every line of the published prediction-log files under ``folder`` (any family/region/version)."""
    import gzip

    lines = []
    for path in sorted(folder.rglob("*.jsonl.gz")):
        with gzip.open(path, "rt") as handle:
            lines.extend(json.loads(line) for line in handle)
    return lines


def _sample(metrics: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in metrics.splitlines():
        if not line.startswith(name + "{"):
            continue
        label_text = line[line.index("{") + 1 : line.rindex("}")]
        found = dict(part.split("=", 1) for part in label_text.split(","))
        if all(found.get(k) == f'"{v}"' for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total
