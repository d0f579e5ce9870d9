"""A new region with too little data is served by its country's pooled model (ADR 0015), on a real MLflow server.

Jakarta has enough bookings for a model of its own; Surabaya (same country, ~150 bookings) does not.
With no extra config: the data stage publishes Surabaya pooled only, training skips its own model,
the pooled model of ``country-id`` is trained on both regions, the gates promote it, and the plan
serves Surabaya from it under Surabaya's own service and time zone; ``modelyard status`` names that
fallback. When Surabaya's data grows, its own first model must beat the pooled one on Surabaya's
holdout (the graduation gate): one that loses is rejected with the reason recorded, and Surabaya stays
on the pooled model; one that wins takes over, and the deploy rolls the switch out as a canary (the
pooled model keeps the primary share while Surabaya's own model takes the canary's) under the default
rolling strategy. A gate override keyed ``<family>/<group>`` decides the pooled model's gates.
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

from modelyard.core.config import Config, load_config
from modelyard.core.contracts import prediction_log
from modelyard.core.contracts.registry import CHAMPION_ALIAS
from modelyard.core.featurespec import FittedSpec
from modelyard.deploy.cli import app
from modelyard.deploy.rollout.mlflow_server import free_port
from modelyard.deploy.rollout.planner import PlanOptions, fallbacks_of
from modelyard.deploy.rollout.planner_graduation import graduations, rollout_steps
from modelyard.deploy.rollout.staged_deploy import propose
from modelyard.monitoring.measure import ServedVersion, measure_pair
from modelyard.pipeline import snapshots
from modelyard.pipeline.build import BuildRequest, build_all
from modelyard.pipeline.generator import generate_for
from modelyard.promotion.aliases import open_client
from modelyard.promotion.decide import evaluate_pair, promote_all
from modelyard.promotion.status import Fallback, collect_status
from modelyard.training.pooled import train_pooled
from modelyard.training.train import train_all, train_pair

REPO = Path(__file__).resolve().parents[2]
FAMILY = "driver_acceptance"
SMALL = 150
NOW = dt.datetime.now(dt.UTC)


def write_config(folder: Path, mlflow_url: str) -> Path:
    """The demo config: its regions of Indonesia, one family with small models, own storage and model names."""
    raw = yaml.safe_load((REPO / "modelyard.yaml").read_text())
    raw["regions"] = [r for r in raw["regions"] if r["country"] == "ID"]  # jakarta and surabaya
    raw["families"] = [f for f in raw["families"] if f["name"] == FAMILY]
    raw["families"][0]["params"] = {**raw["families"][0]["params"], "n_estimators": 60, "learning_rate": 0.15}
    raw["deploy"].pop("kubernetes")
    raw["deploy"]["local"]["port"] = free_port()  # `modelyard plan` finds nothing live, even beside a running demo
    # Surabaya's own model (the last step) is judged by the graduation gate alone, not by the absolute AUC.
    raw["gates"]["region_overrides"] = {
        f"{FAMILY}/surabaya": {"absolute": [{"metric": "holdout_auc", "op": ">=", "threshold": 0.0}]}
    }
    raw["storage"] = {"root": str(folder / "data")}
    raw["mlflow"] = {"tracking_uri": mlflow_url, "model_name_template": f"{{family}}-{{region}}-{uuid.uuid4().hex[:8]}"}
    path = folder / "modelyard.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture
def config_path(tmp_path: Path, mlflow_uri: str) -> Path:
    return write_config(tmp_path, mlflow_uri)


@pytest.fixture
def config(config_path: Path) -> Config:
    return load_config(config_path, environ={})


def bookings_file(config: Config, folder: Path) -> Path:
    """A big region and a small one of the same country, as a user's Parquet file."""
    frame = pd.concat([generate_for(config, "jakarta", rows=2000), generate_for(config, "surabaya", rows=SMALL)])
    path = folder / "bookings.parquet"
    frame.to_parquet(path, index=False)
    return path


