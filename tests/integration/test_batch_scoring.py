"""Batch scoring end to end: champions trained on the real MLflow server score a multi-chunk table.

``driver_acceptance/jakarta`` (a classifier) and ``pickup_eta/jakarta`` (a regressor) are trained
on small synthetic snapshots and made champions. A CSV of a few thousand raw rows (the time as
ISO-8601 with Jakarta's offset, the raw columns, the demand index by name, a booking id, and rows
of another region mixed in) is scored in chunks of 700 rows; every prediction must equal what the
serving runtime answers for the same raw records (the server's own loading and featurising path)
within 1e-6. A rerun on the same input and version does nothing and says so; a file without a raw
column fails with one line that names the file, the column and what to do; a region without a
champion is scored by its group's pooled champion, a region in another zone (Singapore, pooled with
Jakarta) in its own calendar. The ``batch_scoring`` DAG scores the same table
under ``airflow dags test`` and announces ``modelyard://predictions/driver_acceptance/jakarta``.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient

from modelyard.core.config import Config, load_config
from modelyard.core.featurespec import Calendar, FittedSpec
from modelyard.deploy.batch import output
from modelyard.deploy.batch.errors import BatchInputError
from modelyard.deploy.batch.model import registry_client
from modelyard.deploy.batch.scoring import ScoreRequest, score_pair
from modelyard.deploy.serving.runtime import load_model
from modelyard.pipeline import snapshots
from modelyard.pipeline.build import build_all
from modelyard.promotion.aliases import aliases, move_champion
from modelyard.training.mlflow_log import raw_example
from modelyard.training.train import train_pair

pytestmark = pytest.mark.timeout(900)

REPO = Path(__file__).resolve().parents[2]
FAMILY, REGION, OTHER = "driver_acceptance", "jakarta", "surabaya"
REGRESSOR = "pickup_eta"
ROWS, CHUNK_ROWS = 3000, 700


@dataclasses.dataclass(frozen=True)
class Champion:
    config: Config
    environ: dict[str, str]
    uri: str
    version: str
    table: pd.DataFrame  # the raw rows as a client sends them, booking_id and region included


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory, mlflow_server: Any) -> Champion:
    root = tmp_path_factory.mktemp("batch-scoring")
    environ = {
        "MODELYARD_STORAGE__ROOT": str(root / "data"),
        "MODELYARD_DATA__SYNTHETIC__ROWS": "3000",
        "MODELYARD_PROJECT": "it-batch",
        "MODELYARD_MLFLOW__MODEL_NAME_TEMPLATE": f"it-batch-{uuid.uuid4().hex[:6]}-{{family}}-{{region}}",
    }
    config = load_config(REPO / "modelyard.yaml", environ=environ)
    results = build_all(config, families=[FAMILY], regions=[REGION])
    assert [r.status for r in results] == ["published"], [r.reason for r in results]
    result = train_pair(config, FAMILY, REGION, tracking_uri=mlflow_server.url)
    assert result.status == "registered", result.reason
    client = registry_client(mlflow_server.url)
    move_champion(client, result.model_name, str(result.version), aliases(client, result.model_name))
    return Champion(
        config, environ, f"models:/{result.model_name}/{result.version}", str(result.version), _table(config)
    )


@pytest.fixture(scope="module")
def regressor(champion: Champion, mlflow_server: Any) -> str:
    """``pickup_eta/jakarta`` (a regressor) trained in the same config and made champion; its version's URI."""
    results = build_all(champion.config, families=[REGRESSOR], regions=[REGION])
    assert [r.status for r in results] == ["published"], [r.reason for r in results]
    result = train_pair(champion.config, REGRESSOR, REGION, tracking_uri=mlflow_server.url)
    assert result.status == "registered", result.reason
    client = registry_client(mlflow_server.url)
    move_champion(client, result.model_name, str(result.version), aliases(client, result.model_name))
    return f"models:/{result.model_name}/{result.version}"


def _table(config: Config) -> pd.DataFrame:
    """``ROWS`` raw rows of the snapshot (repeated), a unique booking id each, one in five of another region."""
    meta = snapshots.latest_snapshot(config.storage.features_dir, FAMILY, REGION)
    frame = snapshots.load_frame(config.storage.features_dir, meta)
    fitted = FittedSpec.from_dict(meta.feature_spec or {})
    rows = frame.iloc[np.arange(ROWS) % len(frame)].reset_index(drop=True)
    table = raw_example(fitted, rows)
    table.insert(0, "booking_id", [f"b{index:05d}" for index in range(ROWS)])
    table["region"] = np.where(np.arange(ROWS) % 5 == 4, OTHER, REGION)
    return table


