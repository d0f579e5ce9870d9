"""Chunks of pairs: splitting, labels, outcomes, and the worker pool's per-pair isolation."""

from __future__ import annotations

import os

import pytest

from modelyard.core import chunks
from modelyard.core.chunks import PairOutcome
from modelyard.core.errors import ModelyardError

PAIRS = [("pickup_eta", f"r{i:02d}") for i in range(12)]


class BadData(ModelyardError, ValueError):
    pass


class Unreachable(ModelyardError, ConnectionError):
    pass


# Module level, so worker processes can unpickle them by reference.
_STATE: dict[str, str] = {}


def remember(tag: str) -> None:
    _STATE["tag"] = tag


def work(pair: tuple[str, str]) -> PairOutcome:
    """ok, except: r03 raises a bug, r05 has bad data, r07 kills its worker process."""
    region = pair[1]
    if region == "r03":
        raise KeyError("a bug")
    if region == "r05":
        raise BadData("column 'x' has 3 negative values")
    if region == "r07":
        os._exit(13)
    return PairOutcome(pair[0], region, "published", detail=f"pid {os.getpid()} tag {_STATE.get('tag')}")


# ---------------------------------------------------------------- split


@pytest.mark.parametrize(
    ("count", "chunk_size", "max_chunks", "sizes"),
    [
        (12, 5, 32, [4, 4, 4]),  # ceil(12/5) = 3 chunks, balanced, none over 5
        (12, 12, 32, [12]),
        (12, 25, 32, [12]),
        (1000, 25, 32, [32] * 8 + [31] * 24),  # max_chunks bounds the task count; chunks grow instead
        (3, 1, 2, [2, 1]),
        (1, 5, 5, [1]),
    ],
)
def test_split_is_bounded_balanced_and_keeps_order(
    count: int, chunk_size: int, max_chunks: int, sizes: list[int]
) -> None:
    pairs = [("f", f"r{i}") for i in range(count)]
    result = chunks.split(pairs, chunk_size, max_chunks)
    assert [len(c) for c in result] == sizes
    assert [p for c in result for p in c] == pairs


def test_split_of_nothing_is_no_chunk() -> None:
    assert chunks.split([], 5, 5) == []


@pytest.mark.parametrize(("chunk_size", "max_chunks"), [(0, 5), (5, 0)])
def test_split_rejects_sizes_below_one(chunk_size: int, max_chunks: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        chunks.split(PAIRS, chunk_size, max_chunks)


# ---------------------------------------------------------------- labels


def test_label_names_every_pair_when_it_fits() -> None:
    assert (
        chunks.label([("pickup_eta", "jakarta"), ("pickup_eta", "manila")]) == "pickup_eta/jakarta, pickup_eta/manila"
    )


def test_long_label_is_cut_with_the_count_left_out() -> None:
    pairs = [("pickup_eta", f"region_{i:02d}") for i in range(40)]
    text = chunks.label(pairs, limit=60)
    assert text.startswith("pickup_eta/region_00, pickup_eta/region_01")
    shown = text.count("pickup_eta/")
    assert text.endswith(f", … (+{40 - shown})")
    assert len(text) <= 60


def test_label_always_shows_the_first_pair() -> None:
    text = chunks.label([("a_very_long_family_name", "a_very_long_region_name"), ("f", "r")], limit=20)
    assert text == "a_very_long_family_name/a_very_long_region_name, … (+1)"


# ---------------------------------------------------------------- outcomes


def test_outcome_round_trips_through_json_and_has_one_line() -> None:
    outcome = PairOutcome(
        "pickup_eta", "jakarta", "registered", detail="v3", link="http://mlflow/#/experiments/1/runs/abc",
        event_uri="modelyard://challenger/pickup_eta/jakarta", event_extra={"version": "3"}, seconds=4.25,
        notes=["gate table"],
    )  # fmt: skip
    assert PairOutcome.from_json(outcome.to_json()) == outcome
    assert outcome.line() == "pickup_eta/jakarta: registered | v3 | http://mlflow/#/experiments/1/runs/abc (4.2 s)"


def test_failed_line_says_failed() -> None:
    line = chunks.failed(("f", "r"), BadData("column 'x' is bad")).line()
    assert line.startswith("f/r: FAILED | BadData: column 'x' is bad")


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [(BadData("bad"), False), (Unreachable("down"), True), (KeyError("bug"), True), (MemoryError(), True)],
)
def test_expected_errors_are_final_others_may_pass_on_retry(exc: Exception, retryable: bool) -> None:
    assert chunks.failed(("f", "r"), exc).retryable is retryable