def shuffled_training_labels(frame: pd.DataFrame, config: Config) -> pd.DataFrame:
    """The snapshot with its labels before the holdout shuffled: a model that learns nothing; the holdout stays."""
    holdout_start = frame.event_time.max() - pd.Timedelta(days=config.training.holdout_days)
    before = (frame.event_time < holdout_start).to_numpy()
    shuffled = frame.copy()
    shuffled.loc[before, "accepted"] = np.random.default_rng(3).permutation(shuffled.loc[before, "accepted"].to_numpy())
    return shuffled


def sampled_surabaya(config: Config, model_name: str, version: str) -> ServedVersion:
    """250 sampled requests to Surabaya as the endpoint logs them, answered by ``model_name`` v``version``."""
    meta = snapshots.latest_snapshot(config.storage.features_dir, FAMILY, "country-id")
    assert meta.feature_spec is not None
    names = FittedSpec.from_dict(meta.feature_spec).names
    frame = snapshots.load_frame(config.storage.features_dir, meta).sample(250, replace=True, random_state=3)
    folder = config.storage.samples_dir / FAMILY / "surabaya" / version
    folder.mkdir(parents=True)
    rows = frame[names].to_numpy(dtype=float).tolist()
    labels = (FAMILY, "surabaya", "primary", version)
    lines = [
        prediction_log.prediction_entry(
            at=NOW.timestamp() - 60,
            kind=prediction_log.PREDICTION,
            request_id=f"r{i}",
            labels=labels,
            plan_digest="sha256:test",
            predictions=[0.5],
            features=[row],
            model=model_name,
        )
        for i, row in enumerate(rows)
    ]
    with gzip.open(folder / f"samples{prediction_log.SUFFIX}", "wt") as handle:
        handle.write("".join(json.dumps(line) + "\n" for line in lines))
    return ServedVersion(FAMILY, "surabaya", version, folder)


