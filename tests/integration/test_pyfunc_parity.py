"""The registered model is a real MLflow model on raw rows: ``mlflow.pyfunc`` answers what the server answers.

Trains a classifier (``driver_acceptance``) and a regressor (``pickup_eta``) for Jakarta against the
session's real ``mlflow server``, makes each the champion, and sends the snapshot's rows as raw
fields to a real ``modelyard serve`` (over HTTP) and to ``mlflow.pyfunc.load_model("models:/…@champion")``:

* the pyfunc model equals the server's native engine (the same featurisation and model, in-process
  through the serving runtime) bit for bit, and the server's HTTP answers (ONNX for small batches)
  within the server's own ONNX parity bound, which is at most 1e-6 for probabilities;
* training logs no "Failed to validate serving input example" and MLflow validates the example;
* ``mlflow models serve --env-manager local`` answers the same predictions.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.models import Model, validate_serving_input

from modelyard.core.config import Config, load_config
from modelyard.core.contracts.registry import CHAMPION_ALIAS
from modelyard.core.featurespec import FittedSpec
from modelyard.deploy.serving import engines
from modelyard.deploy.serving.runtime import ServedModel, load_model
from modelyard.pipeline import snapshots
from modelyard.pipeline.build import build_all
from modelyard.training.mlflow_log import raw_example
from modelyard.training.train import TrainResult, train_pair
from tests.bench.serving import ServerProcess

REPO = Path(__file__).resolve().parents[2]
REGION = "jakarta"
FAMILIES = ("driver_acceptance", "pickup_eta")  # a classifier and a regressor
ROWS = 1200


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = tmp_path_factory.mktemp("pyfunc-parity")
    loaded = load_config(
        REPO / "modelyard.yaml",
        environ={
            "MODELYARD_STORAGE__ROOT": str(root),
            "MODELYARD_DATA__SYNTHETIC__ROWS": "2000",
            "MODELYARD_PROJECT": "it-pyfunc",
            "MODELYARD_MLFLOW__MODEL_NAME_TEMPLATE": "it-pyfunc-{family}-{region}",
        },
    )
    results = build_all(loaded, families=list(FAMILIES), regions=[REGION])
    assert [r.status for r in results] == ["published", "published"], [r.reason for r in results]
    return loaded


@pytest.fixture(scope="module")
def trained(config: Config, mlflow_server: Any) -> tuple[dict[str, TrainResult], list[str]]:
    """Both families trained and promoted to champion, with every log record and warning training emitted."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    loggers = [logging.getLogger(), logging.getLogger("mlflow")]  # MLflow's logger does not propagate to the root
    for logger in loggers:
        logger.addHandler(handler)
    logging.getLogger("mlflow.models.model").warning("capture probe")
    try:
        with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            patch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)  # training points the process at the server
            patch.setenv("MLFLOW_REGISTRY_URI", mlflow_server.url)
            results = {
                family: train_pair(config, family, REGION, tracking_uri=mlflow_server.url) for family in FAMILIES
            }
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    probe = records[0]  # the logger that warns "Failed to validate serving input example" reaches us
    assert (probe.name, probe.getMessage()) == ("mlflow.models.model", "capture probe")
    # A record reaches both handlers once an earlier test made "mlflow" propagate: each counts once.
    records = [r for r in dict.fromkeys(records) if r is not probe]
    emitted = [f"{r.name} {r.levelname}: {r.getMessage()}" for r in records]
    emitted += [f"{w.filename} {w.category.__name__}: {w.message}" for w in caught]
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    for result in results.values():
        assert result.status == "registered", result.reason
        client.set_registered_model_alias(result.model_name, CHAMPION_ALIAS, str(result.version))
    return results, emitted


def raw_rows(config: Config, family: str) -> pd.DataFrame:
    """The snapshot's last rows as a client sends them (the time as ISO-8601 in Jakarta's offset)."""
    meta = snapshots.latest_snapshot(config.storage.features_dir, family, REGION)
    frame = snapshots.load_frame(config.storage.features_dir, meta)
    return raw_example(FittedSpec.from_dict(meta.feature_spec or {}), frame.tail(ROWS))


