"""Online features against the machine's real Redis, a real ``mlflow server`` and a real ``modelyard serve``.

Builds ``driver_acceptance/jakarta`` (its ``area_demand_index`` declared online) with Redis as
the online store under a prefix of this run's own, trains it, and serves it with lookups:

* the build materialised each area's newest aggregate, with its window's end;
* parity: the snapshot rows of each area's newest window, sent as raw fields *without* the
  aggregate, are answered like the model answers the snapshot's features offline; an area the
  store lacks gets the declared default; a value the client sends wins;
* the push path: ``POST /admin/features/...`` (admin token) and ``modelyard features push`` write
  fresher values the next request reads; ``/metrics`` counts hits, misses and the values' age;
* the embedded store: ``modelyard features materialise`` into a SQLite file, a server on it, parity again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from modelyard.core.config import Config, load_config
from modelyard.core.contracts.columns import RAW_PREFIX
from modelyard.core.featurespec import FittedSpec
from modelyard.core.online import entry_key, open_store
from modelyard.pipeline import snapshots
from modelyard.pipeline.build import build_all
from modelyard.pipeline.online import serving_env, store_from_config, window_ends
from modelyard.training.mlflow_log import raw_example
from modelyard.training.train import train_pair
from tests.bench.serving import ServerProcess

REPO = Path(__file__).resolve().parents[2]
FAMILY, REGION, FEATURE, KEY = "driver_acceptance", "jakarta", "area_demand_index", "pickup_area"
REDIS_URL = "redis://127.0.0.1:6379/0"
TOKEN = "online-test-token"


@pytest.fixture(scope="module")
def environ(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    prefix = f"it-online-{uuid.uuid4().hex[:12]}"
    values = {
        "MODELYARD_STORAGE__ROOT": str(tmp_path_factory.mktemp("online")),
        "MODELYARD_DATA__SYNTHETIC__ROWS": "3000",
        "MODELYARD_PROJECT": "it-online",
        "MODELYARD_MLFLOW__MODEL_NAME_TEMPLATE": "it-online-{family}-{region}",
        "MODELYARD_ONLINE__STORE": "redis",
        "MODELYARD_ONLINE__URL": REDIS_URL,
        "MODELYARD_ONLINE__PREFIX": prefix,
    }
    yield values
    assert open_store(REDIS_URL, 60).delete(prefix) >= 0


@pytest.fixture(scope="module")
def config(environ: dict[str, str]) -> Config:
    loaded = load_config(REPO / "modelyard.yaml", environ=environ)
    results = build_all(loaded, families=[FAMILY], regions=[REGION])
    assert [r.status for r in results] == ["published"], [r.reason for r in results]
    return loaded


@pytest.fixture(scope="module")
def snapshot(config: Config) -> tuple[snapshots.SnapshotMeta, pd.DataFrame, FittedSpec]:
    meta = snapshots.latest_snapshot(config.storage.features_dir, FAMILY, REGION)
    frame = snapshots.load_frame(config.storage.features_dir, meta)
    return meta, frame, FittedSpec.from_dict(meta.feature_spec or {})


def test_the_build_materialised_each_areas_newest_aggregate(config: Config, snapshot: Any) -> None:
    meta, frame, fitted = snapshot
    assert fitted.raw_inputs.count(KEY) == 1
    assert [f.name for f in fitted.online] == [FEATURE]
    newest = frame.drop_duplicates(f"{RAW_PREFIX}{KEY}", keep="last")
    ends = window_ends(newest["event_time"], "Asia/Jakarta", fitted.online[0])
    store = store_from_config(config.online, config.storage.local_dir)
    keys = [entry_key(config.online.prefix, FAMILY, REGION, FEATURE, k) for k in newest[f"{RAW_PREFIX}{KEY}"]]
    stored = store.read(keys)
    assert len(stored) >= 6
    assert all(s is not None for s in stored)
    assert [s.value for s in stored if s] == pytest.approx(newest[FEATURE].tolist())
    assert [s.window_end for s in stored if s] == ends.tolist()
    assert {s.source for s in stored if s} == {f"snapshot:{meta.digest}"}
    hour_of_newest = newest["event_time"].dt.tz_convert("Asia/Jakarta").dt.floor("h") + pd.Timedelta(hours=1)
    assert ends.tolist() == [t.timestamp() for t in hour_of_newest]


@pytest.fixture(scope="module")
def model_uri(config: Config, mlflow_server: Any) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as patch:  # the module's MLflow client, restored afterwards
        patch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
        patch.setenv("MLFLOW_REGISTRY_URI", mlflow_server.url)
        mlflow.set_tracking_uri(mlflow_server.url)
        mlflow.set_registry_uri(mlflow_server.url)
        result = train_pair(config, FAMILY, REGION, tracking_uri=mlflow_server.url)
        assert result.status == "registered", result.reason
        yield f"models:/{result.model_name}/{result.version}"


def _serve(tmp_path: Path, uri: str, tracking: str, env: dict[str, str]) -> ServerProcess:
    variant = {"name": "champion", "model_uri": uri, "weight": 100}
    plan = {"version": 1, "services": [{"family": FAMILY, "region": REGION, "variants": [variant]}]}
    plan_path = tmp_path / f"plan-{uuid.uuid4().hex[:6]}.yaml"
    plan_path.write_text(yaml.safe_dump(plan))
    # A generous bound: the machine is shared, and a lookup past it would serve the default (counted a timeout).
    env = {**env, "MODELYARD_SERVE_ADMIN_TOKEN": TOKEN, "MODELYARD_SERVE_ONLINE_TIMEOUT_MS": "1000"}
    server = ServerProcess.start(plan_path, tracking, env=env)
    server.wait_ready(timeout=180)
    return server


def _newest_windows(frame: pd.DataFrame, fitted: FittedSpec) -> pd.DataFrame:
    """The snapshot rows of each area's newest window: the rows whose aggregate the store holds."""
    ends = window_ends(frame["event_time"], "Asia/Jakarta", fitted.online[0])
    last = pd.Series(ends).groupby(frame[f"{RAW_PREFIX}{KEY}"].to_numpy()).transform("max").to_numpy()
    return frame[ends == last]


