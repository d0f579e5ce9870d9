"""The monitoring loop on real servers: one region's served inputs shift, only it is flagged and retrained.

Six regions of ``driver_acceptance`` are trained against the session's real ``mlflow server``
and served by one real ``modelyard serve`` that samples every request into
``<storage.root>/monitoring/samples``. Five regions get requests drawn from their own data;
Jakarta gets a wave of new drivers on longer trips. Then the real ``monitoring`` DAG runs
(``airflow dags test``): only Jakarta gets a drift Asset event, the figures it logged match an
independent computation on the same sample files (scipy's Jensen-Shannon, a PSI by hand), and
the training DAG's selection retrains Jakarta alone, with the drift in the run's tags.
"""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.spatial.distance import jensenshannon

from modelyard.core.config import Config, load_config
from modelyard.core.contracts.assets import pairs_in
from modelyard.core.featurespec import FittedSpec
from modelyard.monitoring.measure import drift_event, retrain_drifted
from modelyard.pipeline import snapshots
from modelyard.pipeline.build import build_all
from modelyard.training.mlflow_log import raw_example
from modelyard.training.train import train_pair
from tests.bench.serving import ServerProcess

REPO = Path(__file__).resolve().parents[2]
FAMILY, SHIFTED = "driver_acceptance", "jakarta"
ROWS_PER_REGION, RECORDS_PER_REQUEST = 400, 20
ENV = {
    "MODELYARD_DATA__SYNTHETIC__ROWS": "2500",
    "MODELYARD_PROJECT": "it-monitoring",
    "MODELYARD_MLFLOW__MODEL_NAME_TEMPLATE": "it-mon-{family}-{region}",
    "MODELYARD_SCHEDULES__DATA_PROCESSING": "null",
}


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """This module's own server, given longer to start: the shared machine is often loaded."""
    from modelyard.deploy.rollout.mlflow_server import start_mlflow_server

    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow-monitoring"), startup_timeout=600)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("monitoring")


@pytest.fixture(scope="module")
def config(root: Path) -> Config:
    loaded = load_config(REPO / "modelyard.yaml", environ={**ENV, "MODELYARD_STORAGE__ROOT": str(root)})
    results = build_all(loaded, families=[FAMILY])
    assert {r.status for r in results} == {"published"}, [r.reason for r in results]
    assert len(loaded.region_names) >= 6  # the shifted region and at least five stable ones
    return loaded


def _config_file(config: Config, root: Path) -> Path:
    """The config as a file for the Airflow subprocesses (the env overrides written in)."""
    raw = yaml.safe_load((REPO / "modelyard.yaml").read_text())
    raw.update(project=ENV["MODELYARD_PROJECT"], storage={"root": str(root)})
    raw["mlflow"] = {**raw.get("mlflow", {}), "model_name_template": ENV["MODELYARD_MLFLOW__MODEL_NAME_TEMPLATE"]}
    raw["data"] = {**raw.get("data", {}), "synthetic": {**raw["data"]["synthetic"], "rows": 2500}}
    raw["schedules"] = {"data_processing": None}
    path = root / "modelyard.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _requests_for(config: Config, region: str, shifted: bool) -> list[dict[str, Any]]:
    """Raw records as a client sends them, drawn from the region's training window (shifted: new drivers, long trips).

    The training window, not the whole snapshot: later rows carry real drift of their own (longer
    tenures, a festival in the holdout), which monitoring rightly reports.
    """
    from modelyard.training.split import time_split

    meta = snapshots.latest_snapshot(config.storage.features_dir, FAMILY, region)
    frame = snapshots.load_frame(config.storage.features_dir, meta)
    train = time_split(frame, config.training.holdout_days, config.training.validation_days).train
    rows = train.sample(ROWS_PER_REGION, random_state=11)
    records = raw_example(FittedSpec.from_dict(meta.feature_spec or {}), rows).to_dict("records")
    if shifted:
        for index, record in enumerate(records):
            record["driver_tenure_days"] = 1 + index % 20
            record["pickup_distance_km"] = float(record["pickup_distance_km"]) * 2.5 + 3
    return records


