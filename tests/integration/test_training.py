"""Training against a real ``mlflow server`` (SQLite backend, local artifacts): runs, registry, idempotency."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.entities import RunStatus

from modelyard.core.config import Config, load_config
from modelyard.core.contracts.registry import CHALLENGER_ALIAS
from modelyard.core.featurespec import FittedSpec
from modelyard.pipeline import snapshots
from modelyard.pipeline.build import build_all
from modelyard.training.mlflow_log import FEATURE_SPEC_ARTIFACT, experiment_name, raw_example
from modelyard.training.train import TrainResult, train_all, train_pair

REPO = Path(__file__).resolve().parents[2]
REGIONS = ["jakarta", "bangkok"]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """The demo config with its own storage and its own model/experiment names on the shared server."""
    root = tmp_path_factory.mktemp("training-it")
    loaded = load_config(
        REPO / "modelyard.yaml",
        environ={
            "MODELYARD_STORAGE__ROOT": str(root),
            "MODELYARD_DATA__SYNTHETIC__ROWS": "2000",
            "MODELYARD_PROJECT": "it-training",
            "MODELYARD_MLFLOW__MODEL_NAME_TEMPLATE": "it-training-{family}-{region}",
        },
    )
    results = build_all(loaded, regions=REGIONS)
    assert all(r.status == "published" for r in results), [(r.family, r.region, r.reason) for r in results]
    return loaded


@pytest.fixture
def client(mlflow_uri: str) -> MlflowClient:
    return MlflowClient(mlflow_uri, mlflow_uri)


def versions(client: MlflowClient, name: str) -> list[str]:
    return sorted((v.version for v in client.search_model_versions(f"name = '{name}'")), key=int)


def artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def test_training_registers_a_tagged_challenger_with_everything_logged(
    config: Config, client: MlflowClient, mlflow_uri: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train_pair(config, "driver_acceptance", "jakarta", tracking_uri=mlflow_uri)
    meta = snapshots.latest_snapshot(config.storage.features_dir, "driver_acceptance", "jakarta")

    assert result.status == "registered"
    stderr = capfd.readouterr().err  # what an Airflow task log shows as errors
    assert "Successfully registered model" not in stderr
    assert "Created version" not in stderr
    # MLflow's warnings on the logged dataset (the source "can be interpreted in multiple ways", the
    # integer-column hint) said nothing wrong, above every `modelyard train` table and in every task log.
    noise = [str(w.message) for w in caught if "dataset source" in str(w.message) or "integer column" in str(w.message)]
    assert noise == []
    assert result.model_name == "it-training-driver_acceptance-jakarta"
    version = client.get_model_version_by_alias(result.model_name, CHALLENGER_ALIAS)
    assert version.version == result.version
    assert version.tags["data_digest"] == meta.digest
    assert version.tags["run_id"] == result.run_id
    assert version.tags["config_hash"] == config.config_hash()
    assert version.tags["input_key"] == result.input_key
    assert float(version.tags["holdout_auc"]) == pytest.approx(result.metrics["holdout_auc"], rel=1e-5)
    assert version.run_id == result.run_id

    run = client.get_run(result.run_id)
    assert run.info.status == RunStatus.to_string(RunStatus.FINISHED)
    assert run.info.run_name == f"driver_acceptance/jakarta/{meta.digest[:8]}"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == experiment_name(config, "driver_acceptance")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on the runs
    assert result.run_url == f"{mlflow_uri}/#/experiments/{experiment.experiment_id}/runs/{result.run_id}"
    for key, value in {"family": "driver_acceptance", "region": "jakarta", "data_digest": meta.digest,
                       "algorithm": "xgboost", "config_hash": config.config_hash()}.items():  # fmt: skip
        assert run.data.tags[key] == value
    assert len(run.data.tags["git_commit"]) in (7, 40) or run.data.tags["git_commit"] == "unknown"
    assert run.data.params["max_depth"] == str(config.family("driver_acceptance").params["max_depth"])
    assert run.data.params["seed"] == str(config.seed)
    assert run.data.params["split_holdout_start"] < run.data.params["split_end"]
    expected = ["holdout_auc", "valid_auc", "holdout_logloss", "holdout_brier", "holdout_precision", "holdout_recall",
                "holdout_auc__hour_morning", "holdout_auc__experienced_drivers", "baseline_holdout_auc"]  # fmt: skip
    assert set(expected) <= set(run.data.metrics), set(expected) - set(run.data.metrics)
    assert run.data.metrics["holdout_auc"] > 0.6

    dataset = run.inputs.dataset_inputs[0].dataset
    assert dataset.digest == meta.digest
    assert meta.digest in dataset.source
    artifacts = artifact_paths(client, result.run_id)
    assert {"plots/feature_importance.png", "plots/roc_curve.png", "plots/precision_recall.png",
            "plots/calibration.png", "data/snapshot.json"} <= artifacts  # fmt: skip
    assert f"data/{meta.validation.report}" in artifacts

    import mlflow

    # The signature shows the raw fields a client sends; the fitted spec logged with it computes the features.
    assert FEATURE_SPEC_ARTIFACT in artifacts
    assert version.tags["feature_spec"] == FEATURE_SPEC_ARTIFACT
    assert meta.feature_spec is not None
    fitted = FittedSpec.from_dict(meta.feature_spec)
    loaded = mlflow.pyfunc.load_model(f"models:/{result.model_name}@{CHALLENGER_ALIAS}")
    assert loaded.metadata.signature is not None
    assert loaded.metadata.get_input_schema().input_names() == [*fitted.raw_inputs, *fitted.requested]
    assert fitted.names == config.family("driver_acceptance").features
    native = mlflow.xgboost.load_model(f"models:/{result.model_name}@{CHALLENGER_ALIAS}")
    example = snapshots.load_frame(config.storage.features_dir, meta).tail(3)
    assert len(native.predict(example[fitted.names].astype("float64"))) == 3
    # The pyfunc flavour takes the raw rows and answers probabilities (ADR 0017; parity: test_pyfunc_parity.py).
    expected = native.predict_proba(example[fitted.names].astype("float32"))[:, 1]
    np.testing.assert_allclose(loaded.predict(raw_example(fitted, example)), expected, atol=1e-6, rtol=0)


def test_rerun_on_the_same_inputs_creates_nothing_and_force_reproduces(
    config: Config, client: MlflowClient, mlflow_uri: str
) -> None:
    first = train_pair(config, "pickup_eta", "bangkok", tracking_uri=mlflow_uri)
    runs_before = client.search_runs([first_experiment(client, config)], max_results=1000)
    again = train_pair(config, "pickup_eta", "bangkok", tracking_uri=mlflow_uri)
    assert (again.status, again.version, again.run_id) == ("unchanged", first.version, first.run_id)
    assert versions(client, first.model_name) == [first.version]
    assert len(client.search_runs([first_experiment(client, config)], max_results=1000)) == len(runs_before)

    forced = train_pair(config, "pickup_eta", "bangkok", tracking_uri=mlflow_uri, force=True)
    assert forced.status == "registered"
    assert int(forced.version) == int(first.version) + 1
    assert client.get_model_version_by_alias(first.model_name, CHALLENGER_ALIAS).version == forced.version
    assert forced.metrics == first.metrics  # same snapshot + config + seed


def first_experiment(client: MlflowClient, config: Config) -> str:
    experiment = client.get_experiment_by_name(experiment_name(config, "pickup_eta"))
    assert experiment is not None
    return str(experiment.experiment_id)


def test_concurrent_trainings_lose_no_versions(config: Config, client: MlflowClient, mlflow_uri: str) -> None:
    jobs = [("pickup_eta", "jakarta", True), ("driver_acceptance", "bangkok", True), ("pickup_eta", "jakarta", True)]
    results: list[TrainResult] = []
    errors: list[BaseException] = []
    before = versions(client, config.mlflow.model_name("pickup_eta", "jakarta"))

    def work(family: str, region: str, force: bool) -> None:
        try:
            results.append(train_pair(config, family, region, tracking_uri=mlflow_uri, force=force))
        except BaseException as exc:  # surfaced below with the assertion
            errors.append(exc)

    threads = [threading.Thread(target=work, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors
    assert sorted((r.family, r.region) for r in results) == sorted((f, r) for f, r, _ in jobs)
    eta = [r for r in results if r.family == "pickup_eta"]
    assert len({r.version for r in eta}) == 2  # each call kept its own version number
    assert versions(client, eta[0].model_name) == sorted([*before, *(r.version for r in eta)], key=int)
    for result in results:
        assert client.get_model_version(result.model_name, result.version).tags["run_id"] == result.run_id


def test_two_trainings_racing_on_the_same_inputs_leave_one_version(
    config: Config, client: MlflowClient, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both found nothing before registering (two hosts at once): the younger version gives way."""
    from modelyard.training import registry

    first = train_pair(config, "driver_acceptance", "bangkok", tracking_uri=mlflow_uri)
    before = versions(client, first.model_name)
    real, calls = registry.find_version, []

    def raced(*args: object) -> object:
        calls.append(args)
        return None if len(calls) <= 1 else real(*args)  # the check before training saw nothing

    monkeypatch.setattr(registry, "find_version", raced)
    second = train_pair(config, "driver_acceptance", "bangkok", tracking_uri=mlflow_uri)
    assert (second.status, second.version) == ("unchanged", first.version)
    assert f"trained at the same time as run {first.run_id}" in second.reason
    assert versions(client, first.model_name) == before  # the duplicate version was deleted
    experiment = client.get_experiment_by_name(experiment_name(config, "driver_acceptance"))
    duplicate = client.search_runs([experiment.experiment_id], "tags.duplicate_of != ''")
    assert [run.data.tags["duplicate_of"] for run in duplicate][-1:] == [f"{first.model_name}/{first.version}"]