def test_a_small_region_is_served_by_its_countrys_pooled_champion(
    config: Config,
    config_path: Path,
    tmp_path: Path,
    mlflow_uri: str,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = open_client(config)
    built = {r.region: r for r in build_all(config, request=BuildRequest(source=str(bookings_file(config, tmp_path))))}
    assert (built["jakarta"].status, built["jakarta"].pooled_only) == ("published", False)
    assert (built["surabaya"].status, built["surabaya"].pooled_only) == ("published", True), built["surabaya"].reason
    assert "served by the pooled model of country-id" in built["surabaya"].reason

    trained = {r.region: r for r in train_all(config, tracking_uri=mlflow_uri)}
    assert trained["jakarta"].status == "registered", trained["jakarta"].reason
    assert trained["surabaya"].status == "skipped"
    assert trained["surabaya"].reason == (
        f"{SMALL} rows, fewer than data.min_rows=500; served by the pooled model of country-id"
    )

    [pooled] = train_pooled(config, tracking_uri=mlflow_uri)
    assert (pooled.region, pooled.status) == ("country-id", "registered"), pooled.reason
    assert pooled.model_name == config.pooled_model_name(FAMILY, "country-id")
    version = client.get_model_version(pooled.model_name, str(pooled.version))
    digests = {r: snapshots.latest_snapshot(config.storage.features_dir, FAMILY, r).digest for r in built}
    assert version.tags["pooled_regions"] == "jakarta,surabaya"
    assert version.tags["pooled_snapshots"] == f"jakarta={digests['jakarta']},surabaya={digests['surabaya']}"
    assert client.get_run(str(pooled.run_id)).data.tags["pooled_group"] == "country-id"
    pooled_meta = snapshots.read_snapshot(
        config.storage.features_dir, FAMILY, "country-id", version.tags["data_digest"]
    )
    assert pooled_meta.rows == built["jakarta"].rows + SMALL

    # Re-running pooled training on the same snapshots registers nothing new.
    [again] = train_pooled(config, tracking_uri=mlflow_uri)
    assert (again.status, again.version) == ("unchanged", pooled.version)

    decision = evaluate_pair(client, config, FAMILY, "jakarta", decided_by="user:test")
    assert decision.outcome == "promoted", decision.summary
    [decision] = promote_all(config, [FAMILY], None, "user:test", tracking_uri=mlflow_uri, groups=["country-id"])
    assert (decision.family, decision.region, decision.outcome) == (FAMILY, "country-id", "promoted"), decision.summary
    assert client.get_model_version_by_alias(pooled.model_name, CHAMPION_ALIAS).version == pooled.version

    proposal = propose(config, PlanOptions(), None, mlflow_uri)
    surabaya = proposal.plan.service(FAMILY, "surabaya")
    assert surabaya is not None
    assert (surabaya.region, surabaya.timezone) == ("surabaya", "Asia/Jakarta")
    assert [v.model_uri for v in surabaya.variants] == [f"models:/{pooled.model_name}/{pooled.version}"]
    jakarta = proposal.plan.service(FAMILY, "jakarta")
    assert jakarta is not None
    assert jakarta.variants[0].model_uri.startswith(f"models:/{trained['jakarta'].model_name}/")
    note = f"{pooled.model_name} v{pooled.version} (group country-id)"
    assert fallbacks_of(proposal.plan) == {f"{FAMILY}/surabaya": note}
    assert proposal.skipped == {}

    shown = CliRunner().invoke(app, ["plan", "--config", str(config_path), "--tracking-uri", mlflow_uri])
    assert shown.exit_code == 0, shown.output
    assert f"fallback {FAMILY}/surabaya: no champion of its own, served by {note}" in " ".join(shown.output.split())

    statuses = {s.region: s for s in collect_status(config, [FAMILY], tracking_uri=mlflow_uri)}
    assert statuses["surabaya"].fallback == Fallback("country-id", pooled.model_name, str(pooled.version))
    assert statuses["jakarta"].fallback is None
    status = CliRunner().invoke(
        app, ["status", "--family", FAMILY, "--config", str(config_path), "--tracking-uri", mlflow_uri]
    )
    assert status.exit_code == 0, status.output
    served = f"{FAMILY}/surabaya: no champion of its own, served by pooled: country-id v{pooled.version}"
    assert f"{served} ({pooled.model_name})" in " ".join(status.output.split())
    assert f"{FAMILY}/jakarta: no champion" not in " ".join(status.output.split())
    listed = CliRunner().invoke(
        app,
        [
            "status",
            "-f",
            FAMILY,
            "-r",
            "surabaya",
            "--json",
            "--config",
            str(config_path),
            "--tracking-uri",
            mlflow_uri,
        ],
    )
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)[0]["serving"] == {"model_name": pooled.model_name, "version": str(pooled.version)}

    # The endpoint's samples of Surabaya name the pooled model that answered them: monitoring measures
    # that model on Surabaya's traffic (it used to look for Surabaya's own model and fail the task).
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)  # as in a fresh process
    capfd.readouterr()
    report = measure_pair(config, sampled_surabaya(config, pooled.model_name, str(pooled.version)), now=NOW)
    printed = capfd.readouterr().out
    assert "View run" not in printed, printed  # MLflow's print (and its read of the run) beside report.run_url
    assert (report.model_name, report.version, report.samples.rows) == (pooled.model_name, str(pooled.version), 250)
    assert report.verdict in ("stable", "drifted"), report.summary
    assert report.run_id is not None
    # The pooled version serves other regions too: Surabaya's verdict is kept under Surabaya's name.
    tags = client.get_model_version(pooled.model_name, str(pooled.version)).tags
    assert tags["monitoring.surabaya.verdict"] == report.verdict
    assert tags["monitoring.surabaya.run_id"] == report.run_id
    assert "monitoring.verdict" not in tags, tags
    [measured] = collect_status(config, [FAMILY], ["surabaya"], tracking_uri=mlflow_uri)
    assert measured.serving is not None
    assert (measured.serving.version, measured.serving.drift) == (str(pooled.version), report.verdict)
    assert measured.serving.drift_run_id == report.run_id
    shown = CliRunner().invoke(
        app,
        ["status", "--family", FAMILY, "--config", str(config_path), "--tracking-uri", mlflow_uri],
        env={"COLUMNS": "160"},
    )
    row = next(line for line in shown.output.splitlines() if "surabaya" in line and "pooled" in line)
    assert report.verdict.replace("_", " ") in row, shown.output

    # Surabaya's data grows: its first own model is judged against the pooled one on Surabaya's holdout.
    grown = tmp_path / "grown.parquet"
    generate_for(config, "surabaya", rows=1500).to_parquet(grown, index=False)
    [rebuilt] = build_all(config, regions=["surabaya"], request=BuildRequest(source=str(grown)))
    assert (rebuilt.status, rebuilt.pooled_only) == ("published", False), rebuilt.reason
    meta = snapshots.latest_snapshot(config.storage.features_dir, FAMILY, "surabaya")
    frame = shuffled_training_labels(snapshots.load_frame(config.storage.features_dir, meta), config)
    snapshots.publish(
        config.storage.features_dir, frame, family=FAMILY, region="surabaya", target="accepted",
        time_column="event_time", source="test: labels shuffled", validation=meta.validation,
        feature_spec=meta.feature_spec,
    )  # fmt: skip
    own = train_pair(config, FAMILY, "surabaya", tracking_uri=mlflow_uri)
    assert own.status == "registered", own.reason

    decision = evaluate_pair(client, config, FAMILY, "surabaya", decided_by="user:test")

    assert decision.outcome == "rejected", decision.summary
    assert [g.name for g in decision.gates if not g.passed] == ["graduation:holdout_auc"]
    graduation = next(g for g in decision.gates if g.name == "graduation:holdout_auc")
    assert not graduation.passed
    assert f"vs pooled model {pooled.model_name} v{pooled.version}" in graduation.summary
    assert graduation.summary.endswith(f"the region stays on the pooled model {pooled.model_name}")
    recorded = client.get_model_version(own.model_name, str(own.version)).tags
    assert recorded["promotion.outcome"] == "rejected"
    serving = propose(config, PlanOptions(), None, mlflow_uri).plan
    still = serving.service(FAMILY, "surabaya")
    assert still is not None
    pooled_uri = f"models:/{pooled.model_name}/{pooled.version}"
    assert [v.model_uri for v in still.variants] == [pooled_uri]

    # More of Surabaya's own bookings, labels intact: its own model now wins on its holdout and graduates.
    more = tmp_path / "more.parquet"
    generate_for(config, "surabaya", rows=4000).to_parquet(more, index=False)
    [rebuilt] = build_all(config, regions=["surabaya"], request=BuildRequest(source=str(more)))
    assert (rebuilt.status, rebuilt.pooled_only) == ("published", False), rebuilt.reason
    graduate = train_pair(config, FAMILY, "surabaya", tracking_uri=mlflow_uri)
    assert graduate.status == "registered", graduate.reason

    decision = evaluate_pair(client, config, FAMILY, "surabaya", decided_by="user:test")

    assert decision.outcome == "promoted", decision.summary
    assert [g.passed for g in decision.gates if g.name == "graduation:holdout_auc"] == [True], decision.gates
    assert [s.fallback for s in collect_status(config, [FAMILY], ["surabaya"], tracking_uri=mlflow_uri)] == [None]
    # The next deploy moves Surabaya off the pooled model through canary steps, although the strategy is rolling.
    graduated = propose(config, PlanOptions(), serving, mlflow_uri).plan
    assert fallbacks_of(graduated) == {}
    assert graduations(serving, graduated) == [(FAMILY, "surabaya")]
    own_uri = f"models:/{graduate.model_name}/{graduate.version}"
    steps = rollout_steps("rolling", serving, graduated, [10, 50, 100])
    assert [s.name for s in steps] == ["graduation canary 10%", "graduation canary 50%", "promote 100%"]
    canary = steps[0].plan.service(FAMILY, "surabaya")
    assert canary is not None
    assert [(v.name, v.model_uri, v.weight) for v in canary.variants] == [
        ("primary", pooled_uri, 90), ("canary", own_uri, 10),
    ]  # fmt: skip
    assert steps[0].analyze == ((FAMILY, "surabaya"),)
    assert steps[0].plan.service(FAMILY, "jakarta") == serving.service(FAMILY, "jakarta")
    assert steps[-1].plan == graduated
    # A chosen strategy other than rolling is kept: blue-green warms the own model, then switches.
    assert [s.name for s in rollout_steps("blue-green", serving, graduated, [10, 100])] == [
        "warm green 0%", "switch 100%",
    ]  # fmt: skip