def test_training_logs_a_model_whose_example_mlflow_validates_without_warnings(trained, mlflow_uri: str) -> None:
    results, emitted = trained
    assert [line for line in emitted if "Failed to validate serving input example" in line] == []
    # (The snapshot's dataset schema, inferred by mlflow.log_input, may still hint at its int columns.)
    about_the_model = ("input example", "serving input", "signature", "mlflow.models", "mlflow/models/")
    found = [line for line in emitted if any(words in line.lower() for words in about_the_model)]
    assert not found, "\n".join(found)
    for result in results.values():
        path = mlflow.artifacts.download_artifacts(f"models:/{result.model_name}@{CHAMPION_ALIAS}")
        model = Model.load(path)
        assert model.flavors["python_function"]["loader_module"] == "modelyard.training.pyfunc_model"
        assert model.signature is not None
        assert model.signature.outputs.to_dict()[0]["tensor-spec"]["dtype"] == "float64"  # probabilities, not labels
        serving_input = model.get_serving_input(path)
        assert serving_input is not None
        assert "event_time" in serving_input
        # Training skips Model.log's own check (it only warns, issue 26); MLflow's validation is run here.
        assert len(validate_serving_input(path, serving_input)) == 5


def test_pyfunc_on_raw_rows_answers_what_the_server_answers(config: Config, trained, mlflow_uri: str, tmp_path) -> None:
    results, _ = trained
    uris = {family: f"models:/{result.model_name}@{CHAMPION_ALIAS}" for family, result in results.items()}
    rows = {family: raw_rows(config, family) for family in FAMILIES}
    offline = {family: mlflow.pyfunc.load_model(uris[family]).predict(rows[family]) for family in FAMILIES}
    assert 0 < offline["driver_acceptance"].min() < offline["driver_acceptance"].max() < 1  # probabilities
    assert len(np.unique(offline["pickup_eta"])) > 100  # values, not classes

    for family in FAMILIES:  # the server's own featurisation and native engine, in process: bit for bit
        served = load_model(uris[family], tmp_path)
        try:
            np.testing.assert_array_equal(offline[family], _native(served, _records(rows[family])))
        finally:
            served.release()

    services = [_service(family, uris[family]) for family in FAMILIES]
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump({"version": 1, "services": services}))
    with ServerProcess.start(plan_path, mlflow_uri) as server:
        server.wait_ready(timeout=240)
        for family in FAMILIES:
            records = _records(rows[family])
            for chunk in (50, len(records)):  # small batches (ONNX when it is exact) and one large one
                answered = _predict_all(server.url, family, records, chunk)
                bound = engines.PARITY_ATOL + engines.PARITY_RTOL * np.abs(offline[family])
                assert np.all(np.abs(answered - offline[family]) <= bound), (family, chunk)
                if family == "driver_acceptance":
                    np.testing.assert_allclose(answered, offline[family], atol=1e-6, rtol=0)


def test_mlflow_models_serve_answers_the_same_on_raw_rows(config: Config, trained, mlflow_uri: str, tmp_path) -> None:
    results, _ = trained
    uri = f"models:/{results['driver_acceptance'].model_name}@{CHAMPION_ALIAS}"
    rows = raw_rows(config, "driver_acceptance").tail(100)
    expected = mlflow.pyfunc.load_model(uri).predict(rows)
    port = _free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", uri, "--env-manager", "local"]
    log = tmp_path / "mlflow-models-serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for(url, process, log)
        body = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
        response = httpx.post(f"{url}/invocations", json=body, timeout=60)
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(response.json()["predictions"], expected, atol=1e-12, rtol=0)
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as JSON records, as a client's request carries them."""
    return list(json.loads(frame.to_json(orient="records")))


def _native(served: ServedModel, records: list[dict[str, Any]]) -> np.ndarray:
    """The server's answer from its native model: a batch larger than any the ONNX path takes."""
    matrix = served.prepare(records)
    assert len(matrix) > engines.CALIBRATION_MAX_ROWS
    dispatch = served._predict_fn
    native = dispatch.native if isinstance(dispatch, engines.SmallBatchDispatch) else dispatch
    return np.asarray(native(matrix), dtype=np.float64)


def _service(family: str, uri: str) -> dict[str, Any]:
    return {"family": family, "region": REGION, "variants": [{"name": "champion", "model_uri": uri, "weight": 100}]}


def _predict_all(url: str, family: str, records: list[dict[str, Any]], chunk: int) -> np.ndarray:
    out: list[float] = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for start in range(0, len(records), chunk):
            response = client.post(f"/v1/predict/{family}/{REGION}", json=records[start : start + chunk])
            assert response.status_code == 200, response.text
            out += response.json()["predictions"]
    return np.asarray(out)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"`mlflow models serve` exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"`mlflow models serve` did not answer /ping within {timeout:.0f} s")
