"""What the chart renders, run against a real ``modelyard serve`` (no cluster runs here).

* **Alerts** (ADR 0034): a real Prometheus scrapes the server and evaluates the PrometheusRule that
  ``helm template`` renders. The scrape gives the series the labels the chart's ServiceMonitor would
  (``job`` = the release name, ``namespace``). Clients send good and refused (422) requests;
  Prometheus must fire the 422 alert with the version's labels, the latency alert (its threshold set
  to 0 here), and nothing about 500s. This proves the rules' selectors and label values
  (``status="bad_input"``) match what the server exports, which the chart tier checks on names only.
* **The Grafana dashboard**: every panel's query, with the variables of one selection filled in,
  runs on that Prometheus without error, and the request, latency and readiness panels show the
  server's series.
* **The ``helm test`` pod**: its command and arguments, as rendered, run against the server with the
  plan its ConfigMap mounts: it passes on the release's plan and fails, naming both digests, on a
  plan the server does not serve.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from modelyard.deploy.rollout import helmbin
from modelyard.deploy.rollout.mlflow_server import free_port
from tests.bench.serving import ServerProcess, feature_names, register_xgboost
from tests.chart.test_chart_monitoring import DASHBOARD_VARIABLES, dashboard_queries

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "modelyard-serving"
RELEASE, NAMESPACE = "eta", "modelyard"
NAMES = feature_names(4)


def _template(values: dict[str, Any], show: str) -> dict[str, Any]:
    """The one object ``templates/<show>`` renders with the real helm, for release eta in namespace modelyard."""
    command = [str(helmbin.find_helm()), "template", RELEASE, str(CHART), "-n", NAMESPACE, "--values", "-"]
    command += ["--show-only", f"templates/{show}"]
    rendered = subprocess.run(command, input=json.dumps(values), capture_output=True, text=True, timeout=120)
    assert rendered.returncode == 0, rendered.stderr
    found: dict[str, Any] = yaml.safe_load(rendered.stdout)
    return found


def _rules(path: Path) -> None:
    """The release's PrometheusRule as rendered by the real helm, its groups written as a rules file."""
    immediate = {"enabled": True, "for": "0m"}
    values = {
        "plan": _plan("models:/chart-live-fare/1"),
        "mlflow": {"existingSecret": "s"},
        "metrics": {
            "prometheusRule": {
                "enabled": True,
                "alerts": {
                    "badInputs": {**immediate, "severity": "warning", "threshold": 0.1},
                    "latency": {**immediate, "severity": "warning", "threshold": 0},
                    "errors": {**immediate, "severity": "critical", "threshold": 0.01},
                },
            }
        },
    }
    rule = _template(values, "prometheusrule.yaml")
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))


def _plan(uri: str, weight: int = 100) -> dict[str, Any]:
    variants = [{"name": "champion", "model_uri": uri, "weight": weight}]
    if weight < 100:
        variants.append({"name": "canary", "model_uri": uri, "weight": 100 - weight})
    return {"version": 1, "services": [{"family": "fare", "region": "jakarta", "variants": variants}]}


@pytest.fixture(scope="module")
def model_uri(mlflow_server: Any) -> str:
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.set_registry_uri(mlflow_server.url)
    return register_xgboost("chart-live-fare", n_features=4, n_trees=10, rows=300, onnx=False)


