"""A model version from someone else's notebook: promoted by hand, judged as a challenger, monitored.

A data scientist logs an xgboost model with ``mlflow.xgboost.log_model`` under a pair's registered
name; the team promotes it with ``modelyard promote --version N --reason ...`` (the gates cannot run on
it: it names no snapshot). Once it serves, the hourly monitoring must not fail on it: it has no training
window to measure drift against, so it gets the verdict ``no_reference`` (volume and errors are still
recorded), which ``modelyard status`` shows, rather than an error every hour.

Real MLflow server; the samples are written as the serving process writes them.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from modelyard.core.contracts import prediction_log
from modelyard.deploy.cli import app

REPO = Path(__file__).resolve().parents[2]
FAMILY = "driver_acceptance"


@pytest.fixture
def config_path(tmp_path: Path, mlflow_uri: str) -> Path:
    raw = yaml.safe_load((REPO / "modelyard.yaml").read_text())
    raw["families"] = [f for f in raw["families"] if f["name"] == FAMILY]
    raw["storage"] = {"root": str(tmp_path / "data")}
    raw["mlflow"] = {"tracking_uri": mlflow_uri, "model_name_template": f"{{family}}-{{region}}-{uuid.uuid4().hex[:8]}"}
    path = tmp_path / "modelyard.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def notebook_version(model_name: str) -> str:
    """What a notebook does: fit on a few columns of its own, log and register under the pair's name."""
    import mlflow
    import xgboost as xgb

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"pickup_distance_km": rng.uniform(0, 10, 300), "driver_rating": rng.uniform(3, 5, 300)})
    model = xgb.XGBClassifier(n_estimators=10).fit(frame, (frame.pickup_distance_km < 4).astype(int))
    mlflow.set_experiment(f"notebook-{uuid.uuid4().hex[:6]}")
    with mlflow.start_run():
        info = mlflow.xgboost.log_model(
            model, name="model", input_example=frame.head(3), registered_model_name=model_name
        )
    return str(info.registered_model_version)


def write_samples(samples_dir: Path, model_name: str, version: str, rows: int) -> None:
    """``rows`` sampled requests to Jakarta answered by ``model_name`` v``version``, as the server logs them."""
    folder = samples_dir / FAMILY / "jakarta" / version
    folder.mkdir(parents=True)
    at = dt.datetime.now(dt.UTC).timestamp() - 60
    lines = [
        prediction_log.prediction_entry(
            at=at, kind=prediction_log.PREDICTION, request_id=f"r{i}", labels=(FAMILY, "jakarta", "primary", version),
            plan_digest="sha256:test", predictions=[0.4], features=[[2.5 + i % 5, 4.5]], model=model_name,
        )
        for i in range(rows)
    ]  # fmt: skip
    with gzip.open(folder / f"samples{prediction_log.SUFFIX}", "wt") as handle:
        handle.write("".join(json.dumps(line) + "\n" for line in lines))


def test_a_notebook_version_promoted_by_hand_is_monitored_without_a_reference(
    config_path: Path, mlflow_uri: str, tmp_path: Path
) -> None:
    import mlflow
    from mlflow import MlflowClient

    from modelyard.core.config import load_config

    config = load_config(config_path, environ={})
    name = config.mlflow.model_name(FAMILY, "jakarta")
    version = notebook_version(name)
    runner = CliRunner(env={"COLUMNS": "200"})  # tables one line a row
    common = ["--config", str(config_path), "--tracking-uri", mlflow_uri]

    promoted = runner.invoke(
        app, ["promote", "-f", FAMILY, "-r", "jakarta", "--version", version, "--reason", "alice's notebook", *common]
    )
    assert promoted.exit_code == 0, promoted.output
    assert "gates not evaluated" in " ".join(promoted.output.split())
    # The alias moved; what serves follows a deploy, and the CLI says so (no Airflow event from a terminal).
    assert f"champion moved: {FAMILY}/jakarta v{version}. What serves changes when `modelyard deploy`" in (
        promoted.output
    )

    # Without a feature spec, the fields a client sends are its signature's columns (the rollout guard's view).
    from modelyard.deploy.rollout.raw_fields import VersionGone, version_fields

    client = MlflowClient(mlflow_uri, mlflow_uri)
    mlflow.set_tracking_uri((tmp_path / "elsewhere").as_uri())  # MLflow's current server is not the deploy's
    try:
        assert version_fields(client, name, version, tmp_path / "fields") == ["pickup_distance_km", "driver_rating"]
        # A version deleted in the MLflow UI while it served is "gone", not a failure to plan (VersionGone).
        with pytest.raises(VersionGone, match=f"'{name}' v999 is no longer in the registry"):
            version_fields(client, name, "999", tmp_path / "fields")
    finally:
        mlflow.set_tracking_uri(mlflow_uri)

    write_samples(Path(config.storage.samples_dir), name, version, rows=300)
    measured = runner.invoke(app, ["monitor", "-f", FAMILY, "-r", "jakarta", *common])
    assert measured.exit_code == 0, measured.output  # it used to exit 1: "has no family/region/data_digest tags"
    assert "no_reference" in measured.output
    assert "was not registered by `modelyard train`" in " ".join(measured.output.split())

    tags = client.get_model_version(name, version).tags
    assert tags["monitoring.verdict"] == "no_reference"
    run = client.get_run(tags["monitoring.run_id"])
    assert run.data.metrics["samples_rows"] == 300.0
    assert "drifted_features" in run.data.metrics  # zero: nothing was compared

    # Someone sets the challenger alias on another notebook version in the MLflow UI: the gates cannot
    # score it (no snapshot), so it is rejected with the way to promote it by hand, once; not a failed run.
    challenger = notebook_version(name)
    client.set_registered_model_alias(name, "challenger", challenger)
    judged = runner.invoke(app, ["promote", "-f", FAMILY, "-r", "jakarta", *common])
    assert judged.exit_code == 0, judged.output  # it used to fail with "GateInputError: ... has no 'family' tag"
    text = " ".join(judged.output.split())
    assert "rejected" in text
    assert f"v{challenger} was not registered by `modelyard train`" in text
    assert f"modelyard promote --version {challenger} --reason" in text
    again = runner.invoke(app, ["promote", "-f", FAMILY, "-r", "jakarta", *common])
    assert again.exit_code == 0, again.output
    assert "already decided" in again.output
    assert client.get_model_version_by_alias(name, "champion").version == version

    shown = runner.invoke(app, ["status", "-f", FAMILY, "-r", "jakarta", *common])
    assert shown.exit_code == 0, shown.output
    row = next(line for line in shown.output.splitlines() if line.startswith(FAMILY))
    assert f"v{version}" in row
    assert "no reference" in row
    assert f"v{challenger} rejected" in row

    # The challenger is deleted in the MLflow UI after some traffic reached it: its samples stay in the
    # window, and monitoring says so instead of failing every hour until they age out.
    write_samples(Path(config.storage.samples_dir), name, challenger, rows=20)
    client.delete_model_version(name, challenger)
    after = runner.invoke(app, ["monitor", "-f", FAMILY, "-r", "jakarta", *common])
    assert after.exit_code == 0, after.output  # it used to exit 1: "... which the registry does not have"
    text = " ".join(after.output.split())
    assert "deleted" in text
    assert f"v{challenger} of '{name}' is no longer in the registry" in text
