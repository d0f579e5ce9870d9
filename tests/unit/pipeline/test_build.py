"""build_all: publish, idempotent re-runs, skips, and failures that stay in their region."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from modelyard.core.config import Config, ConfigError, load_config
from modelyard.core.featurespec import FittedSpec
from modelyard.pipeline.build import BuildRequest, build_all, build_pair
from modelyard.pipeline.cli import render_summary
from modelyard.pipeline.generator import generate_for
from modelyard.pipeline.snapshots import latest_snapshot, load_frame

REPO = Path(__file__).resolve().parents[3]
REGIONS = ["jakarta", "singapore"]


def _config(root: Path, **overrides: str) -> Config:
    environ = {
        "MODELYARD_STORAGE__ROOT": str(root),
        "MODELYARD_DATA__SYNTHETIC__ROWS": "600",
        "MODELYARD_DATA__MIN_ROWS": "200",
        **overrides,
    }
    return load_config(REPO / "modelyard.yaml", environ=environ)


def _files(root: Path) -> dict[Path, float]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_publishes_then_rerun_is_a_no_op(tmp_path: Path) -> None:
    config = _config(tmp_path)
    first = build_all(config, regions=REGIONS)
    assert [(r.family, r.region, r.status) for r in first] == [
        (f, r, "published") for f in config.family_names for r in REGIONS
    ]
    for result in first:
        meta = latest_snapshot(config.storage.features_dir, result.family, result.region)
        assert meta.digest == result.digest
        assert meta.rows == result.rows == 600
        assert meta.validation.success
        assert meta.validation.checks == result.checks > 50
        assert result.report is not None
        assert "passed" in result.report.read_text()
        assert meta.source.startswith("synthetic:seed=42")
        frame = load_frame(config.storage.features_dir, meta)
        family = config.family(result.family)
        assert [c for c in frame.columns if not c.startswith("raw.")][-1] == family.target
        assert meta.feature_spec is not None
        assert FittedSpec.from_dict(meta.feature_spec).names == family.feature_names
    before = _files(tmp_path)
    second = build_all(config, regions=REGIONS)
    assert {r.status for r in second} == {"unchanged"}
    assert [r.digest for r in second] == [r.digest for r in first]
    assert _files(tmp_path) == before


def test_too_few_rows_in_no_group_is_a_recorded_skip(tmp_path: Path) -> None:
    config = _config(tmp_path, MODELYARD_DATA__MIN_ROWS="5000")
    results = build_all(config, families=["pickup_eta"], regions=["singapore"])
    assert [r.status for r in results] == ["skipped"]
    assert results[0].reason == (
        "600 rows for region 'singapore', fewer than data.min_rows=5000, and no region group pools it "
        "(see groups: in the config, ADR 0015)"
    )
    assert not (config.storage.features_dir / "pickup_eta" / "singapore").exists()


def test_too_few_rows_in_a_group_publishes_pooled_only(tmp_path: Path) -> None:
    config = _config(tmp_path, MODELYARD_DATA__MIN_ROWS="5000")
    [result] = build_all(config, families=["pickup_eta"], regions=["jakarta"])
    assert (result.status, result.pooled_only) == ("published", True)
    assert "pooled only: 600 rows for region 'jakarta', fewer than data.min_rows=5000" in result.reason
    assert "served by the pooled model of country-id" in result.reason
    meta = latest_snapshot(config.storage.features_dir, "pickup_eta", "jakarta")
    assert (meta.rows, meta.validation.success, meta.validation.failed) == (600, True, 0)
    row_count = "expect_table_row_count_to_be_between"
    assert result.report is not None
    assert row_count in result.report.read_text()


def test_too_few_rows_even_to_pool_is_a_recorded_skip(tmp_path: Path) -> None:
    config = _config(tmp_path, MODELYARD_DATA__MIN_ROWS="5000", MODELYARD_DATA__MIN_POOLED_ROWS="700")
    [result] = build_all(config, families=["pickup_eta"], regions=["jakarta"])
    assert result.status == "skipped"
    assert result.reason.endswith("and fewer than data.min_pooled_rows=700 to be pooled with country-id")


def test_enough_rows_for_its_own_model_is_not_pooled_only(tmp_path: Path) -> None:
    [result] = build_all(_config(tmp_path), families=["pickup_eta"], regions=["jakarta"])
    assert (result.status, result.pooled_only) == ("published", False)
    assert "pooled only" not in result.reason


def test_bad_region_fails_alone_and_publishes_nothing(tmp_path: Path) -> None:
    config = _config(tmp_path / "store")
    good = generate_for(config, "jakarta", rows=400)
    bad = generate_for(config, "singapore", rows=400)
    bad.loc[:311, "pickup_distance_km"] = 312.0
    source = tmp_path / "bookings.parquet"
    pd.concat([good, bad]).to_parquet(source, index=False)

    results = build_all(
        config, families=["driver_acceptance"], regions=REGIONS, request=BuildRequest(source=str(source))
    )

    by_region = {r.region: r for r in results}
    assert by_region["jakarta"].status == "published"
    failed = by_region["singapore"]
    assert failed.status == "failed"
    assert failed.reason == (
        "region 'singapore': column 'pickup_distance_km' has 312 values outside [0, 200] "
        "(expect_column_values_to_be_between)"
    )
    assert failed.validation.startswith("FAILED 1/")
    assert failed.report is not None
    assert "FAIL" in failed.report.read_text()
    assert not (config.storage.features_dir / "driver_acceptance" / "singapore").exists()
    meta = latest_snapshot(config.storage.features_dir, "driver_acceptance", "jakarta")
    assert meta.source == f"file:{source}"


def test_unreadable_source_fails_every_pair_with_the_cause(tmp_path: Path) -> None:
    config = _config(tmp_path)
    results = build_all(config, regions=["jakarta"], request=BuildRequest(source=str(tmp_path / "missing.csv")))
    assert {r.status for r in results} == {"failed"}
    assert all("no such file" in r.reason for r in results)


def test_a_full_disk_fails_its_pair_retryably_and_the_others_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from modelyard.pipeline import snapshots
    from modelyard.plugins.stage_pairs import data_outcome

    config = _config(tmp_path)
    publish, calls = snapshots.publish, []

    def full_once(*args: object, **kwargs: object) -> object:
        calls.append(kwargs["region"])
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "features" / "x.parquet"))
        return publish(*args, **kwargs)

    monkeypatch.setattr(snapshots, "publish", full_once)
    results = build_all(config, families=["driver_acceptance"], regions=REGIONS)
    assert [r.status for r in results] == ["failed", "published"]
    assert results[0].reason.startswith(f"could not write {tmp_path / 'features' / 'x.parquet'}: the disk is full;")
    assert "nothing of this pair was published" in results[0].reason
    assert data_outcome(results[0]).retryable  # a storage fault is retried, bad data is not
    assert not data_outcome(replace(results[0], retryable=False)).retryable
    with pytest.raises(snapshots.SnapshotNotFoundError):
        latest_snapshot(config.storage.features_dir, "driver_acceptance", "jakarta")


def test_date_range_filters_rows(tmp_path: Path) -> None:
    import datetime as dt

    config = _config(tmp_path, MODELYARD_DATA__SYNTHETIC__ROWS="2000")
    request = BuildRequest(start=dt.date(2026, 2, 1), end=dt.date(2026, 3, 31))
    [result] = build_all(config, families=["pickup_eta"], regions=["jakarta"], request=request)
    meta = latest_snapshot(config.storage.features_dir, "pickup_eta", "jakarta")
    assert result.status == "published"
    assert 200 < meta.rows < 2000
    assert meta.time_min >= dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    assert meta.time_max < dt.datetime(2026, 4, 1, tzinfo=dt.UTC)


def test_a_range_that_ends_before_it_starts_is_refused() -> None:
    import datetime as dt

    from modelyard.pipeline.build import BuildRequestError

    with pytest.raises(BuildRequestError, match="start 2026-03-31 is after end 2026-02-01"):
        BuildRequest(start=dt.date(2026, 3, 31), end=dt.date(2026, 2, 1))
    assert BuildRequest(start=dt.date(2026, 2, 1), end=dt.date(2026, 2, 1)).start == dt.date(2026, 2, 1)  # one day


def test_unknown_names_are_config_errors(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with pytest.raises(ConfigError, match="unknown region 'atlantis'"):
        build_all(config, regions=["atlantis"])


def test_one_pair_is_resolved_before_any_data_is_read(tmp_path: Path) -> None:
    # Not a "failed: no such file" result: the pair names no configured region, whatever the source.
    config = _config(tmp_path)
    request = BuildRequest(source=str(tmp_path / "missing.csv"))
    with pytest.raises(ConfigError, match="unknown region 'atlantis'"):
        build_pair(config, "driver_acceptance", "atlantis", request)
    assert build_pair(config, "driver_acceptance", "jakarta", request).status == "failed"


def test_summary_table_lists_every_pair(tmp_path: Path) -> None:
    config = _config(tmp_path)
    results = build_all(config, families=["pickup_eta"], regions=REGIONS)
    console = Console(width=200, record=True)
    console.print(render_summary(results))
    text = console.export_text()
    for column in ("family", "region", "status", "rows", "validation", "digest"):
        assert column in text
    for result in results:
        assert result.digest is not None
        assert result.digest in text
    assert text.count("published") == 2


def test_rows_that_answer_served_requests_become_outcomes_for_live_quality(tmp_path: Path) -> None:
    """A dataset whose key is the request id clients send (X-Request-Id: the booking id)."""
    import types

    import yaml
    from sklearn.metrics import roc_auc_score

    from modelyard.monitoring.measure import SampleWindow, ServedVersion, live_quality

    raw = yaml.safe_load((REPO / "modelyard.yaml").read_text())
    raw["datasets"][0]["request_id_column"] = "booking_id"
    path = tmp_path / "modelyard.yaml"
    path.write_text(yaml.safe_dump(raw))
    environ = {"MODELYARD_STORAGE__ROOT": str(tmp_path / "store"), "MODELYARD_DATA__SYNTHETIC__ROWS": "600",
               "MODELYARD_DATA__MIN_ROWS": "200"}  # fmt: skip
    config = load_config(path, environ=environ)
    first = build_all(config, families=["driver_acceptance"], regions=["jakarta"])
    assert [r.status for r in first] == ["published"]
    assert "600 rows are outcomes of served requests" in first[0].reason
    folder = config.storage.outcomes_dir / "driver_acceptance" / "jakarta"
    [written] = list(folder.glob("ingested-*.parquet"))
    outcomes = pd.read_parquet(written)
    assert list(outcomes.columns) == ["request_id", "record", "accepted"]
    generated = generate_for(config, "jakarta")
    assert set(outcomes["request_id"]) == set(generated["booking_id"])
    before = _files(tmp_path)
    assert [r.status for r in build_all(config, families=["driver_acceptance"], regions=["jakarta"])] == ["unchanged"]
    assert _files(tmp_path) == before  # the same data writes no second outcomes file

    picked = outcomes.head(40)
    scores = [0.9 if label else 0.2 for label in picked["accepted"]]
    scores[:4] = [0.1, 0.95, 0.3, 0.7]  # not perfect
    window = SampleWindow(by_request={rid: [score] for rid, score in zip(picked["request_id"], scores, strict=True)})
    live = live_quality(config, ServedVersion("driver_acceptance", "jakarta", "1", tmp_path), window,
                        types.SimpleNamespace(tags={}))  # fmt: skip
    assert live["live_rows"] == 40
    assert live["live_auc"] == pytest.approx(roc_auc_score(picked["accepted"], scores))


def test_latest_goes_back_to_an_earlier_snapshot_and_the_next_build_moves_it_on(tmp_path: Path) -> None:
    """A build that passed its checks with wrong data: `modelyard data rollback` points LATEST back."""
    from typer.testing import CliRunner

    from modelyard.deploy.cli import app
    from modelyard.pipeline.snapshots import list_snapshots

    pair = ("driver_acceptance", "jakarta")
    (first,) = build_all(_config(tmp_path), ["driver_acceptance"], ["jakarta"])
    (second,) = build_all(_config(tmp_path, MODELYARD_DATA__SYNTHETIC__ROWS="700"), ["driver_acceptance"], ["jakarta"])
    features = _config(tmp_path).storage.features_dir
    assert [meta.digest for meta in list_snapshots(features, *pair)] == [second.digest, first.digest]
    env = {"MODELYARD_CONFIG": str(REPO / "modelyard.yaml"), "MODELYARD_STORAGE__ROOT": str(tmp_path), "COLUMNS": "200"}

    def data(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["data", *args], env=env)
        return result.exit_code, " ".join(result.output.split())

    def listed() -> dict[str, bool]:
        """Each listed digest, newest first, and whether it is LATEST."""
        output = CliRunner().invoke(app, ["data", "snapshots", "-f", pair[0], "-r", pair[1], "--json"], env=env).stdout
        return {record["digest"]: record["latest"] for record in json.loads(output)}

    code, text = data("rollback", "-f", pair[0], "-r", pair[1])
    assert code == 0, text
    assert f"driver_acceptance/jakarta: LATEST {second.digest} -> {first.digest} (built " in text
    assert "600 rows" in text
    assert latest_snapshot(features, *pair).digest == first.digest
    assert list(listed().items()) == [(second.digest, False), (first.digest, True)]
    code, text = data("rollback", "-f", pair[0], "-r", pair[1])
    assert code == 2
    assert f"LATEST {first.digest} is its oldest snapshot; there is none to go back to" in text
    code, text = data("rollback", "-f", pair[0], "-r", pair[1], "--to", "[nope]")
    assert code == 2
    assert f"no snapshot with digest '[nope]' (its snapshots: {second.digest}, {first.digest})" in text
    code, text = data("rollback", "-f", pair[0], "-r", pair[1], "--to", second.digest[:6])
    assert code == 0, text
    assert latest_snapshot(features, *pair).digest == second.digest
    data("rollback", "-f", pair[0], "-r", pair[1])
    (again,) = build_all(_config(tmp_path, MODELYARD_DATA__SYNTHETIC__ROWS="700"), ["driver_acceptance"], ["jakarta"])
    assert latest_snapshot(features, *pair).digest == again.digest == second.digest


def test_snapshots_lists_the_pooled_snapshots_of_the_groups_serving_the_regions(tmp_path: Path) -> None:
    """What `modelyard prune` weighs for a region includes its group's pooled snapshots: the listing shows them."""
    from typer.testing import CliRunner

    from modelyard.deploy.cli import app
    from modelyard.pipeline.snapshots import ValidationSummary, publish

    config = _config(tmp_path)
    (own,) = build_all(config, ["driver_acceptance"], ["jakarta"])
    frame = load_frame(
        config.storage.features_dir, latest_snapshot(config.storage.features_dir, "driver_acceptance", "jakarta")
    )
    pooled, _ = publish(
        config.storage.features_dir, frame.iloc[:100], family="driver_acceptance", region="country-id",
        target="accepted", time_column="event_time", source="pooled:country-id:jakarta@x",
        validation=ValidationSummary(success=True),
    )  # fmt: skip
    env = {"MODELYARD_CONFIG": str(REPO / "modelyard.yaml"), "MODELYARD_STORAGE__ROOT": str(tmp_path)}

    def listed(*args: str) -> list[tuple[str, str]]:
        output = CliRunner().invoke(app, ["data", "snapshots", "-f", "driver_acceptance", *args, "--json"], env=env)
        return [(record["region"], record["digest"]) for record in json.loads(output.stdout)]

    assert listed("-r", "jakarta") == [("jakarta", own.digest), ("country-id", pooled.digest)]
    assert listed("-r", "singapore") == []  # another country's group
