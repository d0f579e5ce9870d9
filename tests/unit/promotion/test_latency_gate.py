"""The latency gate times the engine that will serve, against the champion timed in the same run (ADR 0012)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelyard.core.config import GateDefaults
from modelyard.pipeline.snapshots import ValidationSummary
from modelyard.promotion import evidence as evidence_mod
from modelyard.promotion import gates
from modelyard.promotion.evidence import LoadedVersion, serving_engines, serving_latencies
from modelyard.promotion.gates import Evidence, ModelScore
from modelyard.training.onnx_export import write_serving_extras

ROWS = pd.DataFrame({"a": np.linspace(0, 1, 200), "b": np.sin(np.linspace(0, 9, 200))})
LABELS = (ROWS.a + 0.3 * ROWS.b > 0.5).astype(int)


def timed(latency_ms: float, reference_ms: float | None) -> Evidence:
    return Evidence(
        task="classification",
        challenger=ModelScore("2", np.linspace(0, 1, 50), {"holdout_auc": 0.8}),
        champion=None,
        validation=ValidationSummary(success=True, checks=3),
        size_mb=1.0,
        latency_p99_ms=latency_ms,
        latency_engine="onnx",
        reference_latency_ms=reference_ms,
        reference_latency=None if reference_ms is None else "champion v1 (onnx)",
        holdout_rows=50,
    )


GATES = GateDefaults(max_p99_latency_ms=20, max_latency_ratio=2.0, latency_slack_ms=0.5)


def test_the_budget_is_relative_to_the_champion_timed_in_the_same_run() -> None:
    within = gates.latency_gate(GATES, timed(2.4, reference_ms=1.0))  # 2 x 1.0 + 0.5 = 2.5
    over = gates.latency_gate(GATES, timed(2.6, reference_ms=1.0))
    assert within.passed
    assert within.threshold == pytest.approx(2.5)
    assert not over.passed
    assert over.better == "lower"
    assert over.summary == (
        "single-row p99 latency (onnx) 2.6 ms over budget 2.5 ms "
        "(2 x champion v1 (onnx) 1 ms + 0.5 ms, timed in this run; absolute bound 20 ms)"
    )


def test_the_absolute_budget_bounds_the_relative_one_and_decides_a_first_model() -> None:
    capped = gates.latency_gate(GATES, timed(19.0, reference_ms=15.0))  # 2 x 15 + 0.5 > 20
    assert capped.threshold == 20
    assert "capped by the absolute bound 20 ms" in capped.summary
    first = gates.latency_gate(GATES, timed(21.0, reference_ms=None))
    assert not first.passed
    assert "no champion timed in this run" in first.summary


def test_microsecond_engines_get_the_slack_not_a_ratio_of_noise() -> None:
    # ONNX answers in ~6 us: 3x of that is still far below anything a client notices.
    assert gates.latency_gate(GATES, timed(0.018, reference_ms=0.006)).passed


def xgboost_version(folder: Path, n_estimators: int = 20) -> LoadedVersion:
    import xgboost as xgb

    model = xgb.XGBClassifier(n_estimators=n_estimators, max_depth=3, n_jobs=1).fit(ROWS, LABELS)
    write_serving_extras(model, "xgboost", ROWS, folder / "extra_files")
    return LoadedVersion("1", model, 0.1, None, list(ROWS.columns), folder)


def test_the_onnx_copy_is_timed_when_the_server_would_use_it(tmp_path: Path) -> None:
    engines = serving_engines(xgboost_version(tmp_path), "classification", ROWS)
    assert [e.engine for e in engines] == ["native", "onnx"]
    native, onnx = evidence_mod.p99_latencies_ms(engines, calls=100)
    assert onnx < native  # ~10 us against the native model's ~0.3+ ms through pandas
    (chosen,) = serving_latencies([engines], calls=100)
    assert chosen.engine == "onnx"


def test_without_an_onnx_copy_the_native_model_is_timed_and_says_why(tmp_path: Path) -> None:
    loaded = xgboost_version(tmp_path)
    (tmp_path / "extra_files" / "model.onnx").unlink()
    (engine,) = serving_engines(loaded, "classification", ROWS)
    assert engine.engine == "native"
    assert "no ONNX copy" in engine.reason


def test_an_onnx_copy_that_disagrees_with_the_model_is_not_timed(tmp_path: Path) -> None:
    loaded = xgboost_version(tmp_path)
    xgboost_version(tmp_path / "other", n_estimators=3)
    (tmp_path / "extra_files" / "model.onnx").write_bytes(
        (tmp_path / "other" / "extra_files" / "model.onnx").read_bytes()
    )
    (engine,) = serving_engines(loaded, "classification", ROWS)
    assert engine.engine == "native"
    assert "disagrees" in engine.reason


class _Worker:
    """A classifier whose single-row call works on the CPU for ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        end = time.thread_time() + self.seconds
        while time.thread_time() < end:
            pass
        return np.full((len(x), 2), 0.5)


def native(model: Any) -> list[evidence_mod.TimedEngine]:
    return serving_engines(LoadedVersion("1", model, 0.1, None, list(ROWS.columns)), "classification", ROWS)


def test_a_challenger_three_times_slower_than_its_champion_is_rejected() -> None:
    challenger, champion = serving_latencies([native(_Worker(0.003)), native(_Worker(0.001))], calls=20)
    result = gates.latency_gate(GATES, timed(challenger.p99_ms, champion.p99_ms))
    assert not result.passed, result.summary


def test_the_same_model_passes_against_itself_on_a_busy_machine(busy_machine: None, tmp_path: Path) -> None:
    engines = serving_engines(xgboost_version(tmp_path), "classification", ROWS)
    challenger, champion = serving_latencies([engines, engines], calls=100)
    assert gates.latency_gate(GATES, timed(challenger.p99_ms, champion.p99_ms)).passed


def test_a_shape_timed_once_in_this_process_is_not_timed_again_and_another_shape_is(tmp_path: Path) -> None:
    calls: list[str] = []

    def engine(name: str, shape: tuple[Any, ...] | None) -> evidence_mod.TimedEngine:
        return evidence_mod.TimedEngine("native", lambda row: calls.append(name), [0], shape=shape)

    shape = ("XGBClassifier", "classification", 2, f"test-{tmp_path.name}")
    (first,) = evidence_mod.p99_latencies_ms([engine("first", shape)], calls=20)
    timed_first = len(calls)
    (second,) = evidence_mod.p99_latencies_ms([engine("second", shape)], calls=20)
    assert timed_first > 20
    assert "second" not in calls
    assert second == first
    evidence_mod.p99_latencies_ms([engine("other", (*shape[:3], "other")), engine("unshaped", None)], calls=20)
    assert calls.count("other") == calls.count("unshaped") == timed_first


def test_a_downloaded_version_has_a_shape_by_type_features_and_size(tmp_path: Path) -> None:
    loaded = xgboost_version(tmp_path)
    shape = evidence_mod.model_shape(loaded, "classification")
    assert shape is not None
    assert shape[:3] == ("XGBClassifier", "classification", 2)
    assert evidence_mod.model_shape(LoadedVersion("1", loaded.model, 0.1, None, ["a", "b"]), "classification") is None
    assert {e.shape for e in serving_engines(loaded, "classification", ROWS)} == {shape}