def _serve_and_send(config: Config, models: dict[str, str], mlflow_uri: str, workdir: Path) -> dict[str, list[str]]:
    services = [
        {"family": FAMILY, "region": region, "variants": [{"name": "champion", "model_uri": uri, "weight": 100}]}
        for region, uri in models.items()
    ]
    plan = {"version": 1, "services": services}
    plan_path = workdir / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(plan))
    env = {
        "MODELYARD_SERVE_LOG_DIR": str(config.storage.samples_dir),
        "MODELYARD_SERVE_SAMPLE_RATE": "1.0",
        "MODELYARD_SERVE_SAMPLE_ROTATE_SECONDS": "5",
    }
    request_ids: dict[str, list[str]] = {}
    server = ServerProcess.start(plan_path, mlflow_uri, env=env)
    try:
        server.wait_ready(timeout=240)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for region in models:
                records = _requests_for(config, region, shifted=region == SHIFTED)
                for start in range(0, len(records), RECORDS_PER_REQUEST):
                    chunk = records[start : start + RECORDS_PER_REQUEST]
                    response = client.post(f"/v1/predict/{FAMILY}/{region}", content=json.dumps(chunk, default=str))
                    assert response.status_code == 200, response.text
                    request_ids.setdefault(region, []).append(response.json()["request_id"])
    finally:
        server.stop()  # a graceful stop publishes the open sample files
    return request_ids


def _sample_lines(folder: Path, kind: str = "prediction") -> list[dict[str, Any]]:
    lines = []
    for path in sorted(folder.glob("*.jsonl.gz")):
        with gzip.open(path, "rt") as handle:
            lines.extend(json.loads(line) for line in handle)
    return [line for line in lines if line["kind"] == kind]


