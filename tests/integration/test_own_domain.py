"""A second domain with a completely different schema, through config alone: data → snapshot → training.

A food-delivery kitchen preparation-time regressor per city (``JKT`` in Asia/Jakarta with a
festival, ``BER`` in Europe/Berlin across the March DST change), restaurants and cuisines as
categories, order size, and a user feature function defined in this module. Nothing of it
lives in the package. Trains against the session's real ``mlflow server``; then the fitted
spec logged with the version turns the raw holdout rows (ISO times with offsets, as a client
sends them) into the same predictions as the snapshot, an unseen restaurant included; and a
real ``modelyard serve`` for both cities answers the same over HTTP, from raw records and from
the precomputed features alike.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from modelyard.core.config import Config, load_config
from modelyard.core.featurespec import FittedSpec
from modelyard.deploy.serving.engines import PARITY_ATOL, PARITY_RTOL
from modelyard.pipeline import snapshots
from modelyard.pipeline.build import build_all
from modelyard.training.mlflow_log import FEATURE_SPEC_ARTIFACT
from modelyard.training.train import train_all
from tests.bench.serving import ServerProcess

CITIES = {"JKT": "Asia/Jakarta", "BER": "Europe/Berlin"}
CUISINES = ("noodles", "rice", "grill", "dessert")


def big_order(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """The user feature: an order of 6+ items or over 80 in value."""
    return (columns["items"] >= 6) | (columns["basket_value"] > 80)


CONFIG = """
project: it-kitchen
seed: 3
storage: {root: %(root)s}
mlflow: {model_name_template: "it-kitchen-{family}-{region}"}
data: {min_rows: 300}
training: {holdout_days: 10, validation_days: 10, early_stopping_rounds: 10}
datasets:
  - name: orders
    source: {kind: file, path: "%(source)s"}
    time_column: placed_at
    region_column: city
    key_column: order_id
    renames: {PlacedAt: placed_at}
    columns:
      order_id: {type: string, unique: true}
      placed_at: {type: timestamp}
      city: {type: category}
      restaurant: {type: category}
      cuisine: {type: category, allowed: [noodles, rice, grill, dessert]}
      items: {type: int, min: 1, max: 50}
      basket_value: {type: float, min: 0, max: 500}
      prep_minutes: {type: float, min: 0, max: 120}
regions:
  - name: JKT
    country: ID
    timezone: Asia/Jakarta
    festivals: [{name: lebaran, start: "2026-03-16", end: "2026-03-27"}]
  - {name: BER, country: DE, timezone: Europe/Berlin}
families:
  - name: prep_time
    task: regression
    dataset: orders
    target: prep_minutes
    features:
      - items
      - {name: log_value, kind: log1p, column: basket_value}
      - {name: value_band, kind: bucket, column: basket_value, buckets: 4}
      - {name: restaurant, kind: category}
      - {name: cuisine, kind: category}
      - {name: hour_sin, kind: hour_sin}
      - {name: hour_cos, kind: hour_cos}
      - {name: is_weekend, kind: is_weekend}
      - {name: is_festival, kind: is_holiday}
      - {name: kitchen_load, kind: window_count, key: restaurant, every: hour}
      - {name: big_order, kind: function, function: "%(module)s:big_order", inputs: [items, basket_value]}
    slice_features: [{name: hour, kind: hour}]
    slices:
      - {name: lunch, feature: hour, min: 11, max: 14}
      - {name: big_orders, feature: items, min: 6}
    algorithm: xgboost
    params: {n_estimators: 60, max_depth: 4}
gates:
  defaults:
    regression:
      absolute: [{metric: holdout_mae, op: "<=", threshold: 5.0}]
"""


def orders(city: str, rows: int, seed: int) -> pd.DataFrame:
    """Orders of one city from 2026-02-20 to 2026-04-10; a restaurant opens only in the last days."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-02-20", tz="UTC")
    times = start + pd.to_timedelta(np.sort(rng.uniform(0, 49 * 86400, rows)), unit="s")
    restaurants = np.array([f"r{i}" for i in range(12)], dtype=object)[rng.integers(0, 12, rows)]
    restaurants[-40:] = "r-new"  # never seen in the training window
    cuisine = np.array(CUISINES)[rng.integers(0, 4, rows)]
    items = rng.integers(1, 12, rows)
    value = np.round(items * rng.uniform(5, 12, rows), 2)
    local_hour = times.tz_convert(CITIES[city]).hour.to_numpy()
    prep = 6 + 1.2 * items + 4 * np.isin(local_hour, [12, 13, 19, 20]) + (cuisine == "grill") * 5
    prep = np.clip(prep + rng.normal(0, 1.5, rows), 1, 119)
    local = times.tz_convert(CITIES[city])
    return pd.DataFrame(
        {
            "order_id": [f"{city}-{i}" for i in range(rows)],
            "PlacedAt": [t.isoformat() for t in local],  # the export's own name, with the local offset
            "city": city,
            "restaurant": restaurants,
            "cuisine": cuisine,
            "items": items,
            "basket_value": value,
            "prep_minutes": np.round(prep, 2),
        }
    )


