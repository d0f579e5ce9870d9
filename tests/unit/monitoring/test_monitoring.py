"""Reading served samples and judging them (no MLflow): window, torn lines, shadows, verdicts."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest

from modelyard.core.config import DriftBounds
from modelyard.monitoring.measure import MonitoringError, Reference, compare, drift_tags, read_samples, served_versions

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)


def _line(at: dt.datetime, rows: list[list[float]], kind: str = "prediction", rate: float = 0.5) -> str:
    entry = {"ts": at.isoformat(), "kind": kind, "request_id": "r", "features": rows, "sample_rate": rate}
    entry["predictions"] = [0.5] * len(rows)
    return json.dumps(entry)


def _write(folder: Path, name: str, lines: list[str], mtime: dt.datetime = NOW) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    os.utime(path, (mtime.timestamp(), mtime.timestamp()))
    return path


def test_only_served_predictions_inside_the_window_are_read(tmp_path):
    hour = dt.timedelta(hours=1)
    _write(tmp_path, "a.jsonl.gz", [_line(NOW - 30 * hour, [[1.0]]), _line(NOW - hour, [[2.0], [3.0]])])
    _write(tmp_path, "b.jsonl.gz", [_line(NOW - hour, [[9.0]], kind="shadow"), "{not json", _line(NOW, [[4.0]])])
    _write(tmp_path, "old.jsonl.gz", [_line(NOW - hour, [[7.0]])], mtime=NOW - 48 * hour)  # skipped by mtime
    counts = [
        json.dumps({"ts": (NOW - hour).isoformat(), "kind": "counts", "counts": {"ok": 90, "bad_input": 10}}),
        json.dumps({"ts": (NOW - 2 * hour).isoformat(), "kind": "counts", "counts": {"ok": 50, "error": 50}}),
        json.dumps({"ts": (NOW - 30 * hour).isoformat(), "kind": "counts", "counts": {"error": 1000}}),  # too old
    ]
    _write(tmp_path, "counts.jsonl.gz", counts)
    (tmp_path / ".c.jsonl.gz.part").write_bytes(b"half")  # a file still being written is invisible
    window = read_samples(tmp_path, NOW - 24 * hour, NOW)
    assert window.features == [[2.0], [3.0], [4.0]]
    assert (window.requests, window.rows, window.unreadable_lines, window.files) == (2, 3, 1, 3)
    assert window.outcomes == {"ok": 140, "bad_input": 10, "error": 50}
    assert window.error_rate == pytest.approx(60 / 200)
    assert window.estimated_requests == pytest.approx(4.0)  # each sampled request stands for 1 / 0.5


def test_lines_name_their_model_and_a_window_can_keep_one(tmp_path):
    """A region graduating from its pooled model to its own v1 writes both under version 1 (ADR 0015)."""
    hour = dt.timedelta(hours=1)

    def named(at: dt.datetime, value: float, model: str | None) -> str:
        entry = json.loads(_line(at, [[value]]))
        return json.dumps({**entry, "model": model} if model else entry)

    lines = [
        named(NOW - 3 * hour, 1.0, None),  # written before lines named their model
        named(NOW - 2 * hour, 2.0, "fam-country-id"),
        named(NOW - hour, 3.0, "fam-surabaya"),
        named(NOW - 90 * dt.timedelta(minutes=1), 4.0, "fam-country-id"),
    ]
    _write(tmp_path, "a.jsonl.gz", lines)
    window = read_samples(tmp_path, NOW - 24 * hour, NOW)
    assert window.rows == 4
    assert (window.models, window.latest_model) == ({"fam-country-id", "fam-surabaya"}, "fam-surabaya")
    assert read_samples(tmp_path, NOW - 24 * hour, NOW, model="fam-surabaya").features == [[1.0], [3.0]]
    assert read_samples(tmp_path, NOW - 24 * hour, NOW, model="fam-country-id").features == [[1.0], [2.0], [4.0]]


def test_served_versions_are_listed_per_pair_in_numeric_order(tmp_path):
    for version in ("10", "9", ".tmp"):
        (tmp_path / "fam" / "jakarta" / version).mkdir(parents=True)
    found = served_versions(tmp_path, [("fam", "jakarta"), ("fam", "bangkok")])
    assert [(s.region, s.version) for s in found] == [("jakarta", "9"), ("jakarta", "10")]
    _write(tmp_path / "fam" / "jakarta" / "10", "a.jsonl.gz", [_line(NOW, [[1.0]])])
    _write(tmp_path / "fam" / "jakarta" / "9", "a.jsonl.gz", [_line(NOW, [[1.0]])], mtime=NOW - dt.timedelta(days=3))
    recent = served_versions(tmp_path, [("fam", "jakarta")], since=NOW - dt.timedelta(hours=24))
    assert [s.version for s in recent] == ["10"]  # version 9 no longer serves: not measured again


def _reference() -> Reference:
    rng = np.random.default_rng(0)
    return Reference(
        names=["distance", "is_new"],
        kinds={"distance": "log1p", "is_new": "compare"},
        columns={"distance": rng.normal(5, 1, 4000), "is_new": (rng.random(4000) < 0.1).astype(float)},
        holdout_predictions=rng.beta(2, 5, 1000),
        data_digest="abc",
    )


def _window(distance_shift: float, new_share: float, rows: int = 400):
    from modelyard.monitoring.measure import SampleWindow

    rng = np.random.default_rng(1)
    features = np.column_stack([rng.normal(5 + distance_shift, 1, rows), (rng.random(rows) < new_share).astype(float)])
    return SampleWindow(features=features.tolist(), predictions=rng.beta(2, 5, rows).tolist(), requests=rows)


def test_a_stable_window_is_stable_and_a_shifted_one_names_its_features():
    bounds = DriftBounds()
    verdict, drifts, prediction = compare(_reference(), _window(0, 0.1), bounds, 10)
    assert verdict == "stable"
    assert prediction is not None
    assert not prediction.drifted
    verdict, drifts, _ = compare(_reference(), _window(2.0, 0.9), bounds, 10)
    assert verdict == "drifted"
    assert {d.feature: d.statistic for d in drifts if d.drifted} == {"distance": "psi", "is_new": "js"}


def test_discrete_values_rounded_to_float32_by_the_server_are_not_drift():
    # A count-based feature: a few float64 values; the server's float32 matrix logs them as 0.9052, 1.8104.
    levels = np.array([0.9052000000000001, 1.8104000000000002, 2.7156000000000002])
    rng = np.random.default_rng(2)
    trained = {"demand": rng.choice(levels, 3000, p=[0.8, 0.15, 0.05])}
    reference = Reference(["demand"], {"demand": "window_count"}, trained, rng.beta(2, 5, 1000), "abc")
    logged = [[float(f"{np.float32(v)}")] for v in rng.choice(levels, 400, p=[0.8, 0.15, 0.05])]
    window = _window(0, 0.1)
    window.features = logged
    verdict, drifts, _ = compare(reference, window, DriftBounds(), 10)
    assert drifts[0].value < 0.05, drifts
    assert verdict == "stable"


def test_too_few_samples_give_no_verdict():
    verdict, drifts, prediction = compare(_reference(), _window(5.0, 1.0, rows=50), DriftBounds(min_samples=200), 10)
    assert (verdict, drifts, prediction) == ("too_few_samples", [], None)


def test_drift_tags_say_why_a_pair_retrains():
    extra = {"reason": "drifted: distance psi=0.9", "drifted": {"distance": {}}, "version": "3", "run_id": "r1"}
    tags = drift_tags(extra)
    assert tags["retrain_reason"] == "drift"
    assert (tags["drift_features"], tags["drift_version"], tags["drift_run_id"]) == ("distance", "3", "r1")


def test_live_quality_joins_outcomes_on_the_request_id(tmp_path):
    import types

    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from modelyard.core.config import load_config
    from modelyard.monitoring.measure import SampleWindow, ServedVersion, live_quality, outcomes_dir

    config = load_config(
        Path(__file__).parents[3] / "modelyard.yaml", environ={"MODELYARD_STORAGE__ROOT": str(tmp_path)}
    )
    samples = SampleWindow(by_request={"a": [0.9, 0.2], "b": [0.6], "c": [0.1]})
    folder = outcomes_dir(config, "driver_acceptance", "jakarta")
    folder.mkdir(parents=True)
    pd.DataFrame(
        {"request_id": ["a", "a", "b", "c", "zz"], "record": [0, 1, 0, 0, 0], "accepted": [1, 0, 0, 1, 1]}
    ).to_csv(folder / "day1.csv", index=False)
    version = types.SimpleNamespace(tags={"holdout_auc": "0.81"})
    served = ServedVersion("driver_acceptance", "jakarta", "3", tmp_path)
    live = live_quality(config, served, samples, version)
    assert live["live_rows"] == 4  # "zz" was never sampled
    assert live["live_auc"] == pytest.approx(roc_auc_score([1, 0, 0, 1], [0.9, 0.2, 0.6, 0.1]))
    assert live["holdout_auc"] == pytest.approx(0.81)
    pd.DataFrame({"rid": ["a"]}).to_csv(folder / "bad.csv", index=False)
    with pytest.raises(MonitoringError, match=r"bad.csv: outcomes need the columns 'request_id' and 'accepted'"):
        live_quality(config, served, samples, version)