def _predict(url: str, records: list[dict[str, Any]]) -> np.ndarray:
    response = httpx.post(f"{url}/v1/predict/{FAMILY}/{REGION}", json=records, timeout=30)
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["predictions"])


def _offline(uri: str, rows: pd.DataFrame, fitted: FittedSpec) -> np.ndarray:
    model = mlflow.xgboost.load_model(uri)
    return np.asarray(model.predict_proba(rows[fitted.names].astype("float64"))[:, 1])


def _lookups(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("modelyard_online_lookups_total{", "modelyard_online_value_age_seconds_count")):
            name, value = line.rsplit(" ", 1)
            outcome = name.split('outcome="')[1].split('"')[0] if "outcome=" in name else "age_count"
            out[outcome] = out.get(outcome, 0.0) + float(value)
    return out


def test_served_with_lookups_equals_offline_and_the_push_path_refreshes(
    config: Config, snapshot: Any, model_uri: str, mlflow_server: Any, tmp_path: Path
) -> None:
    _, frame, fitted = snapshot
    rows = _newest_windows(frame, fitted)
    raw = raw_example(fitted, rows).drop(columns=[FEATURE]).to_dict("records")
    server = _serve(tmp_path, model_uri, mlflow_server.url, serving_env(config))
    try:
        np.testing.assert_allclose(_predict(server.url, raw), _offline(model_uri, rows, fitted), atol=1e-6, rtol=0)
        assert _lookups(server.url) == {"hit": len(raw), "age_count": len(raw)}

        # An area the store lacks gets the default; a value the client sends wins.
        unknown = {**raw[0], KEY: "no_such_area"}
        sent = {**raw[0], FEATURE: 3.0}
        expected = rows.head(1).assign(**{FEATURE: 1.0}), rows.head(1).assign(**{FEATURE: 3.0})
        np.testing.assert_allclose(_predict(server.url, [unknown, sent]), np.concatenate(
            [_offline(model_uri, expected[0], fitted), _offline(model_uri, expected[1], fitted)]
        ), atol=1e-6, rtol=0)  # fmt: skip
        counted = _lookups(server.url)
        assert (counted["miss"], counted["sent"]) == (1, 1)

        # The admin push endpoint: token required, checked values, read by the next request.
        area = str(rows[f"{RAW_PREFIX}{KEY}"].iloc[0])
        push = {"values": [{"feature": FEATURE, "key": area, "value": 4.5, "window_end": "2030-01-01T00:00:00Z"}]}
        path = f"{server.url}/admin/features/{FAMILY}/{REGION}"
        assert httpx.post(path, json=push, timeout=10).status_code == 401
        bad = httpx.post(path, json={"values": [{"feature": "surge_multiplier", "key": area, "value": 1}]},
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)  # fmt: skip
        assert bad.status_code == 422, bad.text
        assert bad.json()["field"] == "values[0].feature", bad.text
        done = httpx.post(path, json=push, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert done.status_code == 200, done.text
        assert done.json()["written"] == 1, done.text
        pushed = rows.head(1).assign(**{FEATURE: 4.5})
        np.testing.assert_allclose(_predict(server.url, raw[:1]), _offline(model_uri, pushed, fitted), atol=1e-6)

        # The CLI push: an older window is skipped, a newer one lands.
        older = _cli(["push", "-f", FAMILY, "-r", REGION, "--feature", FEATURE, "--key", area, "--value", "0.1",
                      "--window-end", "2029-01-01T00:00:00+00:00"], config)  # fmt: skip
        assert "0 of 1 values written" in older.stdout, older.stdout
        assert "newer window" in older.stdout, older.stdout
        newer = _cli(["push", "-f", FAMILY, "-r", REGION, "--feature", FEATURE, "--key", area, "--value", "2.0",
                      "--window-end", "2031-01-01T00:00:00+00:00"], config)  # fmt: skip
        assert "1 of 1 values written" in newer.stdout, newer.stdout
        fresher = rows.head(1).assign(**{FEATURE: 2.0})
        np.testing.assert_allclose(_predict(server.url, raw[:1]), _offline(model_uri, fresher, fitted), atol=1e-6)
        refused = _cli(["push", "-f", FAMILY, "-r", REGION, "--feature", "driver_rating", "--key", area,
                        "--value", "1"], config, check=False)  # fmt: skip
        assert refused.returncode == 2, refused.stderr
        assert "not an online feature" in refused.stderr, refused.stderr
        assert "--feature is 'driver_rating'" in refused.stderr, refused.stderr  # the option the user gave
    finally:
        server.stop()


def test_the_embedded_store_serves_the_same_answers(
    config: Config, snapshot: Any, model_uri: str, mlflow_server: Any, tmp_path: Path, environ: dict[str, str]
) -> None:
    _, frame, fitted = snapshot
    embedded = {**environ, "MODELYARD_ONLINE__STORE": "embedded", "MODELYARD_ONLINE__URL": ""}
    done = _cli(["materialise", "-f", FAMILY, "-r", REGION], config, env=embedded)
    assert "values written to sqlite:///" in done.stdout, done.stdout
    local = load_config(REPO / "modelyard.yaml", environ={**embedded})
    env = serving_env(local)
    assert env["MODELYARD_SERVE_ONLINE_URL"].endswith("online/online.sqlite")
    rows = _newest_windows(frame, fitted)
    raw = raw_example(fitted, rows).drop(columns=[FEATURE]).to_dict("records")
    server = _serve(tmp_path, model_uri, mlflow_server.url, env)
    try:
        np.testing.assert_allclose(_predict(server.url, raw), _offline(model_uri, rows, fitted), atol=1e-6, rtol=0)
        assert _lookups(server.url)["hit"] == len(raw)
    finally:
        server.stop()


def _cli(
    args: list[str], config: Config, *, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    full = {**base, **(env or _environ_of(config)), "COLUMNS": "200"}
    command = [
        str(Path(sys.executable).with_name("modelyard")),
        "features",
        *args,
        "--config",
        str(REPO / "modelyard.yaml"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=full, timeout=120)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def _environ_of(config: Config) -> dict[str, str]:
    return {
        "MODELYARD_STORAGE__ROOT": str(config.storage.root),
        "MODELYARD_DATA__SYNTHETIC__ROWS": "3000",
        "MODELYARD_ONLINE__STORE": config.online.store,
        "MODELYARD_ONLINE__URL": config.online.url or "",
        "MODELYARD_ONLINE__PREFIX": config.online.prefix,
    }