def _served(uri: str, table: pd.DataFrame, calendar: Calendar | None = None) -> np.ndarray:
    """What the serving runtime answers for ``table``'s records, in requests of 50 records (to a service
    in ``calendar``'s region when given: a pooled model serving another region, ADR 0015)."""
    model = load_model(uri)
    try:
        records = table.drop(columns=["booking_id", "region"]).to_dict("records")
        answers = [model.predict(model.prepare(records[i : i + 50], calendar)) for i in range(0, len(records), 50)]
    finally:
        model.release()
    return np.concatenate(answers).astype(np.float64)


def test_a_multi_chunk_csv_scores_as_the_server_answers_and_a_rerun_does_nothing(
    champion: Champion, mlflow_uri: str, tmp_path: Path
) -> None:
    source = tmp_path / "bookings.csv"
    champion.table.to_csv(source, index=False)
    out = tmp_path / "out" / "predictions.parquet"
    request = ScoreRequest(input=str(source), out=str(out), chunk_rows=CHUNK_ROWS)
    client = MlflowClient(mlflow_uri)

    result = score_pair(champion.config, FAMILY, REGION, request, client)

    mine = champion.table[champion.table["region"] == REGION].reset_index(drop=True)
    assert result.status == "scored", result.summary()
    assert result.chunks == -(-ROWS // CHUNK_ROWS)  # every chunk holds rows of the region
    scored = pq.read_table(out).to_pandas()
    assert list(scored.columns) == ["booking_id", "prediction", "model_version", "spec_digest"]
    assert scored["booking_id"].tolist() == mine["booking_id"].tolist()  # other regions' rows skipped, order kept
    assert set(scored["model_version"]) == {int(champion.version)}
    assert scored["spec_digest"].nunique() == 1
    assert scored["prediction"].between(0, 1).all()  # the positive class's probability, not a label
    np.testing.assert_allclose(scored["prediction"].to_numpy(), _served(champion.uri, mine), atol=1e-6, rtol=0)
    footer = output.read_provenance(out)
    assert footer is not None
    assert (footer.version, footer.rows, footer.key) == (
        champion.version,
        len(mine),
        "booking_id",
    )

    before = out.stat().st_mtime_ns
    again = score_pair(champion.config, FAMILY, REGION, request, client)
    assert again.status == "unchanged"
    assert "nothing to do" in again.summary()
    assert out.stat().st_mtime_ns == before
    assert not list(out.parent.glob(".*.tmp")), "no staged file is left behind"


def test_a_table_without_the_window_aggregate_gets_the_values_the_data_stage_computes(
    champion: Champion, mlflow_uri: str, tmp_path: Path
) -> None:
    """Raw rows as a team has them (no ``area_demand_index``): the aggregate is computed from the table's
    rows of the pair's region, across chunks, exactly as the data stage computes it for a snapshot."""
    from modelyard.pipeline.features import window_aggregates
    from modelyard.pipeline.generator import generate_for

    config, pair = champion.config, champion.config.pair_view(FAMILY, REGION)
    mine, other = generate_for(config, REGION, 2000), generate_for(config, OTHER, 500)
    offline = window_aggregates(mine, pair)["area_demand_index"]  # the data stage's values for these rows
    raw = pd.concat([mine, other]).sample(frac=1.0, random_state=7)  # regions mixed, rows out of time order
    without, given = tmp_path / "raw.csv", tmp_path / "given.csv"
    raw.to_csv(without, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    mine.assign(area_demand_index=offline).to_csv(given, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    assert "area_demand_index" not in pd.read_csv(without, nrows=1).columns
    assert raw["booking_id"].is_unique
    client = MlflowClient(mlflow_uri)

    scored = {}
    for name, source in (("computed", without), ("given", given)):
        out = tmp_path / f"{name}.parquet"
        request = ScoreRequest(input=str(source), out=str(out), chunk_rows=300)
        result = score_pair(config, FAMILY, REGION, request, client)
        assert result.status == "scored", result.summary()
        assert result.chunks > 2  # the aggregate's windows span chunks
        scored[name] = pq.read_table(out).to_pandas().set_index("booking_id")["prediction"]

    assert len(scored["computed"]) == len(mine)  # the other region's rows are neither scored nor counted
    computed = scored["computed"].reindex(scored["given"].index).to_numpy()
    np.testing.assert_allclose(computed, scored["given"].to_numpy(), atol=1e-6, rtol=0)  # as the server test


def test_a_regressor_scores_its_value_as_the_server_answers(
    champion: Champion, regressor: str, mlflow_uri: str, tmp_path: Path
) -> None:
    source = tmp_path / "bookings.csv"
    champion.table.to_csv(source, index=False)
    out = tmp_path / "eta.parquet"
    request = ScoreRequest(input=str(source), out=str(out), chunk_rows=CHUNK_ROWS)

    result = score_pair(champion.config, REGRESSOR, REGION, request, MlflowClient(mlflow_uri))

    assert result.status == "scored", result.summary()
    scored = pq.read_table(out).to_pandas()
    mine = champion.table[champion.table["region"] == REGION].reset_index(drop=True)
    assert scored["prediction"].max() > 1, "minutes, not a probability"
    np.testing.assert_allclose(scored["prediction"].to_numpy(), _served(regressor, mine), atol=1e-6, rtol=0)


def test_parquet_files_without_a_key_column_are_keyed_by_their_row_in_the_input(
    champion: Champion, mlflow_uri: str, tmp_path: Path
) -> None:
    table = champion.table.drop(columns=["booking_id"])
    table["event_time"] = pd.to_datetime(table["event_time"], utc=True)  # a Parquet timestamp column
    half = len(table) // 2
    table.iloc[:half].to_parquet(tmp_path / "part-0.parquet")
    table.iloc[half:].to_parquet(tmp_path / "part-1.parquet")
    out = tmp_path / "predictions.parquet"
    request = ScoreRequest(input=str(tmp_path / "part-*.parquet"), out=str(out), chunk_rows=CHUNK_ROWS)

    result = score_pair(champion.config, FAMILY, REGION, request, MlflowClient(mlflow_uri))

    assert result.status == "scored", result.summary()
    assert result.files == 2
    scored = pq.read_table(out).to_pandas()
    positions = np.flatnonzero(champion.table["region"].to_numpy() == REGION)
    assert scored["input_row"].tolist() == positions.tolist()
    mine = champion.table.iloc[positions].reset_index(drop=True)
    np.testing.assert_allclose(scored["prediction"].to_numpy(), _served(champion.uri, mine), atol=1e-6, rtol=0)


def test_a_region_without_a_champion_is_scored_by_its_groups_pooled_champion(
    champion: Champion, mlflow_uri: str, tmp_path: Path
) -> None:
    import mlflow

    config, client = champion.config, MlflowClient(mlflow_uri)
    pooled = config.pooled_model_name(FAMILY, config.groups_of(OTHER)[0])
    trained = client.get_model_version(champion.uri.split("/")[1], champion.version)
    copy = mlflow.register_model(trained.source, pooled)  # the same artifacts, as the group's pooled champion
    client.set_registered_model_alias(pooled, "champion", str(copy.version))
    source = tmp_path / "bookings.csv"
    champion.table.to_csv(source, index=False)

    result = score_pair(config, FAMILY, OTHER, ScoreRequest(input=str(source), out=str(tmp_path / "p.parquet")), client)

    assert result.status == "scored", result.summary()
    assert result.provenance.model_name == pooled
    assert result.provenance.rows == int((champion.table["region"] == OTHER).sum())


def test_a_pooled_champion_scores_a_region_in_another_zone_in_that_regions_own_calendar(
    champion: Champion, mlflow_uri: str, tmp_path: Path
) -> None:
    """Jakarta's model as the pooled champion of a declared group with Singapore (UTC+8, its own
    festivals): Singapore's rows are featurised in Singapore's calendar, as the server answers them."""
    import mlflow
    import yaml

    raw = yaml.safe_load((REPO / "modelyard.yaml").read_text())
    raw["groups"] = {"straits": [REGION, "singapore"]}
    (tmp_path / "modelyard.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    config, client = load_config(tmp_path / "modelyard.yaml", environ=champion.environ), MlflowClient(mlflow_uri)
    pooled = config.pooled_model_name(FAMILY, "straits")
    trained = client.get_model_version(champion.uri.split("/")[1], champion.version)
    copy = mlflow.register_model(trained.source, pooled)
    client.set_registered_model_alias(pooled, "champion", str(copy.version))
    table = champion.table.assign(region=np.where(champion.table["region"] == OTHER, "singapore", REGION))
    table.to_csv(tmp_path / "bookings.csv", index=False)

    request = ScoreRequest(input=str(tmp_path / "bookings.csv"), out=str(tmp_path / "p.parquet"))
    result = score_pair(config, FAMILY, "singapore", request, client)

    assert (result.status, result.provenance.model_name) == ("scored", pooled), result.summary()
    mine = table[table["region"] == "singapore"].reset_index(drop=True)
    scored = pq.read_table(tmp_path / "p.parquet").to_pandas()["prediction"].to_numpy()
    in_singapore = _served(champion.uri, mine, config.region("singapore").calendar())
    np.testing.assert_allclose(scored, in_singapore, atol=1e-6, rtol=0)
    assert not np.allclose(scored, _served(champion.uri, mine), atol=1e-6, rtol=0)  # Jakarta's calendar differs


def test_a_missing_raw_column_is_one_line_naming_the_file_the_column_and_what_to_do(
    champion: Champion, mlflow_server: Any, tmp_path: Path
) -> None:
    source = tmp_path / "no-rating.csv"
    champion.table.drop(columns=["driver_rating"]).head(100).to_csv(source, index=False)
    out = tmp_path / "predictions.parquet"
    with pytest.raises(BatchInputError) as caught:
        score_pair(
            champion.config,
            FAMILY,
            REGION,
            ScoreRequest(input=str(source), out=str(out)),
            MlflowClient(mlflow_server.url),
        )
    assert str(source) in str(caught.value)
    assert "'driver_rating'" in str(caught.value)
    assert "add them to the file" in str(caught.value)
    assert not out.exists()

    run = _cli(champion, mlflow_server.url, "--input", str(source), "--out", str(out))
    assert run.returncode == 2, run.stdout + run.stderr
    assert "'driver_rating'" in run.stderr
    assert str(source) in run.stderr
    assert "Traceback" not in run.stderr


def test_the_cli_scores_then_says_there_is_nothing_to_do(
    champion: Champion, mlflow_server: Any, tmp_path: Path
) -> None:
    source = tmp_path / "bookings.csv"
    champion.table.to_csv(source, index=False)
    out = tmp_path / "cli.parquet"
    args = ("--input", str(source), "--out", str(out), "--alias", "champion", "--chunk-rows", str(CHUNK_ROWS))

    first = _cli(champion, mlflow_server.url, *args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"scored by {champion.config.pair_view(FAMILY, REGION).model_name} v{champion.version}" in first.stdout
    second = _cli(champion, mlflow_server.url, *args)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "nothing to do" in second.stdout


def _cli(champion: Champion, tracking_uri: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env.update(champion.environ, MLFLOW_TRACKING_URI=tracking_uri, COLUMNS="300")
    command = [str(Path(sys.executable).parent / "modelyard"), "score", "-f", FAMILY, "-r", REGION, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False, cwd=REPO)


def test_the_dag_scores_the_table_and_announces_the_predictions(
    champion: Champion, airflow: Any, mlflow_server: Any, tmp_path: Path
) -> None:
    source = tmp_path / "bookings.csv"
    champion.table.to_csv(source, index=False)
    root = tmp_path / "dag-storage"
    overrides = {
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "MODELYARD_STORAGE__ROOT": str(root),
        "MODELYARD_MLFLOW__MODEL_NAME_TEMPLATE": champion.environ["MODELYARD_MLFLOW__MODEL_NAME_TEMPLATE"],
    }
    env = dataclasses.replace(airflow, env={**airflow.env, **overrides})
    conf = {"families": [FAMILY], "regions": [REGION], "input": str(source), "chunk_rows": CHUNK_ROWS}

    run = env.run_dag_test("batch_scoring", conf)

    assert run.returncode == 0, run.stdout[-6000:]
    published = root / "predictions" / FAMILY / REGION / "predictions.parquet"
    scored = pq.read_table(published).to_pandas()
    assert len(scored) == int((champion.table["region"] == REGION).sum())
    events = env.asset_events(f"modelyard://predictions/{FAMILY}/{REGION}", dag_id="batch_scoring")
    assert events, run.stdout[-4000:]
    extra = events[-1].extra
    assert (extra["version"], extra["rows"], extra["path"]) == (champion.version, len(scored), str(published))