def _hand_psi(reference: np.ndarray, served: np.ndarray, bins: int) -> float:
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1))[1:-1])
    e = np.array([((reference >= lo) & (reference < hi)).mean() for lo, hi in _bins(edges)])
    a = np.array([((served >= lo) & (served < hi)).mean() for lo, hi in _bins(edges)])
    e, a = np.maximum(e, 1e-4), np.maximum(a, 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


def _bins(edges: np.ndarray) -> list[tuple[float, float]]:
    return list(itertools.pairwise([-np.inf, *edges.tolist(), np.inf]))


def _training_rows(client: mlflow.MlflowClient, config: Config, version: Any) -> pd.DataFrame:
    """The version's training rows, sliced here from its snapshot by its run's split params."""
    meta = snapshots.read_snapshot(config.storage.features_dir, FAMILY, SHIFTED, version.tags["data_digest"])
    frame = snapshots.load_frame(config.storage.features_dir, meta)
    params = client.get_run(version.run_id).data.params
    times = pd.to_datetime(frame["event_time"], utc=True)
    return frame[times < pd.Timestamp(params["split_valid_start"])]


def test_one_shifted_region_is_flagged_and_retrained_alone(
    config: Config, root: Path, mlflow_uri: str, airflow
) -> None:
    models = {}
    for region in config.region_names:
        result = train_pair(config, FAMILY, region, tracking_uri=mlflow_uri)
        assert result.status == "registered", result.reason
        models[region] = f"models:/{result.model_name}/{result.version}"
    request_ids = _serve_and_send(config, models, mlflow_uri, root)

    # Every request's sample is in its region's version folder, under the id the server returned.
    for region, uri in models.items():
        lines = _sample_lines(config.storage.samples_dir / FAMILY / region / uri.rsplit("/", 1)[1])
        assert sorted(line["request_id"] for line in lines) == sorted(request_ids[region])
        assert sum(len(line["features"]) for line in lines) == ROWS_PER_REGION
        counts = _sample_lines(config.storage.samples_dir / FAMILY / region / uri.rsplit("/", 1)[1], "counts")
        assert sum(line["counts"]["ok"] for line in counts) == ROWS_PER_REGION // RECORDS_PER_REQUEST
    assert not list(config.storage.samples_dir.rglob("*.part"))

    # The real monitoring DAG, on the Airflow fixture's database with this test's config.
    env = {**airflow.env, "MODELYARD_CONFIG": str(_config_file(config, root)), "MLFLOW_TRACKING_URI": mlflow_uri}
    before = len(airflow.asset_events("modelyard://drift/"))
    run = _dags_test(airflow, env, "monitoring", {"families": [FAMILY]})
    assert run.returncode == 0, run.stdout[-6000:]
    events = airflow.asset_events("modelyard://drift/")[before:]
    assert [e.uri for e in events] == [f"modelyard://drift/{FAMILY}/{SHIFTED}"], run.stdout[-4000:]
    extra = events[0].extra
    assert {"driver_tenure_days", "is_new_driver", "pickup_distance_km"} <= set(extra["drifted"]), extra
    assert extra["samples"] == ROWS_PER_REGION

    # The stable regions were measured too (a run each, verdict on the version), and are not drifted.
    client = mlflow.MlflowClient(mlflow_uri)
    for region, uri in models.items():
        version = client.get_model_version(uri.split("/")[1], uri.rsplit("/", 1)[1])
        verdict = version.tags["monitoring.verdict"]
        assert verdict == ("drifted" if region == SHIFTED else "stable"), (region, version.tags)
        monitoring_run = client.get_run(version.tags["monitoring.run_id"])
        assert monitoring_run.data.tags["model_version"] == version.version
        assert monitoring_run.data.metrics["samples_rows"] == ROWS_PER_REGION
        assert monitoring_run.data.metrics["error_rate"] == 0.0
    drifted_version = client.get_model_version(models[SHIFTED].split("/")[1], models[SHIFTED].rsplit("/", 1)[1])
    run_data = client.get_run(drifted_version.tags["monitoring.run_id"]).data
    artifacts = {a.path for a in client.list_artifacts(drifted_version.tags["monitoring.run_id"], "monitoring")}
    assert "monitoring/drift.png" in artifacts

    # The figures against an independent computation on the same sample files.
    folder = config.storage.samples_dir / FAMILY / SHIFTED / drifted_version.version
    rows = [row for line in _sample_lines(folder) for row in line["features"]]
    served = np.array(rows, dtype=np.float32).astype(float)  # float32, as the model read them
    names = FittedSpec.from_dict(
        snapshots.latest_snapshot(config.storage.features_dir, FAMILY, SHIFTED).feature_spec or {}
    ).names
    train = _training_rows(client, config, drifted_version).astype(dict.fromkeys(names, "float32"))
    column = names.index("pickup_distance_km")
    expected_psi = _hand_psi(train["pickup_distance_km"].to_numpy(float), served[:, column], config.monitoring.bins)
    assert run_data.metrics["drift_psi/pickup_distance_km"] == pytest.approx(expected_psi, rel=1e-6)
    flag = names.index("is_new_driver")
    values = np.union1d(train["is_new_driver"].to_numpy(float), served[:, flag])
    p = [(train["is_new_driver"].to_numpy(float) == v).mean() for v in values]
    q = [(served[:, flag] == v).mean() for v in values]
    assert run_data.metrics["drift_js/is_new_driver"] == pytest.approx(jensenshannon(p, q, base=2), rel=1e-6)

    # Training selects the pairs named by the drift events: Jakarta alone. Its retrain rebuilds the
    # snapshot from the newest data (here: more days of bookings) and trains on it, tagged with the drift.
    uris = [e.uri for e in events]
    assert pairs_in(uris, "drift", config.pairs([FAMILY])) == [(FAMILY, SHIFTED)]
    newer = load_config(
        REPO / "modelyard.yaml",
        environ={**ENV, "MODELYARD_STORAGE__ROOT": str(root), "MODELYARD_DATA__SYNTHETIC__DAYS": "130"},
    )
    triggering = {"drift": [_Event(uris[0], extra)]}
    found = drift_event(triggering, FAMILY, SHIFTED)
    assert found == extra
    assert drift_event(triggering, FAMILY, "bangkok") is None
    retrained = retrain_drifted(newer, FAMILY, SHIFTED, found, tracking_uri=mlflow_uri)
    assert retrained.status == "registered", retrained.reason
    assert retrained.data_digest != drifted_version.tags["data_digest"]
    tags = client.get_run(retrained.run_id).data.tags
    assert tags["retrain_reason"] == "drift"
    assert "pickup_distance_km" in tags["drift_features"]
    assert tags["drift_version"] == drifted_version.version
    # Without newer data a drift retrain is a skip that says why, not a silent no-op.
    again = retrain_drifted(newer, FAMILY, SHIFTED, found, tracking_uri=mlflow_uri)
    assert again.status == "skipped"
    assert "no data newer than snapshot" in (again.reason or "")


class _Event:
    """What Airflow hands a task in ``triggering_asset_events``: an event with ``asset.uri`` and ``extra``."""

    def __init__(self, uri: str, extra: dict[str, Any]) -> None:
        self.asset = type("AssetRef", (), {"uri": uri})()
        self.extra = extra


def _dags_test(airflow, env: dict[str, str], dag_id: str, conf: dict[str, Any]):
    """``airflow dags test`` on the session's Airflow, with this test's environment (its own config)."""
    import datetime as dt
    import subprocess
    import sys

    logical_date = dt.datetime(2026, 7, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=next(airflow._dates))
    airflow_bin = str(Path(sys.executable).with_name("airflow"))
    command = [airflow_bin, "dags", "test", dag_id, logical_date.isoformat(), "--conf", json.dumps(conf)]
    return subprocess.run(
        command, env=env, cwd=airflow.home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=900, check=False,
    )  # fmt: skip
