"""What a reviewer sees in MLflow and at the terminal after train → promote → replace → monitor, on a real server.

One pair (driver_acceptance/jakarta) is trained twice against the session's real ``mlflow server``:
the first version is promoted by its gates, the second by hand. Then samples of served requests
are written where the server writes them and the real ``modelyard monitor`` and ``modelyard status``
commands run as a user runs them (subprocesses, 120 columns).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from modelyard.core.config import Config
from modelyard.core.contracts import prediction_log
from modelyard.core.contracts.registry import CHALLENGER_ALIAS, CHAMPION_ALIAS
from modelyard.promotion.aliases import aliases, open_client
from modelyard.promotion.decide import evaluate_pair, promote_version
from tests.integration.test_promotion import FAMILY, REGION, bookings, publish_and_train, write_config

SAMPLED_ROWS = 400


@pytest.fixture
def config(tmp_path: Path, mlflow_uri: str) -> Config:
    return write_config(tmp_path, mlflow_uri)


def modelyard(config: Config, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed ``modelyard`` command at 120 columns, on this test's config file."""
    env = {**os.environ, "COLUMNS": "120", "TERM": "dumb"}
    config_file = str(Path(config.storage.root).parent / "modelyard.yaml")
    return subprocess.run(
        [str(Path(sys.executable).parent / "modelyard"), *args, "--config", config_file],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def write_samples(config: Config, version: str, frame: pd.DataFrame) -> Path:
    """Sampled requests of ``version`` as the server logs them: feature rows in model order and predictions."""
    names = config.family(FAMILY).feature_names
    rows = frame.tail(SAMPLED_ROWS)[names].astype(float).to_numpy().tolist()
    folder = config.storage.samples_dir / FAMILY / REGION / version
    folder.mkdir(parents=True, exist_ok=True)
    path = Path(str(folder / f"sample{prediction_log.SUFFIX}"))
    now = time.time()
    with gzip.open(path, "wt") as handle:
        for start in range(0, len(rows), 20):
            chunk = rows[start : start + 20]
            entry = prediction_log.prediction_entry(
                at=now, kind=prediction_log.PREDICTION, request_id=f"r{start}",
                labels=(FAMILY, REGION, "champion", version), plan_digest="p",
                predictions=[0.5] * len(chunk), features=chunk, extra={"sample_rate": 1.0},
            )  # fmt: skip
            handle.write(json.dumps(entry) + "\n")
    return path


def test_a_reviewer_reads_descriptions_short_tags_true_aliases_and_the_cli_at_120_columns(config: Config) -> None:
    client: MlflowClient = open_client(config)
    name = config.mlflow.model_name(FAMILY, REGION)
    frame = bookings(seed=21)
    first = publish_and_train(config, frame)
    decision = evaluate_pair(client, config, FAMILY, REGION, decided_by="user:reviewer")
    assert decision.outcome == "promoted", decision.summary

    # The registered model says what it predicts and for which region, from the config.
    model = client.get_registered_model(name)
    assert "Does the offered driver accept and complete the booking" in model.description
    assert "Region **jakarta**" in model.description

    # The version's description is the gate table in Markdown; the tags are short sentences.
    version = client.get_model_version(name, first)
    assert version.description.startswith("promoted (first model")
    assert "| gate | value | better | op | threshold | result | summary |" in version.description
    for gate in decision.gates:
        assert f"| {gate.name} |" in version.description
    promotion_tags = {k: v for k, v in version.tags.items() if k.startswith("promotion.")}
    assert promotion_tags["promotion.outcome"] == "promoted"
    assert all(len(value) <= 250 for value in promotion_tags.values()), promotion_tags
    assert not any(value.lstrip().startswith(("{", "[")) for value in promotion_tags.values()), promotion_tags
    # The champion is not also the challenger.
    assert aliases(client, name) == {CHAMPION_ALIAS: first}

    # A second version replaces it: only the serving version says since when it serves.
    second = publish_and_train(config, bookings(seed=22))
    assert aliases(client, name)[CHALLENGER_ALIAS] == second
    replacing = promote_version(client, config, FAMILY, REGION, second, "reviewed by hand", "user:reviewer")
    assert CHALLENGER_ALIAS not in aliases(client, name)
    replaced = client.get_model_version(name, first).tags
    assert "promotion.champion_since" not in replaced
    assert replaced["promotion.champion_until"] == replacing.decided_at.isoformat()
    assert client.get_model_version(name, second).tags["promotion.champion_since"] == replacing.decided_at.isoformat()

    # `modelyard monitor` measures what the champion served, as the DAG does, and records it.
    write_samples(config, second, frame)
    measured = modelyard(config, "monitor", "-f", FAMILY, "-r", REGION)
    assert measured.returncode == 0, measured.stdout + measured.stderr
    assert f"v{second}" in measured.stdout
    assert any(verdict in measured.stdout for verdict in ("stable", "drifted")), measured.stdout
    assert str(SAMPLED_ROWS) in measured.stdout
    run_id = client.get_model_version(name, second).tags["monitoring.run_id"]
    assert f"{FAMILY}/{REGION} v{second}: " in measured.stdout
    assert run_id in measured.stdout  # the run's URL
    report = json.loads(Path(client.download_artifacts(run_id, "monitoring/report.json")).read_text())
    assert report["run_id"] == run_id
    assert report["version"] == second

    # `modelyard status` at 120 columns: lines fit, names whole, the champion and the previous one.
    status = modelyard(config, "status", "-f", FAMILY)
    assert status.returncode == 0, status.stdout + status.stderr
    lines = status.stdout.splitlines()
    assert max(len(line) for line in lines) <= 120, status.stdout
    row = next(line for line in lines if line.startswith(FAMILY) and f" {REGION} " in line)
    assert f"v{second}" in row
    assert row.rstrip().endswith(f"v{first}")  # the previous champion
    assert "driver_acceptanc\n" not in status.stdout
