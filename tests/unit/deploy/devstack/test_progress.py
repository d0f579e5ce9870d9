"""The demo's per-pair grid reads chunk tasks (ADR 0008): their outcomes once finished, their labels before."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from modelyard.deploy.devstack.chain import ChainState
from modelyard.deploy.devstack.progress import labelled_pairs, pair_states, render_progress


def chunk_ti(state: str, label: str, map_index: int = 0) -> dict[str, Any]:
    return {
        "dag_id": "training", "dag_run_id": "r1", "task_id": "train", "map_index": map_index,
        "try_number": 1, "state": state, "rendered_map_index": label,
    }  # fmt: skip


def test_a_running_chunk_shows_the_pairs_its_label_names() -> None:
    ti = chunk_ti("running", "eta/jakarta, eta/manila, … (+10)")
    assert labelled_pairs(ti["rendered_map_index"]) == ["eta/jakarta", "eta/manila"]
    assert pair_states(ChainState(), ti) == [("eta/jakarta", "running"), ("eta/manila", "running")]


def test_a_finished_chunk_shows_every_pair_with_its_own_outcome() -> None:
    ti = chunk_ti("failed", "eta/jakarta, … (+2)")
    outcomes = [
        {"family": "eta", "region": "jakarta", "status": "registered", "ok": True},
        {"family": "eta", "region": "manila", "status": "unchanged", "ok": True},
        {"family": "eta", "region": "JKT", "status": "failed", "ok": False},
    ]
    state = ChainState(
        runs={"training": [{"dag_run_id": "r1", "state": "failed", "run_after": "x"}]},
        tasks={"r1": [ti]},
        outcomes={("training", "r1", "train", 0, 1): outcomes},
    )
    assert pair_states(state, ti) == [("eta/jakarta", "registered"), ("eta/manila", "unchanged"), ("eta/JKT", "failed")]
    console = Console(width=200, record=True)
    console.print(render_progress(state))
    text = console.export_text()
    for region in ("jakarta", "manila", "JKT"):
        assert region in text, text