@pytest.fixture(scope="module")
def kitchen(tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = tmp_path_factory.mktemp("kitchen")
    source = root / "orders.csv"
    pd.concat([orders("JKT", 2500, 1), orders("BER", 2500, 2)]).to_csv(source, index=False)
    path = root / "modelyard.yaml"
    path.write_text(CONFIG % {"root": root / "store", "source": source, "module": __name__})
    return load_config(path, environ={})


def test_a_second_domain_trains_from_config_alone_and_serves_the_same_from_raw_fields(
    kitchen: Config, mlflow_uri: str
) -> None:
    built = build_all(kitchen)
    assert [(r.region, r.status) for r in built] == [("JKT", "published"), ("BER", "published")], built
    assert all("feature 'restaurant': 40 rows" in r.reason for r in built)  # the unseen restaurant, counted
    results = train_all(kitchen, tracking_uri=mlflow_uri)
    assert [r.status for r in results] == ["registered", "registered"], [r.reason for r in results]
    client = MlflowClient(mlflow_uri, mlflow_uri)
    uris = {}
    for result in results:
        assert result.metrics["holdout_mae"] < 3.0
        assert "holdout_mae__lunch" in result.metrics
        version = client.get_model_version(result.model_name, str(result.version))
        assert version.tags["feature_spec"] == FEATURE_SPEC_ARTIFACT
        _served_equals_offline(kitchen, client, result.region, version)
        uris[result.region] = f"models:/{version.name}/{version.version}"
    _http_server_equals_offline(kitchen, uris, mlflow_uri)


def _served_equals_offline(config: Config, client: MlflowClient, region: str, version: object) -> None:
    local = Path(mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path=FEATURE_SPEC_ARTIFACT))  # type: ignore[attr-defined]
    fitted = FittedSpec.from_dict(json.loads(local.read_text()))
    assert fitted.requested == ["kitchen_load"]
    meta = snapshots.latest_snapshot(config.storage.features_dir, "prep_time", region)
    frame = snapshots.load_frame(config.storage.features_dir, meta)
    holdout = frame.tail(1000)
    assert (holdout["raw.restaurant"] == "r-new").sum() == 40
    times = holdout["event_time"].dt.tz_convert(CITIES[region])
    if region == "BER":  # the holdout window is after the change; the training window spans it
        assert {t.utcoffset().total_seconds() for t in frame["event_time"].dt.tz_convert("Europe/Berlin")} == {
            3600,
            7200,
        }
    else:
        assert frame["is_festival"].sum() > 0
    rows = [
        {"placed_at": t.isoformat(), **{c: row[f"raw.{c}"] for c in fitted.raw_inputs if c != "placed_at"},
         "kitchen_load": row["kitchen_load"]}
        for t, (_, row) in zip(times, holdout.iterrows(), strict=True)
    ]  # fmt: skip
    transformed = fitted.transform_counted(fitted.columns_from_records(rows))
    assert transformed.unknown == {"restaurant": 40}
    np.testing.assert_array_equal(transformed.matrix, holdout[fitted.names].to_numpy(dtype=np.float64))
    model = mlflow.xgboost.load_model(f"models:/{version.name}/{version.version}")  # type: ignore[attr-defined]
    served = model.predict(pd.DataFrame(transformed.matrix, columns=fitted.names))
    offline = model.predict(holdout[fitted.names].astype("float64"))
    np.testing.assert_allclose(served, offline, atol=1e-6, rtol=0)