def test_a_gate_override_keyed_by_the_group_decides_its_pooled_model_only(
    config: Config, config_path: Path, tmp_path: Path, mlflow_uri: str
) -> None:
    """``gates.region_overrides`` keyed ``<family>/<group>`` sets the gates of the group's pooled model."""
    build_all(config, request=BuildRequest(source=str(bookings_file(config, tmp_path))))
    [pooled] = train_pooled(config, tracking_uri=mlflow_uri)
    assert pooled.status == "registered", pooled.reason
    raw = yaml.safe_load(config_path.read_text())
    raw["gates"]["region_overrides"][f"{FAMILY}/country-id"] = {"max_model_size_mb": 0.0001}
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    tightened = load_config(config_path, environ={})

    decision = evaluate_pair(open_client(tightened), tightened, FAMILY, "country-id", decided_by="user:test")

    assert (decision.region, decision.outcome) == ("country-id", "rejected"), decision.summary
    assert "model size" in decision.summary


def test_a_pooled_model_is_promoted_by_hand_and_rolled_back_by_its_group(
    config: Config, config_path: Path, tmp_path: Path, mlflow_uri: str
) -> None:
    """``--group`` names a pooled model in ``promote --version`` and ``rollback``; a region it serves points there.

    Surabaya has no model of its own: ``rollback --region surabaya`` used to answer "nothing to roll back
    to (champion: none ...)", and neither command took a group, so a pooled champion serving a bad
    version could only be moved back by hand in the MLflow UI.
    """
    build_all(config, request=BuildRequest(source=str(bookings_file(config, tmp_path))))
    [first] = train_pooled(config, tracking_uri=mlflow_uri)
    promote_all(config, [FAMILY], None, "user:test", tracking_uri=mlflow_uri, groups=["country-id"])
    [second] = train_pooled(config, tracking_uri=mlflow_uri, params_override={"max_depth": 2})
    assert (first.status, second.status) == ("registered", "registered"), (first.reason, second.reason)
    client = open_client(config)
    assert client.get_model_version_by_alias(first.model_name, CHAMPION_ALIAS).version == first.version
    common = ["--family", FAMILY, "--config", str(config_path), "--tracking-uri", mlflow_uri]

    promoted = CliRunner().invoke(
        app, ["promote", *common, "--group", "country-id", "--version", str(second.version), "--reason", "depth 2"]
    )

    assert promoted.exit_code == 0, promoted.output
    assert client.get_model_version_by_alias(first.model_name, CHAMPION_ALIAS).version == second.version

    pointed = CliRunner().invoke(app, ["rollback", *common, "--region", "surabaya"])

    assert pointed.exit_code == 2, pointed.output
    message = " ".join(pointed.output.split())
    assert f"{FAMILY}/surabaya is served by the pooled model {first.model_name} v{second.version}" in message
    assert f"modelyard rollback --family {FAMILY} --group country-id" in message

    rolled = CliRunner().invoke(app, ["rollback", *common, "--group", "country-id", "--reason", "too shallow"])

    assert rolled.exit_code == 0, rolled.output
    assert client.get_model_version_by_alias(first.model_name, CHAMPION_ALIAS).version == first.version
    shown = CliRunner().invoke(app, ["status", *common, "--group", "country-id"], env={"COLUMNS": "160"})
    assert shown.exit_code == 0, shown.output
    row = next(line for line in shown.output.splitlines() if "country-id" in line)
    assert row.split()[:3] == [FAMILY, "country-id", f"v{first.version}"], shown.output
    assert f"champion moved: {FAMILY}/country-id v{first.version}" in " ".join(rolled.output.split())
    for wrong in (["--group", "country-id", "--region", "jakarta"], [], ["--group", "nowhere"]):
        refused = CliRunner().invoke(app, ["rollback", *common, *wrong])
        assert refused.exit_code == 2, refused.output
    assert "unknown region group 'nowhere'" in refused.output
    assert client.get_model_version_by_alias(first.model_name, CHAMPION_ALIAS).version == first.version