def test_summary_names_failed_pairs() -> None:
    outcomes = [PairOutcome("f", "a", "published"), chunks.failed(("f", "b"), BadData("x"))]
    assert chunks.summary(outcomes) == "2 pairs: 1 ok, 1 failed (f/b)"


# ---------------------------------------------------------------- running a chunk


def test_pool_runs_pairs_in_worker_processes_and_isolates_exceptions() -> None:
    pairs = [p for p in PAIRS if p[1] != "r07"]
    seen: list[str] = []
    outcomes = chunks.run_pairs(
        pairs, work, workers=2, initializer=remember, initargs=("chunk-1",), on_outcome=lambda o: seen.append(o.name)
    )
    assert [o.pair for o in outcomes] == pairs
    assert sorted(seen) == sorted(f"{f}/{r}" for f, r in pairs)
    by_region = {o.region: o for o in outcomes}
    assert not by_region["r03"].ok
    assert by_region["r03"].retryable
    assert "KeyError" in by_region["r03"].detail
    assert not by_region["r05"].ok
    assert not by_region["r05"].retryable
    good = [o for o in outcomes if o.region not in ("r03", "r05")]
    assert all(o.ok for o in good)
    assert all(o.detail.endswith("tag chunk-1") for o in good), "the initializer ran in every worker"
    assert f"pid {os.getpid()} " not in " ".join(o.detail for o in good), "pairs ran in this process"


def test_a_dying_worker_fails_pairs_not_the_chunk() -> None:
    pairs = [("f", "r00"), ("f", "r07"), ("f", "r01")]
    outcomes = chunks.run_pairs(pairs, work, workers=2, initializer=remember, initargs=("x",))
    assert [o.pair for o in outcomes] == pairs  # every pair has an outcome
    dead = outcomes[1]
    assert not dead.ok
    assert dead.retryable
    assert "worker process failed" in dead.detail


def test_pairs_done_in_an_earlier_try_are_not_run_again() -> None:
    calls: list[tuple[str, str]] = []

    def counted(pair: tuple[str, str]) -> PairOutcome:
        calls.append(pair)
        return PairOutcome(pair[0], pair[1], "registered")

    earlier = {PAIRS[0]: PairOutcome(*PAIRS[0], "registered", detail="from try 1")}
    outcomes = chunks.run_pairs(PAIRS[:3], counted, workers=1, done=earlier)
    assert calls == PAIRS[1:3]
    assert outcomes[0].detail == "from try 1"
    assert [o.status for o in outcomes] == ["registered"] * 3


def test_one_worker_runs_inline_with_the_initializer() -> None:
    _STATE.clear()
    outcomes = chunks.run_pairs(PAIRS[:2], work, workers=1, initializer=remember, initargs=("inline",))
    assert all(o.detail == f"pid {os.getpid()} tag inline" for o in outcomes)


def test_workers_do_not_rerun_the_parents_main_script(tmp_path: object) -> None:
    """In an Airflow task ``__main__`` is the ``airflow`` script, which cannot be imported without a
    database: the pool's workers must not run it (a script that refuses to be re-run stands in)."""
    import pathlib
    import subprocess
    import sys

    script = pathlib.Path(str(tmp_path)) / "task_main.py"
    script.write_text(
        "import sys\n"
        "if __name__ != '__main__':\n"
        "    raise SystemExit('the parent main script was re-run in a worker')\n"
        "from modelyard.core import chunks\n"
        "from test_chunks import work\n"
        "if __name__ == '__main__':\n"
        "    outcomes = chunks.run_pairs([('eta', 'a'), ('eta', 'b'), ('eta', 'c')], work, workers=2)\n"
        "    print(sorted((o.region, o.ok) for o in outcomes))\n"
    )
    here = pathlib.Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here), os.environ.get("PYTHONPATH", ""), "."])}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[('a', True), ('b', True), ('c', True)]", result.stdout