def test_failed_training_marks_the_run_failed_and_registers_nothing(
    config: Config, client: MlflowClient, mlflow_uri: str
) -> None:
    features_dir = config.storage.features_dir
    good = snapshots.load_frame(features_dir, snapshots.latest_snapshot(features_dir, "driver_acceptance", "jakarta"))
    broken = good.assign(accepted=good["accepted"].astype("float64"))
    broken.loc[broken.index[::7], "accepted"] = np.nan  # a label column with holes slipped through
    meta, _ = snapshots.publish(
        features_dir, broken, family="driver_acceptance", region="singapore", target="accepted",
        time_column="event_time", source="test", validation=snapshots.ValidationSummary(success=True),
    )  # fmt: skip
    name = config.mlflow.model_name("driver_acceptance", "singapore")

    with pytest.raises(Exception, match=r"(?i)label|nan"):
        train_pair(config, "driver_acceptance", "singapore", tracking_uri=mlflow_uri)

    assert versions(client, name) == []
    experiment = client.get_experiment_by_name(experiment_name(config, "driver_acceptance"))
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], f"tags.data_digest = '{meta.digest}'")
    assert [run.info.status for run in runs] == ["FAILED"]


def test_too_few_rows_is_a_recorded_skip_and_others_still_train(
    config: Config, client: MlflowClient, mlflow_uri: str
) -> None:
    features_dir = config.storage.features_dir
    good = snapshots.load_frame(features_dir, snapshots.latest_snapshot(features_dir, "pickup_eta", "jakarta"))
    snapshots.publish(
        features_dir, good.tail(120).reset_index(drop=True), family="pickup_eta", region="hanoi",
        target="pickup_eta_min", time_column="event_time", source="test",
        validation=snapshots.ValidationSummary(success=True),
    )  # fmt: skip

    results = train_all(
        config, families=["pickup_eta"], regions=["hanoi", "jakarta", "surabaya"], tracking_uri=mlflow_uri
    )

    by_region = {r.region: r for r in results}
    assert by_region["hanoi"].status == "skipped"
    assert "120 rows, fewer than data.min_rows=500" in (by_region["hanoi"].reason or "")
    assert versions(client, config.mlflow.model_name("pickup_eta", "hanoi")) == []
    assert by_region["jakarta"].status == "unchanged"  # trained by an earlier test
    assert by_region["surabaya"].status == "failed"
    assert "no valid snapshot for family 'pickup_eta', region 'surabaya'" in (by_region["surabaya"].reason or "")


def test_training_a_pair_reads_back_nothing_it_knows(
    config: Config, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 26: no read of the registered model before each registry write, no run read to print its URL."""
    from mlflow.utils import rest_utils

    real, endpoints = rest_utils.http_request, []

    def recorded(host_creds: object, endpoint: str, method: str, *args: object, **kwargs: object) -> object:
        endpoints.append(f"{method} {endpoint.split('/mlflow/', 1)[-1]}")
        return real(host_creds, endpoint, method, *args, **kwargs)

    monkeypatch.setattr(rest_utils, "http_request", recorded)
    result = train_pair(config, "pickup_eta", "bangkok", tracking_uri=mlflow_uri, force=True)

    assert result.status == "registered"
    assert endpoints.count("GET registered-models/get") == 1  # the description's history, read once
    ended = endpoints.index("POST runs/update")
    assert "GET runs/get" not in endpoints[ended:], endpoints[ended:]
    assert "POST registered-models/alias" in endpoints  # the challenger alias is still written
