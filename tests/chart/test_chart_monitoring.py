"""The chart's PrometheusRule and Grafana dashboard: every alert and panel query is PromQL that parses
and reads only metrics and labels the server exports; alerts carry the thresholds, durations and
severities the values give.

The metrics come from the server's own registries (``ServingMetrics`` and ``OnlineMetrics``), so a
renamed metric or label fails here instead of leaving an alert that never fires. Prometheus's own
``promtool`` (Debian's prometheus package, ``make prometheus``) checks the rules and runs a unit test
of each alert: series that must fire it, with its labels and rendered annotations, and series of
another job or below the threshold that must not.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from modelyard.deploy.serving.metrics import ServingMetrics
from modelyard.deploy.serving.online import OnlineMetrics

from .conftest import Render

# Labels Prometheus adds to every scraped series (the Prometheus Operator's ServiceMonitor), and
# histogram buckets' ``le``.
TARGET_LABELS = {"namespace", "job", "pod", "instance", "service", "container", "endpoint"}
ALERTS = {
    "errors": "ModelyardServingErrors",
    "badInputs": "ModelyardBadInputs",
    "latency": "ModelyardSlowPredictions",
    "notReady": "ModelyardNotReady",
    "loadFailures": "ModelyardModelLoadFailures",
    "planRejected": "ModelyardPlanRejected",
    "plansDiverge": "ModelyardPlansDiverge",
    "onlineStore": "ModelyardOnlineStoreFailing",
    "onlineStale": "ModelyardOnlineValuesStale",
    "samplesDropped": "ModelyardPredictionSamplesDropped",
    "shadowErrors": "ModelyardShadowErrors",
}


def exported() -> dict[str, set[str]]:
    """Every series name the server can export, with the labels it carries."""
    serving = ServingMetrics()
    wrappers = [*vars(serving).values(), *vars(OnlineMetrics(serving)).values()]
    series: dict[str, set[str]] = {}
    for metric in (w for w in wrappers if isinstance(w, MetricWrapperBase)):
        labels = set(metric._labelnames)  # no public accessor; the names a child is made with
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
        for suffix in suffixes[metric._type]:
            series[metric._name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return series


def nodes(node: Any) -> list[Any]:
    """``node`` (a parsed PromQL expression) and every node under it."""
    children = [getattr(node, name, None) for name in ("lhs", "rhs", "expr", "param", "vector_selector")]
    children += list(getattr(node, "args", None) or [])
    return [node, *(found for child in children if child is not None for found in nodes(child))]


def selectors(node: Any) -> list[Any]:
    """The vector selectors under ``node``."""
    return [n for n in nodes(node) if isinstance(n, promql_parser.VectorSelector)]


def grouping(node: Any) -> list[str]:
    """The labels of every ``by (...)`` under ``node``."""
    aggregates = [n for n in nodes(node) if isinstance(n, promql_parser.AggregateExpr) and n.modifier is not None]
    return [label for n in aggregates for label in n.modifier.labels]


def assert_reads_exported(where: str, query: str, series: dict[str, set[str]]) -> None:
    """``query`` parses, and reads only exported metrics and labels, scoped to one release."""
    expr = promql_parser.parse(query)  # raises on PromQL that Prometheus would refuse
    found = selectors(expr)
    assert found, where
    for selector in found:
        assert selector.name in series, f"{where}: {selector.name} is not a metric the server exports"
        allowed = series[selector.name] | TARGET_LABELS
        matched = {m.name for m in selector.matchers.matchers}
        assert matched <= allowed, f"{where}: {selector.name} has no label {matched - allowed}"
        assert {"namespace", "job"} <= matched, f"{where}: {selector.name} is not scoped to the release"
    everything = set().union(*(series[s.name] for s in found)) | TARGET_LABELS
    assert set(grouping(expr)) <= everything, f"{where}: grouped by a label no series has"


def rules(render: Render, values: dict[str, Any], release: str = "eta") -> dict[str, dict[str, Any]]:
    objects = render({"metrics": {"prometheusRule": {"enabled": True, **values}}}, release=release)
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    (group,) = rule["spec"]["groups"]
    named = {r.get("alert") or r["record"]: r for r in group["rules"]}
    assert len(named) == len(group["rules"]), "alert names repeat"
    return named


@pytest.fixture(scope="module")
def defaults(render: Render) -> dict[str, dict[str, Any]]:
    return rules(render, {})


def test_every_alert_reads_only_what_the_server_exports(defaults: dict[str, dict[str, Any]]) -> None:
    series = exported()
    assert set(defaults) == set(ALERTS.values())
    for name, rule in defaults.items():
        assert_reads_exported(name, rule["expr"], series)
        summary = rule["annotations"]["summary"]
        assert "$labels" in summary or "$value" in summary, f"{name}: {summary}"  # Prometheus's, not Helm's
        assert rule["annotations"]["description"].strip()


def test_the_series_are_the_releases_as_the_servicemonitor_scrapes_them(defaults: dict[str, dict[str, Any]]) -> None:
    # The ServiceMonitor's jobLabel is the Service's app.kubernetes.io/instance: the release name.
    assert 'modelyard_ready{namespace="modelyard",job="eta"}' in defaults["ModelyardNotReady"]["expr"]


def test_thresholds_durations_severities_and_extra_rules_come_from_the_values(render: Render) -> None:
    extra = {"alert": "TeamPager", "expr": "up == 0", "for": "1m", "labels": {"severity": "page"}}
    named = rules(
        render,
        {
            "selector": 'cluster="prod",job="serving"',
            "labels": {"release": "prometheus"},
            "alerts": {
                "errors": {"enabled": True, "for": "2m", "severity": "page", "threshold": 0.25},
                "onlineStale": {"enabled": True, "for": "1h", "severity": "warning", "threshold": 900},
                "shadowErrors": {"enabled": False, "for": "10m", "severity": "info", "threshold": 0.05},
            },
            "extraRules": [extra],
        },
    )
    errors = named["ModelyardServingErrors"]
    assert errors["expr"].endswith("> 0.25")
    assert (errors["for"], errors["labels"]["severity"]) == ("2m", "page")
    assert 'modelyard_requests_total{cluster="prod",job="serving",status="error"}' in errors["expr"]
    assert named["ModelyardOnlineValuesStale"]["expr"].endswith("> 900")
    assert "ModelyardShadowErrors" not in named
    assert named["TeamPager"] == extra
    assert "ModelyardSlowPredictions" in named  # an alert the values leave alone keeps its defaults


def test_no_rule_by_default(render: Render) -> None:
    assert not [o for o in render({}) if o["kind"] == "PrometheusRule"]


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed: run `make prometheus` (Debian's prometheus package)")
    return found


def rules_file(render: Render, path: Path) -> dict[str, Any]:
    """The release's PrometheusRule as a Prometheus rules file at ``path``; returns its alerts by name."""
    objects = render({"metrics": {"prometheusRule": {"enabled": True}}}, release="eta")
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}


