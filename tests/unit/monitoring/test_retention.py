"""Retention (monitoring.retention): which snapshots, unpublished files, prediction logs and monitoring runs a
prune removes.

The registry's answer (which snapshots registered versions were trained on) is given here as
:func:`trained_on` returns it; tests/integration/test_prune.py reads it from a real MLflow server.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.store.entities.paged_list import PagedList
from typer.testing import CliRunner

from modelyard.core.config import Config, ConfigError, load_config
from modelyard.deploy.cli import app
from modelyard.monitoring import retention
from modelyard.pipeline import snapshots
from tests.unit.conftest import make_frame

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC)
PAIR = ("acceptance", "alpha")


def publish(config: Config, seed: int, pair: tuple[str, str] = PAIR) -> snapshots.SnapshotMeta:
    meta, _ = snapshots.publish(
        config.storage.features_dir,
        make_frame(rows=50, seed=seed),
        family=pair[0],
        region=pair[1],
        target="accepted",
        time_column="event_time",
        source=f"seed {seed}",
        validation=snapshots.ValidationSummary(success=True, checks=1),
        report_html="<html>report</html>",
    )
    return meta


def files_of(config: Config, pair: tuple[str, str] = PAIR) -> set[str]:
    return {path.name for path in snapshots.snapshot_dir(config.storage.features_dir, *pair).iterdir()}


def aged(path: Path, when: dt.datetime) -> Path:
    os.utime(path, (when.timestamp(), when.timestamp()))
    return path


def test_keeps_latest_the_newest_and_what_versions_were_trained_on_and_removes_the_rest(small_config: Config) -> None:
    made = [publish(small_config, seed) for seed in range(6)]  # oldest first
    snapshots.point_latest(small_config.storage.features_dir, *PAIR, made[1].digest)  # a rollback: LATEST is old
    needed = {(*PAIR, made[0].digest): ["trained v1"]}
    chosen = retention.folders(small_config, ["acceptance"], ["alpha"])

    plan = retention.plan_prune(small_config, chosen, needed, retention.settings(small_config, keep=2), now=NOW)

    assert plan.kept == {
        (*PAIR, made[5].digest): ["newest 2"],
        (*PAIR, made[4].digest): ["newest 2"],
        (*PAIR, made[1].digest): ["LATEST"],
        (*PAIR, made[0].digest): ["trained v1"],
    }
    assert plan.kept_for_versions == 1
    assert [(r.kind, r.name) for r in plan.removals] == [("snapshot", made[3].digest), ("snapshot", made[2].digest)]
    removal = plan.removals[0]
    assert [path.name for path in removal.files] == [
        f"{made[3].digest}{end}" for end in (".json", ".parquet", ".report.html")
    ]
    assert removal.size == sum(path.stat().st_size for path in removal.files)
    assert "UTC; 50 rows, 2026-01-01 to 2026-02-28" in removal.detail

    outcome = retention.prune(small_config, plan)

    assert outcome.removed == list(plan.removals)
    assert not outcome.failed
    left = [meta.digest for meta in snapshots.list_snapshots(small_config.storage.features_dir, *PAIR)]
    assert left == [made[i].digest for i in (5, 4, 1, 0)]
    assert not {name for name in files_of(small_config) if name.startswith((made[2].digest, made[3].digest))}
    assert snapshots.latest_snapshot(small_config.storage.features_dir, *PAIR).digest == made[1].digest
    assert (
        retention.plan_prune(small_config, chosen, needed, retention.settings(small_config, keep=2), now=NOW).removals
        == ()
    )


def test_a_pooled_version_keeps_its_member_snapshots(tmp_path: Path) -> None:
    config = load_config(
        Path(__file__).resolve().parents[3] / "modelyard.yaml", environ={"MODELYARD_STORAGE__ROOT": str(tmp_path)}
    )
    pair = ("driver_acceptance", "jakarta")
    old, _new = publish(config, 1, pair), publish(config, 2, pair)
    chosen = retention.folders(config, ["driver_acceptance"], ["jakarta"])
    assert ("driver_acceptance", "country-id", config.pooled_model_name("driver_acceptance", "country-id")) in chosen

    bare = retention.plan_prune(config, chosen, {}, retention.settings(config, keep=1), now=NOW)
    pooled = retention.plan_prune(
        config, chosen, {(*pair, old.digest): ["pooled v3 (country-id)"]}, retention.settings(config, keep=1), now=NOW
    )

    assert [r.name for r in bare.removals] == [old.digest]
    assert pooled.removals == ()
    assert pooled.kept[(*pair, old.digest)] == ["pooled v3 (country-id)"]


def test_an_unpublished_data_file_goes_once_a_day_old_and_other_files_stay(small_config: Config) -> None:
    publish(small_config, 0)
    folder = snapshots.snapshot_dir(small_config.storage.features_dir, *PAIR)
    dead = folder / "0123456789abcdef.parquet"
    dead.write_bytes(b"x" * 10)
    aged(dead, NOW - dt.timedelta(days=2))
    publishing = folder / "fedcba9876543210.parquet"
    publishing.write_bytes(b"y")
    aged(publishing, NOW - dt.timedelta(hours=2))
    notes = folder / "NOTES.md"
    notes.write_text("a team's own file")
    aged(notes, NOW - dt.timedelta(days=30))

    plan = retention.plan_prune(small_config, retention.folders(small_config, None, None), {}, now=NOW)

    assert [(r.kind, r.name, r.size) for r in plan.removals] == [("unpublished", dead.name, 10)]
    assert "no snapshot names it" in plan.removals[0].detail
    retention.prune(small_config, plan)
    assert not dead.exists()
    assert publishing.exists()
    assert notes.exists()


def write_log(folder: Path, name: str, when: dt.datetime) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(gzip.compress(b'{"kind": "prediction"}\n'))
    return aged(path, when)


def test_prediction_logs_older_than_the_retention_go_and_an_emptied_version_folder_with_them(
    small_config: Config,
) -> None:
    samples = small_config.storage.samples_dir / "acceptance" / "alpha"
    gone = write_log(samples / "1", "20261001T000000-host-1-0.jsonl.gz", NOW - dt.timedelta(days=60))
    old = write_log(samples / "2", "20261101T000000-host-1-0.jsonl.gz", NOW - dt.timedelta(days=31))
    recent = write_log(samples / "2", "20261201T000000-host-1-0.jsonl.gz", NOW - dt.timedelta(days=6))
    writing = write_log(samples / "3", ".20261001T000000-host-1-0.jsonl.gz.part", NOW - dt.timedelta(days=60))
    also_old = write_log(samples / "3", "20261002T000000-host-1-0.jsonl.gz", NOW - dt.timedelta(days=60))

    plan = retention.plan_prune(small_config, retention.folders(small_config, None, None), {}, now=NOW)

    assert [(r.kind, r.name, len(r.files)) for r in plan.removals] == [
        ("samples", "v1", 1),
        ("samples", "v2", 1),
        ("samples", "v3", 1),
    ]
    assert "1 prediction-log files, the newest written 2026-11-06" in plan.removals[1].detail
    retention.prune(small_config, plan)
    assert not gone.exists()
    assert not old.exists()
    assert not also_old.exists()
    assert recent.exists()
    assert writing.exists()
    assert sorted(path.name for path in samples.iterdir()) == ["2", "3"]  # v1's folder was left empty: removed
    assert retention.plan_prune(small_config, retention.folders(small_config, None, None), {}, now=NOW).removals == ()
    assert retention.plan_prune(
        small_config,
        retention.folders(small_config, None, None),
        {},
        retention.settings(small_config, sample_days=5),
        now=NOW,
    ).removals[0].files == (recent,)


def test_the_data_stages_old_outcome_files_go_with_the_prediction_logs_and_a_teams_own_stay(
    small_config: Config,
) -> None:
    folder = small_config.storage.outcomes_dir / "acceptance" / "alpha"
    old = write_log(folder, "ingested-0123456789abcdef.parquet", NOW - dt.timedelta(days=40))
    recent = write_log(folder, "ingested-fedcba9876543210.parquet", NOW - dt.timedelta(days=2))
    own = write_log(folder, "labels-october.parquet", NOW - dt.timedelta(days=40))

    plan = retention.plan_prune(small_config, retention.folders(small_config, None, None), {}, now=NOW)

    assert [(r.kind, r.region, r.files) for r in plan.removals] == [("outcomes", "alpha", (old,))]
    retention.prune(small_config, plan)
    assert not old.exists()
    assert recent.exists()
    assert own.exists()


def test_a_summary_names_only_what_there_is() -> None:
    def removal(kind: retention.Kind, files: int) -> retention.Removal:
        return retention.Removal(kind, "f", "r", "x", "", tuple(Path(f"/x/{i}") for i in range(files)), 1000)

    assert retention.describe([]) == "nothing"
    assert retention.describe_kept(retention.PrunePlan((), {})) == "no snapshot published yet"
    assert retention.describe([removal("snapshot", 3)]) == "1 snapshot (1.0 kB)"
    mixed = [removal("snapshot", 3), removal("snapshot", 2), removal("samples", 4), removal("samples", 1)]
    assert retention.describe(mixed) == "2 snapshots and 5 prediction-log files of 2 versions (4.0 kB)"
    every = [removal("unpublished", 1), removal("outcomes", 2), removal("snapshot", 3)]
    assert retention.describe(every) == "1 snapshot, 1 unpublished data file and 2 ingested outcome files (3.0 kB)"


def test_a_snapshot_latest_points_at_again_before_the_prune_is_kept(small_config: Config) -> None:
    made = [publish(small_config, seed) for seed in range(3)]
    plan = retention.plan_prune(
        small_config, retention.folders(small_config, None, None), {}, retention.settings(small_config, keep=1), now=NOW
    )
    assert [r.name for r in plan.removals] == [made[1].digest, made[0].digest]
    snapshots.point_latest(small_config.storage.features_dir, *PAIR, made[0].digest)  # a build of the same content

    outcome = retention.prune(small_config, plan)

    assert [r.name for r in outcome.removed] == [made[1].digest]
    assert [(r.name, why) for r, why in outcome.skipped] == [
        (made[0].digest, "LATEST points at it again (a build since the plan); kept")
    ]
    assert snapshots.latest_snapshot(small_config.storage.features_dir, *PAIR).digest == made[0].digest


def test_a_retention_shorter_than_the_monitoring_window_is_refused_naming_both_keys(tmp_path: Path) -> None:
    path = Path(__file__).resolve().parents[3] / "modelyard.yaml"
    environ = {"MODELYARD_STORAGE__ROOT": str(tmp_path), "MODELYARD_MONITORING__WINDOW_HOURS": "72"}

    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={**environ, "MODELYARD_RETENTION__SAMPLE_DAYS": "2"})

    assert "retention.sample_days=2 keeps 48 hours" in str(refused.value)
    assert "monitoring.window_hours=72" in str(refused.value)
    assert "at least 3" in str(refused.value)
    assert load_config(path, environ={**environ, "MODELYARD_RETENTION__SAMPLE_DAYS": "3"}).retention.sample_days == 3


def prune_cli(config: Config, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    path = Path(config.storage.root).parent / "modelyard.yaml"
    env = {
        "COLUMNS": "200",
        "TERM": "dumb",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
        **(env or {}),
    }  # nothing listens on :9
    result = CliRunner().invoke(app, ["prune", "--config", str(path), *args], env=env)
    return result.exit_code, " ".join(result.output.split())


def test_without_the_registry_nothing_is_removed(small_config: Config) -> None:
    made = [publish(small_config, seed) for seed in range(5)]
    before = files_of(small_config)

    code, output = prune_cli(small_config, "--yes", "--snapshots", "1")

    assert code == 3, output
    assert "http://127.0.0.1:9" in output
    assert files_of(small_config) == before
    assert len(made) == 5


def test_the_cli_refuses_a_sample_retention_shorter_than_the_window_before_reading_anything(
    small_config: Config,
) -> None:
    code, output = prune_cli(small_config, "--sample-days", "0")
    assert code == 2
    assert "--sample-days" in output
    code, output = prune_cli(small_config, "--sample-days", "2", env={"MODELYARD_MONITORING__WINDOW_HOURS": "72"})
    assert code == 2, output
    assert "--sample-days=2 keeps 48 hours of prediction logs, less than monitoring.window_hours=72" in output
    code, output = prune_cli(small_config, "--family", "[nope]")
    assert code == 2
    assert "unknown family '[nope]'" in output


class MonitoringRuns:
    """The MlflowClient calls the monitoring-run prune makes, on runs held in memory."""

    def __init__(self, config: Config) -> None:
        self.project = config.project
        self.runs: list[SimpleNamespace] = []
        self.refuse: set[str] = set()
        self.deleted: list[str] = []

    def measured(self, family: str, region: str, days: float) -> str:
        run_id = f"{family}-{region}-{days}"
        start = int((NOW - dt.timedelta(days=days)).timestamp() * 1000)
        info = SimpleNamespace(run_id=run_id, experiment_id=family, start_time=start)
        self.runs.append(SimpleNamespace(info=info, data=SimpleNamespace(tags={"region": region})))
        return run_id

    def get_experiment_by_name(self, name: str) -> Any:
        project, family, _ = name.split("/")
        return SimpleNamespace(experiment_id=family) if project == self.project else None

    def search_runs(
        self, experiment_ids: list[str], filter_string: str, max_results: int, order_by: list[str], page_token: Any
    ) -> PagedList:
        cutoff = int(re.fullmatch(r"attributes\.start_time < (\d+)", filter_string)[1])  # type: ignore[index]
        assert order_by == ["attributes.start_time ASC"]
        found = sorted(
            (r for r in self.runs if r.info.experiment_id in experiment_ids and r.info.start_time < cutoff),
            key=lambda r: r.info.start_time,
        )
        start = int(page_token or 0)
        end = start + max_results
        return PagedList(found[start:end], str(end) if end < len(found) else None)

    def delete_run(self, run_id: str) -> None:
        if run_id in self.refuse:
            raise MlflowException(f"Run '{run_id}': permission denied")
        self.deleted.append(run_id)


def test_a_prune_takes_the_oldest_monitoring_runs_over_every_family_up_to_its_limit(
    small_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "RUNS_PER_PAGE", 2)  # several pages
    client = MonitoringRuns(small_config)
    oldest = client.measured("acceptance", "alpha", 400)
    client.measured("acceptance", "beta", 390)  # a region not chosen: neither taken nor counted
    linked = client.measured("acceptance", "alpha", 380)  # a version's latest measurement
    second = client.measured("eta", "alpha", 370)  # another family, in between
    third = client.measured("acceptance", "alpha", 360)
    fourth = client.measured("eta", "alpha", 350)
    client.measured("acceptance", "alpha", 10)  # recent
    chosen = [("acceptance", "alpha", "m-acceptance-alpha"), ("eta", "alpha", "m-eta-alpha")]
    every = {"m-acceptance-alpha": [SimpleNamespace(tags={"monitoring.alpha.run_id": linked})]}

    def planned(limit: int) -> dict[tuple[str, str], tuple[tuple[str, ...], str]]:
        found = retention.old_monitoring_runs(client, small_config, chosen, 90, now=NOW, every=every, limit=limit)
        return {(r.family, r.region): (r.runs, r.detail) for r in found}

    capped = planned(3)
    assert {key: runs for key, (runs, _) in capped.items()} == {
        ("acceptance", "alpha"): tuple(sorted((oldest, third))),
        ("eta", "alpha"): (second,),
    }
    assert all("a prune deletes the oldest 3; the next prune takes the rest" in detail for _, detail in capped.values())
    whole = planned(4)  # exactly as many as there are: nothing left over, nothing said
    assert whole[("eta", "alpha")][0] == tuple(sorted((second, fourth)))
    assert not any("next prune" in detail for _, detail in whole.values())


def test_deleting_monitoring_runs_stops_at_the_first_refusal_and_says_how_many_went(
    small_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = MonitoringRuns(small_config)
    runs = tuple(client.measured("acceptance", "alpha", 100 + day) for day in range(40))
    removal = retention.Removal("runs", *PAIR, "monitoring runs", "40 monitoring runs", (), 0, runs)
    plan = retention.PrunePlan((removal,), {})

    done = retention.prune(small_config, plan, client)  # type: ignore[arg-type]
    assert done.removed == [removal]
    assert sorted(client.deleted) == sorted(runs)

    client.deleted.clear()
    client.refuse.add(runs[4])
    monkeypatch.setattr(retention, "DELETING_THREADS", 1)  # in order: which runs went is known
    other = retention.Removal("runs", "acceptance", "beta", "monitoring runs", "1 monitoring run", (), 0, ("b1",))
    failed = retention.prune(small_config, retention.PrunePlan((removal, other), {}), client)  # type: ignore[arg-type]
    assert failed.removed == []
    assert failed.failed == [
        (removal, f"deleted 4 of 40, then run {runs[4]}: Run '{runs[4]}': permission denied"),
        (other, "not tried, since deleting acceptance/alpha's failed"),
    ]
    assert client.deleted == list(runs[:4])  # the rest were not tried once the server refused one
