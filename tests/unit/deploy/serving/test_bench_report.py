"""``make bench`` rewrites only its own part of docs/benchmarks.md; hand-written sections stay."""

from __future__ import annotations

import json
from pathlib import Path

from tests.bench.serving import GENERATED_END, GENERATED_START, LoadResult, replace_generated, write_json


def test_the_first_run_keeps_the_sections_after_the_old_generated_table() -> None:
    document = "# Serving benchmark\n\nold table\n\n## Reading it\n\nnotes\n\n## Raw fields\n\nmore\n"
    out = replace_generated(document, "# Serving benchmark\n\nnew table\n")
    assert out.startswith(f"{GENERATED_START}\n# Serving benchmark\n\nnew table\n{GENERATED_END}\n")
    assert "old table" not in out
    assert out.endswith("\n## Reading it\n\nnotes\n\n## Raw fields\n\nmore\n")


def test_later_runs_replace_only_what_is_between_the_markers() -> None:
    first = replace_generated("# t\n\nold\n\n## Notes\n\nkept\n", "# t\n\none\n")
    second = replace_generated(first, "# t\n\ntwo\n")
    assert "one" not in second
    assert second.count(GENERATED_START) == 1
    assert second == first.replace("one", "two")


def test_an_empty_document_is_the_generated_part() -> None:
    assert replace_generated("", "# t\n") == f"{GENERATED_START}\n# t\n{GENERATED_END}\n"


def _results(peers: dict[str, float], cpu_us: dict[str, float] | None = None) -> dict:
    from tests.bench.serving import BenchOptions, _summarize

    ours = {"single": 4000.0, "batch": 100.0, "swap_load": 4000.0, "healthz": 20000.0}
    ours |= {"precomputed_1": 4000.0, "raw_1": 3000.0}
    loads = {key: LoadResult(int(rps * 10), 10.0, 0, 1.0, 2.0, 3.0) for key, rps in ours.items()}
    mlflow = {"single": LoadResult(1000, 10.0, 0, 8.0, 9.0, 10.0), "batch": LoadResult(100, 10.0, 0, 8.0, 9.0, 10.0)}
    extra = {"engine": None, "raw_inputs": {}, "new_model_s": 1.0, "swap_times": [1.0, 2.0]}
    cpu = cpu_us or {}
    peer_loads = {name: LoadResult(int(rps * 10), 10.0, 0, 1.0, 2.0, 3.0, cpu.get(name)) for name, rps in peers.items()}
    return _summarize(BenchOptions(), {**loads, **extra}, mlflow, peer_loads)


def test_the_peer_rows_show_the_ratios_of_the_same_run() -> None:
    from tests.bench.serving import render_markdown

    peers = {"modelyard_v1": 4000.0, "modelyard_v2": 3600.0, "bare_asgi": 20000.0, "mlserver": 400.0, "kserve": 500.0}
    peers["bare_model"] = 8000.0
    batches = {"modelyard_v1_batch": 1000.0, "mlserver_batch": 250.0}
    results = _results(peers | batches, cpu_us={"modelyard_v1": 200.0, "mlserver": 1400.0})
    assert (results["measured"]["mlserver_cpu_ratio"], results["measured"]["kserve_cpu_ratio"]) == (7.0, None)
    assert (results["measured"]["v2_share"], results["measured"]["floor_share"]) == (0.9, 0.2)
    assert results["measured"]["mlserver_ratio"] == 10.0
    assert results["measured"]["kserve_ratio"] == 8.0
    assert results["met"]["kserve_ratio"] is False
    assert results["met"]["v2_share"] is True
    assert results["met"]["floor_share"] is False
    table = render_markdown(results)
    assert "| /v2 infer vs /v1 predict, single row (same model) | 90% | >= 85% | met |" in table
    assert "| single row vs the bare ASGI floor | 20% | >= 40% | MISSED |" in table
    assert "| single row vs the floor with the model (bare app + the same ONNX call) | 50% | (a reading) | |" in table
    assert "the floor with the model | 8,000 | 1.0 / 2.0 | 0.50x | | | |" in table
    assert "serve, POST /v1/predict | 4,000 | 1.0 / 2.0 | 1.00x | 200 | 8,000 | 1.00x |" in table
    assert "| server CPU a single-row request: MLServer's / KServe's over modelyard's | 7.0x / not run |" in table
    assert "| single row vs KServe's Python model server | 8.0x | >= 10x | MISSED |" in table
    # 8-row requests: rows/s and modelyard's ratio in the same run
    assert (
        "| MLServer 1.7 (xgboost runtime, v2, one [n, k] tensor) | 400 | 1.0 / 2.0 | 10.00x | 1,400 | 2,000 | 4.00x |"
        in table
    )
    assert "one [n, k] tensor) | 500 | 1.0 / 2.0 | 8.00x | | | |" in table  # KServe: no batch, no CPU read


def test_a_peer_not_run_says_so() -> None:
    from tests.bench.serving import render_markdown

    results = _results({"modelyard_v1": 4000.0, "modelyard_v2": 3600.0, "bare_asgi": 20000.0})
    assert results["met"]["mlserver_ratio"] is None
    assert results["met"]["kserve_ratio"] is None
    table = render_markdown(results)
    assert "| single row vs MLServer | not run | >= 10x | not run |" in table
    assert "| single row vs KServe's Python model server | not run | >= 10x | not run |" in table
    assert "| MLServer 1.7 (xgboost runtime, v2, one [n, k] tensor) | not run | | | | | |" in table


def test_the_json_keeps_every_other_benchs_keys(tmp_path: Path) -> None:
    # make bench once dropped scale.py's run history (scale_runs), and the next make bench-scale
    # then rewrote its growth table with one row.
    document = tmp_path / "benchmarks.json"
    document.write_text(json.dumps({"scale_runs": [{"pairs": 1000}], "scale": {"a": 1}, "measured": {"old": 1}}))
    write_json(document, {"measured": {"new": 2}, "when": "now"})
    assert json.loads(document.read_text()) == {
        "scale_runs": [{"pairs": 1000}], "scale": {"a": 1}, "measured": {"new": 2}, "when": "now",
    }  # fmt: skip
