"""``modelyard prune`` and the housekeeping DAG against a real ``mlflow server``: the registry decides
which old snapshots stay.

A snapshot a registered version was trained on (its ``data_digest`` tag) or that a pooled version
stacked (``pooled_snapshots``) stays; once the version is deleted in the registry, the next prune
removes it. A dry run and a prune without ``--yes`` off a terminal remove nothing. With
``--versions``, the prune deletes versions no alias, no recent registration and no plan of the
deploy target keeps, and their snapshots in the same run; an unreadable plan deletes nothing.
The DAG runs with ``airflow dags test`` on the session's Airflow.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import uuid
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from typer.testing import CliRunner

from modelyard.core.config import Config, load_config
from modelyard.deploy.cli import app
from modelyard.deploy.rollout.mlflow_server import MlflowServer, free_port
from modelyard.deploy.serving.plan import dump_plan, last_good_path, parse_plan
from modelyard.pipeline import snapshots

if TYPE_CHECKING:
    from tests.integration.conftest import AirflowEnv

REPO = Path(__file__).resolve().parents[2]
PAIR = ("driver_acceptance", "jakarta")


def publish(config: Config, seed: int) -> str:
    rng = np.random.default_rng(seed)
    times = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.sort(rng.uniform(0, 86400 * 30, 40)), unit="s")
    frame = pd.DataFrame({"event_time": times, "x": rng.normal(size=40), "accepted": rng.integers(0, 2, 40)})
    meta, _ = snapshots.publish(
        config.storage.features_dir,
        frame,
        family=PAIR[0],
        region=PAIR[1],
        target="accepted",
        time_column="event_time",
        source=f"seed {seed}",
        validation=snapshots.ValidationSummary(success=True, checks=1),
    )
    return meta.digest


def test_the_registry_keeps_the_snapshots_its_versions_were_trained_on(
    tmp_path: Path, mlflow_server: MlflowServer
) -> None:
    env = {
        "MODELYARD_CONFIG": str(REPO / "modelyard.yaml"),
        "MODELYARD_STORAGE__ROOT": str(tmp_path),
        "MODELYARD_MLFLOW__MODEL_NAME_TEMPLATE": f"prune-{uuid.uuid4().hex[:8]}-{{family}}-{{region}}",
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "COLUMNS": "240",
    }
    config = load_config(REPO / "modelyard.yaml", environ=env)
    made = [publish(config, seed) for seed in range(4)]  # oldest first; made[3] is LATEST and the newest
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    own, pooled = config.mlflow.model_name(*PAIR), config.pooled_model_name(PAIR[0], "country-id")
    for name in (own, pooled):
        client.create_registered_model(name)
    client.create_model_version(own, source="s3://prune/own/1", tags={"data_digest": made[0]})
    pooled_tags = {"data_digest": "0" * 16, "pooled_snapshots": f"jakarta={made[1]},surabaya={'1' * 16}"}
    client.create_model_version(pooled, source="s3://prune/pooled/1", tags=pooled_tags)

    def prune(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["prune", "-f", PAIR[0], "-r", PAIR[1], "--snapshots", "1", *args], env=env)
        return result.exit_code, " ".join(result.output.replace("│", " ").split())

    def left() -> list[str]:
        return [meta.digest for meta in snapshots.list_snapshots(config.storage.features_dir, *PAIR)]

    code, output = prune("--dry-run")
    assert code == 0, output
    assert "Would remove" in output
    assert made[2] in output
    assert not {made[0], made[1], made[3]} & set(output.split())  # kept: LATEST and newest, trained v1, pooled v1
    assert "kept 3 snapshots, 2 of them for registered versions" in output
    assert left() == made[::-1]
    code, output = prune("--dry-run", "--kept")
    assert code == 0, output
    for digest, why in ((made[3], "LATEST, newest 1"), (made[1], "pooled v1 (country-id)"), (made[0], "trained v1")):
        assert f"driver_acceptance jakarta {digest} {why}" in output

    code, output = prune()  # CliRunner's stdin is not a terminal: no one to ask
    assert code == 2, output
    assert "pass --yes to remove them without asking" in output
    assert left() == made[::-1]

    code, output = prune("--yes")
    assert code == 0, output
    assert "removed 1 snapshot (" in output
    assert left() == [made[3], made[1], made[0]]

    client.delete_model_version(own, "1")  # the registry's lifecycle: its snapshot goes at the next prune
    code, output = prune("--yes")
    assert code == 0, output
    assert left() == [made[3], made[1]]
    code, output = prune("--yes")
    assert code == 0, output
    assert "nothing to remove; kept 2 snapshots, 1 of them for registered versions" in output


def test_versions_no_alias_recent_registration_or_plan_keeps_are_deleted_with_their_snapshots(
    tmp_path: Path, mlflow_server: MlflowServer
) -> None:
    env = {
        "MODELYARD_CONFIG": str(REPO / "modelyard.yaml"),
        "MODELYARD_STORAGE__ROOT": str(tmp_path),
        "MODELYARD_MLFLOW__MODEL_NAME_TEMPLATE": f"versions-{uuid.uuid4().hex[:8]}-{{family}}-{{region}}",
        "MODELYARD_DEPLOY__LOCAL__PORT": str(free_port()),  # no server there: the plan files say what serves
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "COLUMNS": "240",
    }
    config = load_config(REPO / "modelyard.yaml", environ=env)
    made = [publish(config, seed) for seed in range(6)]  # oldest first; made[5] is LATEST
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    own = config.mlflow.model_name(*PAIR)
    client.create_registered_model(own)
    for number, digest in enumerate(made, start=1):
        client.create_model_version(own, source=f"s3://prune/{number}", tags={"data_digest": digest})
    client.set_registered_model_alias(own, "champion", "5")
    client.set_registered_model_alias(own, "previous-champion", "3")
    run = config.storage.local_dir / "run"
    run.mkdir(parents=True)
    variant = {"name": "champion", "model_uri": f"models:/{own}/2", "weight": 100}
    plan = parse_plan({"version": 1, "services": [{"family": PAIR[0], "region": PAIR[1], "variants": [variant]}]})
    last_good_path(run / "plan.json").write_bytes(dump_plan(plan, "json"))  # a restarted server would serve v2

    def prune(*args: str) -> tuple[int, str]:
        command = ["prune", "-f", PAIR[0], "-r", PAIR[1], "--snapshots", "1", "--versions", "1", *args]
        result = CliRunner().invoke(app, command, env=env)
        return result.exit_code, " ".join(result.output.replace("│", " ").split())

    def versions() -> list[str]:
        return sorted(v.version for v in client.search_model_versions(f"name = '{own}'"))

    code, output = prune("--dry-run", "--kept")
    assert code == 0, output
    for number, why in (("6", "newest 1"), ("5", "champion"), ("3", "previous-champion"), ("2", "local last-good")):
        assert f"{own} v{number} {why}" in output
    assert f"model version {PAIR[0]} {PAIR[1]} {own} v4 registered" in output
    assert f"{own} v1 registered" in output
    assert "2 model versions of 1 model, 2 snapshots (" in output
    assert "kept 4 model versions, 1 of them only because a plan names them" in output
    assert versions() == ["1", "2", "3", "4", "5", "6"]

    code, output = prune("--yes")
    assert code == 0, output
    assert "removed 2 model versions of 1 model and 2 snapshots (" in output
    assert versions() == ["2", "3", "5", "6"]
    left = [meta.digest for meta in snapshots.list_snapshots(config.storage.features_dir, *PAIR)]
    assert left == [made[5], made[4], made[2], made[1]]

    (run / "plan.json").write_text("services: [")  # a plan that cannot be read: nothing is deleted
    client.delete_registered_model_alias(own, "previous-champion")
    code, output = prune("--yes")
    assert code == 3, output
    assert "plan.json: cannot read the plan, so no version is deleted" in output
    assert versions() == ["2", "3", "5", "6"]


def test_the_housekeeping_dag_prunes_what_the_registry_does_not_need(
    tmp_path: Path, mlflow_server: MlflowServer, airflow: AirflowEnv
) -> None:
    overrides = {
        "MODELYARD_STORAGE__ROOT": str(tmp_path / "store"),
        "MODELYARD_MLFLOW__MODEL_NAME_TEMPLATE": f"housekeeping-{uuid.uuid4().hex[:8]}-{{family}}-{{region}}",
        "MODELYARD_DEPLOY__LOCAL__PORT": str(free_port()),
        "MLFLOW_TRACKING_URI": mlflow_server.url,
    }
    config = load_config(airflow.config_path, environ=overrides)
    made = [publish(config, seed) for seed in range(4)]
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    model = config.mlflow.model_name(*PAIR)
    client.create_registered_model(model)
    client.create_model_version(model, source="s3://prune/1", tags={"data_digest": made[0]})
    client.create_model_version(model, source="s3://prune/2", tags={"data_digest": made[1]})
    client.set_registered_model_alias(model, "champion", "2")
    logs = config.storage.samples_dir / PAIR[0] / PAIR[1] / "1"
    logs.mkdir(parents=True)
    old, recent = logs / "20261001T000000-host-1-0.jsonl.gz", logs / "20261206T000000-host-1-0.jsonl.gz"
    for path, days in ((old, 45), (recent, 1)):
        path.write_bytes(gzip.compress(b"{}\n"))
        at = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).timestamp()
        os.utime(path, (at, at))
    dags = replace(airflow, env={**airflow.env, **overrides})
    selection = {"families": [PAIR[0]], "regions": [PAIR[1]], "snapshots": 1}

    run = dags.run_dag_test("housekeeping", {**selection, "dry_run": True})

    assert run.returncode == 0, run.stdout[-6000:]
    assert f"would remove snapshot {PAIR[0]}/{PAIR[1]} {made[2]}" in run.stdout, run.stdout[-6000:]
    assert f"would remove samples {PAIR[0]}/{PAIR[1]} v1: 1 prediction-log files" in run.stdout, run.stdout[-6000:]
    assert "model version" not in run.stdout  # versions stay unless the form (or retention.versions) says
    assert [meta.digest for meta in snapshots.list_snapshots(config.storage.features_dir, *PAIR)] == made[::-1]
    assert old.exists()

    run = dags.run_dag_test("housekeeping", {**selection, "versions": 1})

    assert run.returncode == 0, run.stdout[-6000:]
    assert f"removing model version {model} v1 ({PAIR[0]}/{PAIR[1]}): registered" in run.stdout, run.stdout[-6000:]
    assert "removed 1 model version of 1 model, 2 snapshots and 1 prediction-log file of 1 version (" in run.stdout
    assert [v.version for v in client.search_model_versions(f"name = '{model}'")] == ["2"]
    assert [meta.digest for meta in snapshots.list_snapshots(config.storage.features_dir, *PAIR)] == [made[3], made[1]]
    assert not old.exists()
    assert recent.exists()


def test_old_monitoring_runs_are_deleted_but_each_versions_latest_stays(
    tmp_path: Path, mlflow_server: MlflowServer
) -> None:
    env = {
        "MODELYARD_CONFIG": str(REPO / "modelyard.yaml"),
        "MODELYARD_STORAGE__ROOT": str(tmp_path),
        "MODELYARD_PROJECT": f"runs{uuid.uuid4().hex[:8]}",
        "MODELYARD_MLFLOW__MODEL_NAME_TEMPLATE": f"runs-{uuid.uuid4().hex[:8]}-{{family}}-{{region}}",
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "COLUMNS": "240",
    }
    config = load_config(REPO / "modelyard.yaml", environ=env)
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    model = config.mlflow.model_name(*PAIR)
    client.create_registered_model(model)
    experiment = client.create_experiment(f"{config.project}/{PAIR[0]}/monitoring")
    now = dt.datetime.now(dt.UTC)

    def measured(days: int, region: str = PAIR[1]) -> str:
        start = int((now - dt.timedelta(days=days)).timestamp() * 1000)
        run = client.create_run(experiment, start_time=start, tags={"family": PAIR[0], "region": region})
        client.set_terminated(run.info.run_id)
        return run.info.run_id

    oldest, old, linked = measured(110), measured(100), measured(95)
    recent, elsewhere = measured(1), measured(100, "surabaya")
    client.create_model_version(model, source="s3://runs/1", tags={"monitoring.run_id": linked})

    def prune(*args: str, per_prune: int = 1) -> tuple[int, str]:
        limit = {"MODELYARD_RETENTION__MONITORING_RUNS_PER_PRUNE": str(per_prune)}
        result = CliRunner().invoke(app, ["prune", "-f", PAIR[0], "-r", PAIR[1], *args], env={**env, **limit})
        return result.exit_code, " ".join(result.output.replace("│", " ").split())

    def stages() -> dict[str, str]:
        return {run: client.get_run(run).info.lifecycle_stage for run in (oldest, old, linked, recent, elsewhere)}

    code, output = prune("--dry-run")  # one run a prune: the oldest first, the rest at the next
    assert code == 0, output
    assert f"runs {PAIR[0]} {PAIR[1]} monitoring runs 1 monitoring run, the newest started" in output
    assert "(a prune deletes the oldest 1; the next prune takes the rest)" in output
    assert "1 monitoring run;" in output
    code, output = prune("--yes")
    assert code == 0, output
    assert "removed 1 monitoring run" in output
    assert stages() == {oldest: "deleted", old: "active", linked: "active", recent: "active", elsewhere: "active"}
    code, output = prune("--yes", per_prune=50_000)
    assert code == 0, output
    assert "removed 1 monitoring run" in output
    assert stages() == {oldest: "deleted", old: "deleted", linked: "active", recent: "active", elsewhere: "active"}
    code, output = prune("--yes", "--monitoring-days", "1")  # the recent one is a day old: it goes too
    assert code == 0, output
    assert client.get_run(recent).info.lifecycle_stage == "deleted"
    assert client.get_run(linked).info.lifecycle_stage == "active"