@pytest.fixture(scope="module")
def served(mlflow_server: Any, model_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    plan_path = tmp_path_factory.mktemp("served") / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(_plan(model_uri)))
    server = ServerProcess.start(plan_path, mlflow_server.url)
    try:
        server.wait_ready(timeout=180)
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def prometheus(served: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: run `make prometheus` (Debian's prometheus package)")
    folder = tmp_path_factory.mktemp("prometheus")
    _rules(folder / "rules.yaml")
    target = served.removeprefix("http://")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yaml"],
        "scrape_configs": [
            {"job_name": RELEASE, "static_configs": [{"targets": [target], "labels": {"namespace": NAMESPACE}}]}
        ],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    command = [binary, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}"]
    command += [f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    with (folder / "prometheus.log").open("w") as log:
        process = subprocess.Popen(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, (folder / "prometheus.log").read_text()
            time.sleep(0.5)
        else:
            pytest.fail(f"prometheus did not become ready: {(folder / 'prometheus.log').read_text()}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _firing(prometheus: str) -> dict[str, list[dict[str, Any]]]:
    alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    found: dict[str, list[dict[str, Any]]] = {}
    for alert in alerts:
        if alert["state"] == "firing":
            found.setdefault(alert["labels"]["alertname"], []).append(alert)
    return found


def test_refused_requests_fire_the_422_alert_with_the_versions_labels(served: str, prometheus: str) -> None:
    good = {"records": [dict.fromkeys(NAMES, 0.5)]}
    bad = {"records": [{**dict.fromkeys(NAMES, 0.5), NAMES[0]: "not a number"}]}
    path = f"{served}/v1/predict/fare/jakarta"
    firing: dict[str, list[dict[str, Any]]] = {}
    deadline = time.monotonic() + 90
    with httpx.Client(timeout=10) as client:
        while time.monotonic() < deadline:  # traffic across scrapes, so the counters' rates are not 0
            assert client.post(path, json=good).status_code == 200
            assert client.post(path, json=bad).status_code == 422
            time.sleep(0.05)
            firing = _firing(prometheus)
            if {"ModelyardBadInputs", "ModelyardSlowPredictions"} <= set(firing):
                break
    assert {"ModelyardBadInputs", "ModelyardSlowPredictions"} <= set(firing), firing
    (refused,) = firing["ModelyardBadInputs"]
    labels = refused["labels"]
    assert (labels["family"], labels["region"], labels["severity"]) == ("fare", "jakarta", "warning")
    assert labels["version"] == "1"
    summary = refused["annotations"]["summary"]
    assert summary.startswith("fare/jakarta v1: "), summary
    assert summary.endswith("% of requests refused (422)"), summary
    assert 0.3 < float(refused["value"]) < 0.7  # about one refused request in two
    (slow,) = firing["ModelyardSlowPredictions"]
    assert (slow["labels"]["family"], slow["labels"]["region"]) == ("fare", "jakarta")
    assert "ModelyardServingErrors" not in firing  # no request failed with 500


def test_the_helm_test_pod_passes_on_the_plan_served_and_names_a_plan_that_is_not(
    served: str, model_uri: str, tmp_path: Path
) -> None:
    def run_pod(plan: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        values = {"plan": plan, "mlflow": {"existingSecret": "s"}}
        pod = _template(values, "tests/test-plan-served.yaml")
        mounted = _template(values, "configmap.yaml")["data"]["plan.yaml"]  # what the pod reads at --plan
        (tmp_path / "plan.yaml").write_text(mounted)
        (check,) = pod["spec"]["containers"]
        args = list(check["args"])
        args[args.index("--url") + 1] = served  # the Service, here the server itself
        args[args.index("--plan") + 1] = str(tmp_path / "plan.yaml")
        command = [sys.executable, *check["command"][1:], *args]
        assert check["command"][0] == "python"
        return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO)

    passed = run_pod(_plan(model_uri))
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "ok   fare/jakarta answers /v1/models/fare/jakarta" in passed.stdout
    other = run_pod(_plan(model_uri, weight=90))  # a canary the server was never given
    assert other.returncode == 1, other.stdout + other.stderr
    assert f"FAIL {served} serves plan sha256:" in other.stderr
    assert "its pods have not rolled to this plan" in other.stderr


def test_every_dashboard_query_runs_on_the_live_prometheus(served: str, prometheus: str) -> None:
    values = {"plan": _plan("models:/chart-live-fare/1"), "mlflow": {"existingSecret": "s"}}
    values["metrics"] = {"grafanaDashboard": {"enabled": True}}
    board = json.loads(_template(values, "dashboard.yaml")["data"]["modelyard-serving.json"])
    queries = dashboard_queries(board, {**DASHBOARD_VARIABLES, "$__rate_interval": "1m", "$job": RELEASE})
    with httpx.Client(timeout=10) as client:
        for _ in range(40):  # traffic across a few scrapes, so rates are not empty
            client.post(f"{served}/v1/predict/fare/jakarta", json={"records": [dict.fromkeys(NAMES, 0.5)]})
            time.sleep(0.1)
        shown: dict[str, int] = {}
        for where, query in queries:
            answer = client.get(f"{prometheus}/api/v1/query", params={"query": query}).json()
            assert answer["status"] == "success", (where, query, answer)
            shown[where] = len(answer["data"]["result"])
    for where in (
        "Requests by outcome A",
        "Traffic by variant and version A",
        "Latency p50 / p99 B",
        "Pods ready and plans served A",
    ):
        assert shown[where] > 0, f"{where} shows nothing: {shown}"