def _raw_records(fitted: FittedSpec, holdout: pd.DataFrame, timezone: str) -> list[dict[str, Any]]:
    """The holdout rows as a client sends them: local ISO time with its offset, raw columns, the aggregate."""
    times = holdout["event_time"].dt.tz_convert(timezone)
    others = [c for c in fitted.raw_inputs if c != fitted.spec.time_column]
    return [
        {fitted.spec.time_column: t.isoformat(), **{c: _plain(row[f"raw.{c}"]) for c in others},
         **{c: float(row[c]) for c in fitted.requested}}
        for t, (_, row) in zip(times, holdout.iterrows(), strict=True)
    ]  # fmt: skip


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _http_server_equals_offline(config: Config, uris: dict[str, str], tracking_uri: str, rows: int = 1000) -> None:
    """A real ``modelyard serve`` for both cities: raw records and precomputed features give the offline values."""
    workdir = config.storage.root / "serving"
    workdir.mkdir(parents=True, exist_ok=True)
    plan = {
        "version": 1,
        "services": [
            # A plan's region is a lower-case name (it becomes part of Kubernetes object names).
            {"family": "prep_time", "region": region.lower(), "timezone": CITIES[region],
             "variants": [{"name": "champion", "model_uri": uri, "weight": 100}]}
            for region, uri in uris.items()
        ],
    }  # fmt: skip
    plan_path = workdir / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(plan))
    # The pod has the user's feature function installed: here, this test module (imported as pytest names it).
    path = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    # The operator allows the module of the declared function feature (the server never takes it from the artifact).
    allowed = {"MODELYARD_SERVE_ALLOWED_FUNCTION_MODULES": "test_own_domain"}
    server = ServerProcess.start(plan_path, tracking_uri, env={"PYTHONPATH": path, **allowed})
    try:
        ready = server.wait_ready(timeout=180)
        for region, uri in uris.items():
            _check_region(config, server.url, region, ready["models"][uri], rows)
        counted = _unknown_counts(httpx.get(f"{server.url}/metrics", timeout=10).text)
        # The 40 unseen restaurants of each holdout, sent raw twice (the precomputed rows carry codes).
        assert counted == {(region.lower(), "restaurant"): 80.0 for region in uris}, counted
    finally:
        server.stop()


def _unknown_counts(exposition: str) -> dict[tuple[str, str], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.labels["region"], sample.labels["feature"]): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "modelyard_unknown_categories_total"
    }


def _check_region(config: Config, url: str, region: str, status: dict[str, Any], rows: int) -> None:
    meta = snapshots.latest_snapshot(config.storage.features_dir, "prep_time", region)
    frame = snapshots.load_frame(config.storage.features_dir, meta)
    fitted = FittedSpec.from_dict(meta.feature_spec or {})
    assert status["inputs"]["raw_inputs"] == fitted.raw_inputs  # /readyz shows what a client sends
    assert status["inputs"]["requested"] == ["kitchen_load"]
    holdout = pd.concat([frame.tail(rows), _special_rows(frame, region)])
    assert (holdout["raw.restaurant"] == "r-new").sum() == 40
    model = mlflow.xgboost.load_model(status["uri"])
    offline = model.predict(holdout[fitted.names].astype("float64"))
    raw_records = _raw_records(fitted, holdout, CITIES[region])
    precomputed = [{k: float(v) for k, v in row.items()} for row in holdout[fitted.names].to_dict("records")]
    # Raw and precomputed records give the very same values over HTTP (the features are bit-equal), in one
    # request of all rows and in small ones; against the offline booster: exact when the native engine
    # answers, else within the ONNX copy's parity contract (ADR 0002: float32 trees summed in another order).
    for chunk in (len(raw_records), 50):
        raw = _predict_all(url, region, raw_records, chunk)
        np.testing.assert_array_equal(raw, _predict_all(url, region, precomputed, chunk))
        np.testing.assert_allclose(raw, offline, atol=PARITY_ATOL, rtol=PARITY_RTOL)
        if status["engine"] == "native":
            np.testing.assert_allclose(raw, offline, atol=1e-6, rtol=0)
    missing = httpx.post(
        f"{url}/v1/predict/prep_time/{region.lower()}", json=[{"placed_at": "2026-04-01T12:00:00+07:00"}]
    )
    assert missing.status_code == 400, missing.text
    assert "no field" in missing.json()["message"]


def _special_rows(frame: pd.DataFrame, region: str) -> pd.DataFrame:
    """Festival days (JKT) or the hours around the DST change (BER): training-window rows, served alike."""
    if region == "JKT":
        special = frame[frame["is_festival"] == 1].head(200)
    else:
        times = frame["event_time"]
        special = frame[(times >= "2026-03-28T12:00:00Z") & (times < "2026-03-29T12:00:00Z")]
        assert {t.utcoffset().total_seconds() for t in special["event_time"].dt.tz_convert(CITIES[region])} == {
            3600,
            7200,
        }
    assert len(special) > 20, region
    return special


def _predict_all(url: str, region: str, records: list[dict[str, Any]], chunk: int = 50) -> np.ndarray:
    out: list[float] = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for start in range(0, len(records), chunk):
            response = client.post(f"/v1/predict/prep_time/{region.lower()}", json=records[start : start + chunk])
            assert response.status_code == 200, response.text
            out += response.json()["predictions"]
    return np.asarray(out)
