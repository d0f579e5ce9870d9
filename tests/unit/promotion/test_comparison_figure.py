"""The comparison figure a decision uploads: one kept figure per thread, redrawn per decision (issue 26)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from modelyard.pipeline.snapshots import ValidationSummary
from modelyard.promotion import record
from modelyard.promotion.gates import Evidence, ModelScore
from tests.unit.promotion.test_record import evaluated, gate


def evidence(champion: bool, slices: tuple[str, ...]) -> Evidence:
    metrics = {"holdout_auc": 0.8, **{f"holdout_auc__{name}": 0.7 for name in slices}}
    return Evidence(
        task="classification",
        challenger=ModelScore("3", np.linspace(0, 1, 50), metrics),
        champion=ModelScore("2", np.linspace(0.1, 0.9, 50), metrics) if champion else None,
        validation=ValidationSummary(success=True, checks=3),
        size_mb=1.0,
        latency_p99_ms=1.0,
        holdout_rows=50,
    )


def test_a_decision_draws_on_the_threads_kept_figure_and_keeps_nothing_of_the_previous_one(tmp_path: Path) -> None:
    decision = evaluated([gate("absolute:holdout_auc")])
    first = record._kept_comparison().draw(evidence(champion=True, slices=("night", "rain", "peak")), decision)
    first.save(tmp_path / "first.png")
    second = record._kept_comparison().draw(evidence(champion=False, slices=("night",)), decision)
    second.save(tmp_path / "second.png")

    assert second is first  # built once per thread, not per decision
    labels = [text.get_text() for text in second.bars.get_legend().get_texts()]
    assert labels == ["challenger v3"]  # the first decision's champion is gone
    assert len(second.bars.patches) == 2  # overall and night
    assert len(second.bars.get_xticklabels()) == 2
    assert [text.get_text() for text in second.hist.get_legend().get_texts()] == ["challenger v3"]
    assert (tmp_path / "second.png").read_bytes().startswith(b"\x89PNG")


def test_each_thread_has_its_own_figure_and_a_notebook_gets_a_new_one() -> None:
    mine = record._kept_comparison()
    theirs: list[record.ComparisonPlot] = []
    worker = threading.Thread(target=lambda: theirs.append(record._kept_comparison()))
    worker.start()
    worker.join()
    assert theirs[0] is not mine
    decision = evaluated([gate("absolute:holdout_auc")])
    assert record.comparison_figure(evidence(champion=True, slices=()), decision) is not mine.fig