def test_promtool_accepts_the_rules(render: Render, tmp_path: Path) -> None:
    rules_file(render, tmp_path / "rules.yaml")
    checked = subprocess.run(
        [promtool(), "check", "rules", str(tmp_path / "rules.yaml")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout, checked.stdout


PAIR = 'family="driver_acceptance",region="jakarta"'
ETA = 'family="pickup_eta",region="jakarta"'
ERROR = 'status="error"'
FEATURE = 'feature="area_demand_index"'


def on(metric: str, labels: str, values: str, job: str = "eta") -> tuple[str, str]:
    """An input series of the release (or of another ``job``): its name with ``labels``, and its values."""
    return f'{metric}{{namespace="modelyard",job="{job}",{labels}}}', values


# Per alert: input series (one sample a minute for an hour), and the labels and summary of the one
# alert each must raise at minute 45 (past every alert's default ``for``). Series of job="other", and
# those of v1 or below a threshold, must raise nothing.
FIRING: dict[str, tuple[list[tuple[str, str]], dict[str, str], str]] = {
    "ModelyardServingErrors": (
        [
            on("modelyard_requests_total", f'{PAIR},variant="canary",version="2",status="error"', "0+6x60"),
            on("modelyard_requests_total", f'{PAIR},variant="canary",version="2",status="ok"', "0+60x60"),
            on("modelyard_requests_total", f'{PAIR},variant="primary",version="1",status="ok"', "0+600x60"),
            on("modelyard_requests_total", f'{PAIR},variant="primary",version="1",{ERROR}', "0+600x60", job="other"),
        ],
        {"family": "driver_acceptance", "region": "jakarta", "version": "2"},
        "driver_acceptance/jakarta v2: 9.091% of predictions fail (500)",
    ),
    "ModelyardBadInputs": (
        [
            on("modelyard_requests_total", f'{PAIR},variant="primary",version="3",status="bad_input"', "0+30x60"),
            on("modelyard_requests_total", f'{PAIR},variant="primary",version="3",status="ok"', "0+70x60"),
        ],
        {"family": "driver_acceptance", "region": "jakarta", "version": "3"},
        "driver_acceptance/jakarta v3: 30% of requests refused (422)",
    ),
    "ModelyardSlowPredictions": (
        [
            on("modelyard_request_seconds_bucket", f'{PAIR},variant="primary",le="0.05"', "0+10x60"),
            on("modelyard_request_seconds_bucket", f'{PAIR},variant="primary",le="0.1"', "0+100x60"),
            on("modelyard_request_seconds_bucket", f'{PAIR},variant="primary",le="+Inf"', "0+100x60"),
            on("modelyard_request_seconds_bucket", f'{ETA},variant="primary",le="0.01"', "0+100x60"),
            on("modelyard_request_seconds_bucket", f'{ETA},variant="primary",le="+Inf"', "0+100x60"),
        ],
        {"family": "driver_acceptance", "region": "jakarta"},
        "driver_acceptance/jakarta: p99 latency 99.44ms",
    ),
    "ModelyardNotReady": (
        [
            on("modelyard_ready", 'pod="eta-7d9-a"', "0x60"),
            on("modelyard_ready", 'pod="eta-7d9-b"', "1x60"),
        ],
        {"namespace": "modelyard", "pod": "eta-7d9-a"},
        "eta-7d9-a: not every model of its plan is warm",
    ),
    "ModelyardModelLoadFailures": (
        [on("modelyard_model_load_failures_total", 'model="driver_acceptance-jakarta"', "0x40 1x20")],
        {"namespace": "modelyard", "model": "driver_acceptance-jakarta"},
        "driver_acceptance-jakarta: failed to load or warm up",
    ),
    "ModelyardPlanRejected": (
        [
            on("modelyard_plan_swaps_total", 'result="rejected"', "0x40 1x20"),
            on("modelyard_plan_swaps_total", 'result="applied"', "0+1x60"),
        ],
        {"namespace": "modelyard", "job": "eta"},
        "eta: a new plan was refused; the previous one still serves",
    ),
    "ModelyardPlansDiverge": (
        [
            on("modelyard_plan_active", 'pod="eta-7d9-a",digest="sha256:aa"', "1x60"),
            on("modelyard_plan_active", 'pod="eta-7d9-b",digest="sha256:bb"', "1x60"),
            on("modelyard_plan_active", 'pod="eta-7d9-b",digest="sha256:aa"', "0x60"),
        ],
        {"namespace": "modelyard", "job": "eta"},
        "eta: pods serve 2 different plans",
    ),
    "ModelyardOnlineStoreFailing": (
        [
            on("modelyard_online_lookups_total", f'{PAIR},{FEATURE},outcome="timeout"', "0+10x60"),
            on("modelyard_online_lookups_total", f'{PAIR},{FEATURE},outcome="hit"', "0+90x60"),
            on("modelyard_online_lookups_total", f'{PAIR},{FEATURE},outcome="sent"', "0+1000x60"),
        ],
        {"family": "driver_acceptance", "region": "jakarta", "feature": "area_demand_index"},
        "driver_acceptance/jakarta area_demand_index: 10% of online lookups time out or fail",
    ),
    "ModelyardOnlineValuesStale": (
        [
            on("modelyard_online_value_age_seconds_bucket", f'{PAIR},{FEATURE},le="3600"', "0+1x60"),
            on("modelyard_online_value_age_seconds_bucket", f'{PAIR},{FEATURE},le="14400"', "0+10x60"),
            on("modelyard_online_value_age_seconds_bucket", f'{PAIR},{FEATURE},le="+Inf"', "0+10x60"),
        ],
        {"family": "driver_acceptance", "region": "jakarta", "feature": "area_demand_index"},
        "driver_acceptance/jakarta area_demand_index: online values 2h 20m 0s old (median)",
    ),
    "ModelyardPredictionSamplesDropped": (
        [
            on("modelyard_prediction_log_samples_total", 'outcome="dropped"', "0+5x60"),
            on("modelyard_prediction_log_samples_total", 'outcome="queued"', "0+500x60"),
        ],
        {"namespace": "modelyard", "job": "eta"},
        "eta: sampled requests dropped (the prediction log queue is full)",
    ),
    "ModelyardShadowErrors": (
        [
            on("modelyard_shadow_predictions_total", f'{PAIR},shadow="challenger",status="error"', "0+1x60"),
            on("modelyard_shadow_predictions_total", f'{PAIR},shadow="challenger",status="ok"', "0+9x60"),
        ],
        {"family": "driver_acceptance", "region": "jakarta", "shadow": "challenger"},
        "driver_acceptance/jakarta shadow challenger: 10% of its predictions fail",
    ),
}


def test_each_alert_fires_on_its_series_with_its_labels_and_words(render: Render, tmp_path: Path) -> None:
    alerts = rules_file(render, tmp_path / "rules.yaml")
    assert set(FIRING) == set(alerts)
    series = [{"series": name, "values": values} for inputs, _, _ in FIRING.values() for name, values in inputs]
    expected = [
        {
            "eval_time": "45m",
            "alertname": name,
            "exp_alerts": [
                {
                    "exp_labels": {**labels, "severity": alerts[name]["labels"]["severity"]},
                    "exp_annotations": {"summary": summary, "description": alerts[name]["annotations"]["description"]},
                }
            ],
        }
        for name, (_, labels, summary) in FIRING.items()
    ]
    # Before its ``for`` has passed, an alert that waits is pending, not firing.
    expected += [
        {"eval_time": "3m", "alertname": name, "exp_alerts": []} for name in FIRING if alerts[name]["for"] != "0m"
    ]
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": expected}],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    ran = subprocess.run([promtool(), "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "SUCCESS" in ran.stdout, ran.stdout


# Grafana's variables and macros, as one selection of the dashboard would fill them in.
DASHBOARD_VARIABLES = {
    "$__rate_interval": "5m",
    "$namespace": "modelyard",
    "$job": "eta",
    "$family": ".*",
    "$region": ".*",
}


def dashboard_queries(
    dashboard: dict[str, Any], variables: dict[str, str] = DASHBOARD_VARIABLES
) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target, with ``variables`` filled in."""
    found = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in sorted(variables.items(), key=lambda item: -len(item[0])):
                expr = expr.replace(name, value)
            found.append((f"{panel['title']} {target['refId']}", expr))
    return found


def dashboard(render: Render) -> tuple[dict[str, Any], dict[str, Any]]:
    objects = render({"metrics": {"grafanaDashboard": {"enabled": True}}}, release="eta")
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")]
    return config_map, json.loads(config_map["data"]["modelyard-serving.json"])


def test_every_dashboard_query_reads_only_what_the_server_exports(render: Render) -> None:
    config_map, board = dashboard(render)
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"  # what Grafana's sidecar looks for
    series = exported()
    queries = dashboard_queries(board)
    assert len(queries) >= 15
    for where, query in queries:
        assert_reads_exported(where, query, series)
    for variable in board["templating"]["list"][1:]:  # label_values(metric{...}, label)
        metric, label = re.fullmatch(r"label_values\((\w+)(?:\{.*\})?, (\w+)\)", variable["query"]["query"]).groups()
        assert label in series[metric] | TARGET_LABELS, variable["name"]


def test_the_dashboards_panels_do_not_overlap_and_have_their_own_ids(render: Render) -> None:
    _, board = dashboard(render)
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    cells = [
        (p["gridPos"]["x"] + dx, p["gridPos"]["y"] + dy)
        for p in board["panels"]
        for dx in range(p["gridPos"]["w"])
        for dy in range(p["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells)), "two panels share a grid cell"
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in board["panels"])
    assert not [o for o in render({}) if o["metadata"]["name"].endswith("-dashboard")]
